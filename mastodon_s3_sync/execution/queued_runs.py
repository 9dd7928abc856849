"""``sync`` on an instance whose runs execute elsewhere (dagster-celery.yaml: workers on other hosts).

There, ``sync`` does not execute the partitions' runs itself: it submits them to the instance's run
queue (the daemon launches them within the run coordinator's limits, the launcher hands them to
the workers) and follows them to the end, showing the same progress as when it runs them itself:
the workers' heartbeats carry each run's objects planned and done (``workers.RunHeartbeat``); with
another launcher the progress moves as runs finish. A run that fails and that run retries will
retry (a lost worker) is followed into its retry. Interrupted, the submitted runs go on; the same
command again follows the partitions' runs still in progress instead of submitting them twice, and
submits the rest, as an in-process ``sync`` resumes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from dagster import (
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    DefaultRunLauncher,
    RunsFilter,
)

from mastodon_s3_sync.core.progress import PROGRESS
from mastodon_s3_sync.dagster_internals import AUTO_RETRY_RUN_ID_TAG, WILL_RETRY_TAG

LOCATION_NAME = "mastodon_s3_sync"
"""The code location's name in workspace.yaml and pyproject.toml's [tool.dagster]: the daemon finds
the submitted runs' code location (to retry them) by this name."""
DEFINITIONS_MODULE = "mastodon_s3_sync.definitions.definitions"
POLL_SECONDS = 0.5
RETRY_WAIT_SECONDS = 300
"""How long a failed run that run retries will retry may go without its retry before ``sync`` gives up on it."""
FINISHED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}


def runs_execute_elsewhere(instance: DagsterInstance) -> bool:
    """True when the instance's run launcher is not Dagster's default (a subprocess of the code server)."""
    return not isinstance(instance.run_launcher, DefaultRunLauncher)


def queue_warning(instance: DagsterInstance) -> str | None:
    """A line to show when no daemon has recently dequeued runs: submitted runs would wait."""
    status = instance.get_daemon_statuses(["QUEUED_RUN_COORDINATOR"])["QUEUED_RUN_COORDINATOR"]
    if status.required and not status.healthy:
        return (
            "no dagster-daemon has reported to this instance lately: the submitted runs wait in the queue "
            "until `dagster-daemon run` (or `make dev`) runs"
        )
    return None


@dataclass
class Seen:
    """A partition's progress as shown so far (over its run and the run's retries)."""

    planned: int = 0
    done: int = 0
    bytes: int = 0

    def show(self, planned: int, done: int, bytes_copied: int) -> None:
        """Pass on what is new to the progress listeners; a retry re-counting from zero adds nothing until it passes."""
        if planned > self.planned:
            PROGRESS.planned(planned - self.planned)
            self.planned = planned
        if done > self.done or bytes_copied > self.bytes:
            PROGRESS.advanced(max(0, done - self.done), max(0, bytes_copied - self.bytes))
            self.done, self.bytes = max(done, self.done), max(bytes_copied, self.bytes)


@dataclass
class Outcome:
    partition: str
    run_id: str
    metadata: dict[str, int] = field(default_factory=dict)
    """The materialization's numbers (objects_copied, ...), on success."""
    error: str | None = None


def follow_runs(
    instance: DagsterInstance,
    runs: dict[str, str],
    progress: Callable[[str], dict | None] | None,
    on_outcome: Callable[[Outcome], None],
    failure_message: Callable[[DagsterInstance, str], str],
) -> None:
    """Follow partition -> run id to the end (into run retries), calling ``on_outcome`` as each ends."""
    pending = dict(runs)
    seen = {partition: Seen() for partition in runs}
    waiting_since: dict[str, float] = {}
    while pending:
        current = {run.run_id: run for run in instance.get_runs(RunsFilter(run_ids=list(pending.values())))}
        for partition, run_id in list(pending.items()):
            run = current.get(run_id)
            if run is None:
                continue
            beat = progress(run_id) if progress is not None and run.status == DagsterRunStatus.STARTED else None
            if beat:
                seen[partition].show(beat["objects_planned"], beat["objects_done"], beat["bytes_copied"])
            if run.status not in FINISHED:
                continue
            retry = run.tags.get(AUTO_RETRY_RUN_ID_TAG)
            if run.status == DagsterRunStatus.FAILURE and retry:
                pending[partition] = retry
                continue
            if run.status == DagsterRunStatus.FAILURE and run.tags.get(WILL_RETRY_TAG) == "true":
                started = waiting_since.setdefault(run_id, time.monotonic())
                if time.monotonic() - started < RETRY_WAIT_SECONDS:
                    continue
            del pending[partition]
            outcome = Outcome(partition, run_id)
            if run.status == DagsterRunStatus.SUCCESS:
                outcome.metadata = materialization_numbers(instance, run_id)
                numbers = outcome.metadata
                done = sum(numbers.get(name, 0) for name in ("objects_copied", "objects_skipped", "objects_missing"))
                seen[partition].show(numbers.get("objects_planned", 0), done, numbers.get("bytes_copied", 0))
            else:
                outcome.error = failure_message(instance, run_id)
            on_outcome(outcome)
        if pending:
            time.sleep(POLL_SECONDS)


def materialization_numbers(instance: DagsterInstance, run_id: str) -> dict[str, int]:
    numbers: dict[str, int] = {}
    for record in instance.get_records_for_run(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION).records:
        for name, value in record.asset_materialization.metadata.items():
            if isinstance(value.value, int) and not isinstance(value.value, bool):
                numbers[name] = numbers.get(name, 0) + value.value
    return numbers


def cancel_queued(instance: DagsterInstance, run_ids: Sequence[str]) -> None:
    """Cancel those of the runs that no worker has taken yet."""
    for run in instance.get_runs(RunsFilter(run_ids=list(run_ids), statuses=[DagsterRunStatus.QUEUED])):
        instance.run_coordinator.cancel_run(run.run_id)


def heartbeat_progress(instance: DagsterInstance) -> Callable[[str], dict | None] | None:
    """Where the runs' progress can be read while they run: the Celery workers' heartbeats."""
    from mastodon_s3_sync.hosts.workers import CeleryWorkerRunLauncher

    launcher = instance.run_launcher
    if not isinstance(launcher, CeleryWorkerRunLauncher):
        return None

    def read(run_id: str) -> dict | None:
        try:
            return launcher.run_progress(run_id)
        except Exception:  # Redis unreachable for a moment: the bar waits
            return None

    return read
