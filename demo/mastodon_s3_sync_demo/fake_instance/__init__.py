"""A small, hand-written fake Mastodon instance: database rows plus the bucket they reference.

Used by the demo and by the tests. Every case is written as data: a row (a dict
of Mastodon's column names) and, beside it, the LITERAL keys that row
references, derived by hand from docs/mastodon-storage.md. Nothing in the
hand-written instance computes a key with ``mastodon_s3_sync.core.mastodon``: it
is the oracle the layout code is checked against (seeding uses only
``layout.with_key_prefix``, to place objects under a bucket's key prefix).

- ``tables/<table>.py``: a media table's hand-written cases and bulk generator, and
  ``tables/__init__.py`` the registry of them (``FAKE_TABLES``);
- ``model.py``: the types (a case, a fake table, the built instance), object bodies;
- ``instance.py``: ``build_fake_instance``, the cases completed into rows;
- ``seeding.py``: Mastodon's schema, the rows and the objects written to PostgreSQL
  and a bucket (``seed``);
- ``bulk.py``: volume for tests and benchmarks (``seed_bulk``, ``seed_bulk_all_tables``),
  no oracle: it takes its keys from the layout code.

What it exercises (the cases of each table, ``tables/<table>.py``):

- every table; every style set (image jpeg/png/webp ``small`` same extension,
  gif and video/gifv ``small`` as ``.png``, audio and unknown ``original`` only,
  video/audio thumbnails, account avatar/header ``static`` only for gif, emoji
  and provider icon ``static``, site upload thumbnail/favicon/app_icon/mascot
  and an unknown ``var``, private backups);
- ``cache/`` for storage schema version NULL/0/1 x local/remote, per
  attachment column (file and thumbnail of one row may differ), preview cards
  always remote;
- id_partition for small serial ids, 10- to 17-digit ids (13/14/16/17 digits
  drop a trailing group of 1-2 digits), 18-digit snowflakes, the ``-99``
  instance actor;
- a suspended local and a suspended remote account (their media_attachments
  are private, their own avatars are not);
- a status deleted by a moderator but kept (``statuses.deleted_at`` set): the
  media of a not suspended account that it owns is private;
- ``statuses`` rows for every ``media_attachments.status_id`` (an unattached
  upload has none), owned by the media's account;
- NULL file names (nothing to copy, including evicted remote media);
- referenced objects missing from the source (``missing``), also one style of
  an otherwise present attachment;
- objects that exist only under the other ``cache/`` variant (drift, in both
  directions): ``expected`` holds them at the key where they really are, with
  ``computed_key`` the key the row computes;
- orphans: a replaced avatar's old file, evicted media left behind, the stale
  non-cache duplicate of an object that also exists at its computed key,
  deleted rows' objects, a legacy ``imports/`` object.

The database is Mastodon's real schema for these tables (``schema/mastodon_schema.sql``,
generated from Mastodon's ``db/schema.rb`` by ``schema/generate.py``).
"""
