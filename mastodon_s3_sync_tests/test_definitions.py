"""The code location loads with no environment at all, and shows the public interface the README promises."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import AssetKey

from mastodon_s3_sync.core.mastodon.tables import TABLES

REPO = Path(__file__).resolve().parents[1]
ASSETS = set(TABLES)
"""An asset per media table; the names are pinned by the code-location snapshot."""


def clean_environment(tmp_path) -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "DAGSTER_HOME": str(tmp_path)}


@pytest.mark.integration  # runs the dagster CLI in a subprocess
def test_definitions_validate_with_no_environment(tmp_path):
    result = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-w", str(REPO / "workspace.yaml")],
        env=clean_environment(tmp_path),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    assert "Validation successful" in result.stderr + result.stdout


def test_definitions_hold_the_public_interface(environment):
    environment({})
    from mastodon_s3_sync.definitions.definitions import build_definitions

    definitions = build_definitions()
    assert {key.path[0] for key in definitions.resolve_all_asset_keys()} == ASSETS
    assert {"mastodon_db", "source_s3", "destination_s3"} <= set(definitions.resources)
    for table in ASSETS:
        job = definitions.resolve_job_def(f"sync_{table}")
        assert job.partitions_def is not None
        assert [key.path[0] for key in job.asset_layer.executable_asset_keys] == [table]
    assert definitions.resolve_job_def("verify_destination") and definitions.resolve_job_def("plan_migration")
    graph = definitions.resolve_assets_def(AssetKey("media_attachments")).node_def
    assert {node.name for node in graph.nodes} == {
        "media_attachments_plan",
        "media_attachments_copy",
        "media_attachments_report",
    }
