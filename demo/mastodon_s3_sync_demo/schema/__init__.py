"""Mastodon's real schema for the demo and the tests: the vendored schema.rb excerpt, generate.py, and the
generated mastodon_schema.sql (see generate.py)."""
