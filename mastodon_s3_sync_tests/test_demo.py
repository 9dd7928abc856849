"""`make demo`'s second half, as a user runs it: a disk instance moved to a bucket, verified complete."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def test_demo_from_disk_ends_verified_and_exact() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mastodon_s3_sync", "demo", "--from-disk"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
    )
    output = done.stdout
    assert done.returncode == 0, output[-3000:]
    assert "The instance keeps its media on disk" in output
    assert "Media URLs WILL CHANGE" in output and "location /system/" in output, "plan: the URL change, nginx's rule"
    assert "verified: complete" in output
    assert "0 of them lacking, 0 unexpected (0 orphans)" in output
    assert output.rstrip().endswith("DEMO OK: a verified, complete sync of exactly the referenced objects.")
