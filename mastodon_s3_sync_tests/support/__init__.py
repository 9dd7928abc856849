"""What the tests share, a module per concern; ``conftest.py`` keeps only fixtures and hooks.

``migration`` (a seeded fake instance and its buckets), ``buckets`` (objects on the test servers),
``acl`` (grants), ``database`` (statements against the fake instance's database), ``faults`` (the
destination checked object by object), ``s3_proxy`` (a proxy that watches or disturbs S3 traffic),
``cli`` (the command line in a subprocess), ``tunnel`` (the SSH tunnel's variables), ``sync``
(one in-process sync) and ``tiers`` (a test that starts a server is ``integration``).
"""
