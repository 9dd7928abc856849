"""mastodon-s3-sync: copy exactly the media a Mastodon database references, through Dagster."""

from mastodon_s3_sync.definitions import defs

__all__ = ["defs"]
