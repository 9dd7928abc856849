"""The code location: assets, jobs, schedules, sensors and resources assembled in one place."""

from __future__ import annotations

from dagster import Definitions

from mastodon_s3_sync.assets.media import MEDIA_ASSETS
from mastodon_s3_sync.config import load_environment
from mastodon_s3_sync.jobs import SYNC_JOBS
from mastodon_s3_sync.resources import build_resources


def build_definitions() -> Definitions:
    """Definitions for the current environment: which optional variables are set decides
    which resource fields are bound to EnvVars, so reload the location after changing them."""
    load_environment()
    return Definitions(
        assets=MEDIA_ASSETS,
        jobs=list(SYNC_JOBS.values()),
        resources=build_resources(),
    )


defs = build_definitions()
