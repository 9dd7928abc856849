"""A snapshot of the code location's public Dagster surface, so a change to it shows in review.

After an intended change: UPDATE_SNAPSHOT=1 pytest mastodon_s3_sync_tests/test_code_location_snapshot.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from dagster import DynamicPartitionsDefinition

SNAPSHOT = Path(__file__).with_name("snapshots") / "code_location.json"


def surface(definitions) -> dict:
    repository = definitions.get_repository_def()
    assets = {}
    for key in sorted(definitions.resolve_all_asset_keys(), key=lambda k: k.to_user_string()):
        spec = definitions.resolve_assets_def(key)
        partitions = spec.partitions_def
        assets[key.to_user_string()] = {
            "partitions": partitions.name if isinstance(partitions, DynamicPartitionsDefinition) else None,
            "group": spec.group_names_by_key[key],
            "checks": sorted(check.name for check in repository.asset_checks_defs_by_key if check.asset_key == key),
            "ops": sorted(node.name for node in spec.node_def.nodes) if hasattr(spec.node_def, "nodes") else [],
        }
    return {
        "assets": assets,
        "jobs": sorted(job.name for job in repository.get_all_jobs() if not job.name.startswith("__")),
        "schedules": {
            s.name: {"cron": s.cron_schedule, "job": s.job_name, "default_status": s.default_status.value}
            for s in sorted(repository.schedule_defs, key=lambda s: s.name)
        },
        "sensors": {
            s.name: {"minimum_interval_seconds": s.minimum_interval_seconds, "default_status": s.default_status.value}
            for s in sorted(repository.sensor_defs, key=lambda s: s.name)
        },
        "resources": {
            key: {
                "class": type(resource).__name__,
                "fields": {
                    name: {"type": str(info.annotation), "default": repr(info.default)}
                    for name, info in sorted(type(resource).model_fields.items())
                },
            }
            for key, resource in sorted(definitions.resources.items())
        },
    }


def test_code_location_matches_snapshot(environment) -> None:
    environment({})
    from mastodon_s3_sync.definitions.definitions import build_definitions

    current = surface(build_definitions())
    if os.environ.get("UPDATE_SNAPSHOT"):
        SNAPSHOT.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    assert SNAPSHOT.exists(), f"{SNAPSHOT} is missing: write it with UPDATE_SNAPSHOT=1 and review it"
    assert current == json.loads(SNAPSHOT.read_text())
