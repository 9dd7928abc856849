"""Runs on several hosts: Celery workers take partition runs from a Redis queue.

Each id-range partition is a run of minutes, so runs are spread over hosts, not steps: a run
still executes all its steps in one process (the in-process executor), on whichever worker took
it. The pieces, all on dagster-celery's ``CeleryRunLauncher``:

- ``CeleryWorkerRunLauncher`` (dagster-celery.yaml's run launcher, in the daemon): sends each run
  as a Celery task to a queue (``dagster-celery/queue`` run tag, default ``dagster``) and tells
  the daemon's run monitoring whether the run's worker is still alive.
- ``start_worker`` (``mastodon-s3-sync worker``): a Celery worker that runs one run at a time,
  acknowledges a task only once its run is over (``task_acks_late``) and reserves none ahead
  (``worker_prefetch_multiplier`` 1), so an idle worker takes the next run; a fresh process per
  run (``worker_max_tasks_per_child`` 1).
- Heartbeats: while a run executes, its process refreshes a key in the result backend's Redis
  that expires CELERY_WORKER_LOST_SECONDS after the last refresh (the run's progress rides along,
  which ``sync`` shows). A killed worker, a powered-off host or a host cut off from Redis stops
  refreshing it; dagster-celery's own health check would still read the task as STARTED (the dead
  worker never records anything else), so the launcher's ``check_run_worker_health`` reports the
  run's worker FAILED once the key is gone, the daemon's run monitoring (every
  ``poll_interval_seconds``) marks the run failed and run retries launch it again, on any worker.

Why the launcher rather than a sensor: run monitoring already polls every started run and fails
it through the path that run retries follow; it needs no sensor to be switched on, covers runs of
every job (a UI backfill of an asset page runs ``__ASSET_JOB``) and leaves the code location as it is.

Celery settings both sides need are here, in one place (``celery_settings``); the visibility
timeout is longer than the longest run (dagster-celery.yaml's ``max_runtime_seconds``), else Redis
would hand a running run's task to a second worker.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from mastodon_s3_sync.core import settings
from mastodon_s3_sync.core.errors import ConfigError
from mastodon_s3_sync.dagster_internals import (
    RETRY_STRATEGY_TAG,
    CheckRunHealthResult,
    EngineEventData,
    WorkerStatus,
    execute_run_here,
    queue_routed_celery_launcher,
    runs_stored_in_sqlite,
    unpack_run_args,
)

DEFAULT_QUEUE = "dagster"
"""dagster-celery's default queue: every worker serves it unless told otherwise."""
WORKER_TAG = "mastodon_s3_sync/worker"
"""Set on a run by the worker that runs it (``name@host``): the UI filters runs by it."""
HEARTBEAT_KEY = "mastodon_s3_sync:run-heartbeat:{run_id}"
CANCEL_KEY = "mastodon_s3_sync:run-cancel:{run_id}"
"""Set by the launcher's ``terminate`` (the UI's Terminate); the run's heartbeat stops the copy on it."""
VISIBILITY_TIMEOUT_SECONDS = 13 * 3600
"""Redis hands an unacknowledged task to another worker after this long: longer than the longest
run (dagster-celery.yaml's run_monitoring.max_runtime_seconds, 12 h). A task whose worker died is
not waiting for it: its run is failed and retried long before, and the late delivery is skipped."""
RESULT_EXPIRES_SECONDS = 2 * 24 * 3600
"""Task states outlive the longest run, so the daemon can read them."""
PROGRESS_PERIOD = 1.0
"""Seconds between progress updates in the heartbeat key while a run copies."""
REDIS_SCHEMES = ("redis", "rediss")


def broker_url(environ: Mapping[str, str] | None = None) -> str:
    url = settings.required("CELERY_BROKER_URL", "the Redis that queues the runs", environ)
    _check_redis("CELERY_BROKER_URL", url)
    return url


def result_backend_url(
    environ: Mapping[str, str] | None = None, *, backend: str | None = None, broker: str | None = None
) -> str:
    """``backend`` (the launcher's config), else CELERY_RESULT_BACKEND, else the broker's Redis (``broker``,
    else CELERY_BROKER_URL). Never ``rpc://`` (dagster-celery's default): only the process that sent a
    task can read its state there, and the daemon's health check reads it."""
    url = backend or settings.value("CELERY_RESULT_BACKEND", environ) or broker or broker_url(environ)
    _check_redis("CELERY_RESULT_BACKEND", url)
    return url


def lost_after_seconds(environ: Mapping[str, str] | None = None) -> int:
    seconds = settings.value("CELERY_WORKER_LOST_SECONDS", environ)
    if seconds < 5:
        raise ConfigError(f"CELERY_WORKER_LOST_SECONDS must be at least 5, not {seconds}")
    return seconds


def _check_redis(variable: str, url: str) -> None:
    scheme = urlsplit(url).scheme
    if scheme not in REDIS_SCHEMES:
        raise ConfigError(
            f"{variable} must be a Redis URL (redis://host:6379/0 or rediss://...), not {scheme or url!r}: "
            "the daemon's health check reads task states and heartbeats there"
        )


def celery_settings(broker: str, backend: str) -> dict[str, Any]:
    """The Celery configuration of the launcher, the workers and flower alike."""
    return {
        "broker_url": broker,
        "result_backend": backend,
        "task_default_queue": DEFAULT_QUEUE,
        "task_create_missing_queues": True,  # `worker --queue host-a` serves a queue no one declared
        "task_acks_late": True,  # a task is done when its run is: a worker that dies leaves it unacknowledged
        "task_track_started": True,
        "worker_prefetch_multiplier": 1,  # with concurrency 1: a busy worker holds no other run
        "worker_concurrency": 1,
        "worker_max_tasks_per_child": 1,  # each run in a fresh process, as Dagster's own launcher does
        "broker_transport_options": {"visibility_timeout": VISIBILITY_TIMEOUT_SECONDS},
        "result_backend_transport_options": {"visibility_timeout": VISIBILITY_TIMEOUT_SECONDS},
        "result_expires": RESULT_EXPIRES_SECONDS,
        "result_extended": True,  # the task's worker is readable from its result (the UI's debug info)
        "worker_send_task_events": True,  # flower shows each run's task
        "task_send_sent_event": True,
        "broker_connection_retry_on_startup": True,
        # The run's stdout and stderr stay the process's own, which Dagster's compute log capture
        # tees into the files it uploads (Celery's redirection to its logger would bypass them).
        "worker_redirect_stdouts": False,
    }


def make_celery_app(broker: str | None = None, backend: str | None = None, extra: Mapping[str, Any] | None = None):
    """The Celery app, with the tasks dagster-celery's launcher sends (``execute_job``, ``resume_job``)
    run with a heartbeat."""
    from celery import Celery

    broker = broker or broker_url()
    app = Celery("mastodon_s3_sync", set_as_current=False)
    app.conf.update(celery_settings(broker, backend or result_backend_url()))
    if extra:
        app.conf.update(dict(extra))

    @app.task(bind=True, name="execute_job", track_started=True, acks_late=True)
    def execute_job(task, execute_job_args_packed):
        return run_task(task, execute_job_args_packed, resume=False)

    @app.task(bind=True, name="resume_job", track_started=True, acks_late=True)
    def resume_job(task, execute_job_args_packed):  # dagster-celery sends resumes under this argument name
        return run_task(task, execute_job_args_packed, resume=True)

    return app


def __getattr__(name: str):
    """``app`` for ``celery -A mastodon_s3_sync.hosts.workers flower``, built when asked for."""
    if name == "app":
        settings.load_environment()
        return make_celery_app()
    raise AttributeError(name)


# --- the worker side -------------------------------------------------------------------------------


def heartbeat_key(run_id: str) -> str:
    return HEARTBEAT_KEY.format(run_id=run_id)


class RunHeartbeat:
    """While a run executes here: its key in Redis, refreshed at least every quarter of
    ``lost_after`` seconds and within a second of any progress, expiring ``lost_after`` seconds after
    the last refresh. A progress listener too (``core.progress``): the value carries the run's
    objects planned, done and bytes copied so far. It also watches for the run's cancel key
    (``CeleryWorkerRunLauncher.terminate``): once set, the copy stops at its next progress report,
    as ``sync``'s Ctrl-C stops it (a KeyboardInterrupt out of the engine, the step failed and not
    retried), and Dagster ends the run CANCELED, its status being CANCELING."""

    def __init__(self, client, run_id: str, worker: str, task_id: str | None, lost_after: int):
        self.client = client
        self.key = heartbeat_key(run_id)
        self.cancel_key = CANCEL_KEY.format(run_id=run_id)
        self.canceled = threading.Event()
        self.worker = worker
        self.task_id = task_id
        self.lost_after = lost_after
        self.interval = max(1.0, lost_after / 4)
        self.objects_planned = 0
        self.objects_done = 0
        self.bytes_copied = 0
        self._changed = threading.Event()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="run-heartbeat", daemon=True)

    def planned(self, objects: int) -> None:
        self.objects_planned += objects
        self._changed.set()

    def advanced(self, objects: int, bytes_copied: int) -> None:
        if self.canceled.is_set():
            raise KeyboardInterrupt
        self.objects_done += objects
        self.bytes_copied += bytes_copied
        self._changed.set()

    def value(self) -> str:
        return json.dumps(
            {
                "worker": self.worker,
                "pid": os.getpid(),
                "task_id": self.task_id,
                "at": time.time(),
                "lost_after": self.lost_after,
                "objects_planned": self.objects_planned,
                "objects_done": self.objects_done,
                "bytes_copied": self.bytes_copied,
            }
        )

    def beat(self) -> None:
        self.client.set(self.key, self.value(), ex=self.lost_after)

    def _loop(self) -> None:
        import redis

        last = time.monotonic()
        while not self._stopped.wait(PROGRESS_PERIOD):
            try:
                if self.client.exists(self.cancel_key):
                    self.canceled.set()
                if self._changed.is_set() or time.monotonic() - last >= self.interval:
                    self._changed.clear()
                    self.beat()
                    last = time.monotonic()
            except redis.RedisError:
                pass  # tried again in a second; the run counts as lost only after lost_after seconds

    def __enter__(self) -> RunHeartbeat:
        self.beat()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stopped.set()
        self._thread.join(5)
        try:
            self.client.delete(self.key)
        except Exception:  # the key expires by itself
            pass


def redis_client(url: str):
    import redis

    return redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=10)


def run_task(task, packed_args, *, resume: bool) -> int:
    """Run (or resume) the run the launcher sent, in this worker process, with a heartbeat.

    A delivery for a run that is no longer waiting for a worker (finished, or failed and retried
    after its worker was lost) is skipped before any code loads."""
    from dagster import DagsterInstance, DagsterRunStatus

    from mastodon_s3_sync.core.progress import PROGRESS

    args = unpack_run_args(packed_args, resume)
    worker = task.request.hostname or "unknown"
    waiting = (
        {DagsterRunStatus.STARTING, DagsterRunStatus.STARTED}
        if resume
        else {DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING}
    )
    with DagsterInstance.get() as instance:
        run = instance.get_run_by_id(args.run_id)
        if run is None:
            return 0
        if run.status not in waiting:
            instance.report_engine_event(
                f"Celery worker {worker} skipped a late delivery of this run's task: the run is {run.status.value}",
                run,
            )
            return 0
        with RunHeartbeat(
            redis_client(result_backend_url()), run.run_id, worker, task.request.id, lost_after_seconds()
        ) as heartbeat:
            instance.add_run_tags(run.run_id, {WORKER_TAG: worker})
            instance.report_engine_event(
                f"Running on Celery worker {worker} (pid {os.getpid()}); heartbeat every "
                f"{heartbeat.interval:g} s, lost after {heartbeat.lost_after} s without one",
                run,
                EngineEventData({"Celery worker": worker, "Celery task ID": task.request.id or ""}),
            )
            with PROGRESS.listening(heartbeat):
                code = execute_run_here(instance, run.run_id, resume)
        if code:
            _log_failure(instance, run.run_id, worker)
        return code


def _log_failure(instance, run_id: str, worker: str) -> None:
    """Say in the worker's log why a run failed (the UI has it all): the first error its events hold."""
    from celery.utils.log import get_task_logger

    reason = "see the run in the UI"
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        error = None
        if event is not None and event.is_step_failure:
            error = event.step_failure_data.error
        elif event is not None and event.event_type_value == "ENGINE_EVENT":
            error = getattr(event.engine_event_data, "error", None)
        if error is not None:
            reason = f"{record.message or ''} {error.message.strip().splitlines()[0]}".strip()
            break
    get_task_logger(__name__).warning(f"run {run_id} failed on {worker}: {reason}")


def check_worker_environment() -> str:
    """Before a worker starts: Redis answers and this host's instance shares the daemon's storage.
    Returns a line describing the worker's setup."""
    import redis
    from dagster import DagsterInstance

    backend = result_backend_url()
    for variable, url in (("CELERY_BROKER_URL", broker_url()), ("CELERY_RESULT_BACKEND", backend)):
        try:
            redis_client(url).ping()
        except redis.RedisError as error:
            raise ConfigError(f"{variable}: cannot reach Redis ({type(error).__name__}: {error})") from None
    with DagsterInstance.get() as instance:
        if runs_stored_in_sqlite(instance):
            raise ConfigError(
                f"{instance.root_directory}/dagster.yaml keeps runs in SQLite on this host, where the daemon "
                "cannot see them: a worker needs dagster-celery.yaml (PostgreSQL, DAGSTER_PG_*); delete that "
                "dagster.yaml to have it copied"
            )
        return f"DAGSTER_HOME={instance.root_directory}, run storage {type(instance.run_storage).__name__}"


def node_name(name: str | None) -> str:
    """Celery's node name: ``NAME@this-host`` (``%h``), unless NAME has its own ``@``."""
    name = name or "copy"
    return name if "@" in name else f"{name}@%h"


def start_worker(name: str | None = None, queues: Sequence[str] = (), loglevel: str = "INFO") -> int:
    """``celery worker`` for this code location: one run at a time, each in a fresh process."""
    app = make_celery_app()
    argv = [
        "worker",
        f"--hostname={node_name(name)}",
        f"--queues={','.join(queues or [DEFAULT_QUEUE])}",
        "--concurrency=1",
        "--prefetch-multiplier=1",
        "--max-tasks-per-child=1",
        "--pool=prefork",
        "--task-events",
        f"--loglevel={loglevel}",
    ]
    return app.worker_main(argv) or 0


# --- the daemon side -------------------------------------------------------------------------------


def read_heartbeat(client, run_id: str) -> dict | None:
    raw = client.get(heartbeat_key(run_id))
    return json.loads(raw) if raw else None


class CeleryWorkerRunLauncher(queue_routed_celery_launcher()):
    """dagster-celery's ``CeleryRunLauncher`` with this module's Celery settings, routing by queue name,
    retries of all steps, and a health check that sees a lost worker by its expired heartbeat."""

    def __init__(
        self,
        default_queue: str = DEFAULT_QUEUE,
        broker: str | None = None,
        backend: str | None = None,
        include: list[str] | None = None,
        config_source: dict | None = None,
        inst_data=None,
    ) -> None:
        broker = broker or broker_url()
        _check_redis("CELERY_BROKER_URL", broker)
        backend = result_backend_url(backend=backend, broker=broker)
        super().__init__(
            default_queue=default_queue,
            broker=broker,
            backend=backend,
            include=include,
            config_source=config_source,
            inst_data=inst_data,
        )
        self.celery = make_celery_app(broker, backend, extra=config_source)
        self._redis = None

    @classmethod
    def config_type(cls):
        from dagster import Field, Noneable, StringSource

        fields = dict(super().config_type())
        fields["broker"] = Field(
            Noneable(StringSource), is_required=False, default_value=None, description="default CELERY_BROKER_URL"
        )
        fields["backend"] = Field(
            Noneable(StringSource),
            is_required=False,
            default_value=None,
            description="default CELERY_RESULT_BACKEND, else the broker; must be Redis",
        )
        return fields

    @property
    def redis(self):
        if self._redis is None:
            self._redis = redis_client(self.backend)
        return self._redis

    def launch_run(self, context) -> None:
        run = context.dagster_run
        if RETRY_STRATEGY_TAG not in run.tags:
            # A retry may run on another host, which cannot read the failed run's step outputs from
            # the local disk of the host that ran it: it re-runs every step (the plan re-reads the
            # range, the copy skips what is already at the destination).
            self._instance.add_run_tags(run.run_id, {RETRY_STRATEGY_TAG: "ALL_STEPS"})
        super().launch_run(context)

    def terminate(self, run_id: str) -> bool:
        """The UI's Terminate: the run is marked CANCELING and its cancel key set; the run's process
        stops its copy within a second and a progress report (``RunHeartbeat``) and ends the run
        CANCELED, not retried; a run no worker has taken yet is skipped by the worker. (dagster-celery's
        own revokes the task with SIGTERM, which Celery's pool process outlived: the copy went on.)"""
        run = self._instance.get_run_by_id(run_id)
        if run is None or run.is_finished:
            return False
        self._instance.report_run_canceling(run)
        self.redis.set(CANCEL_KEY.format(run_id=run_id), "1", ex=RESULT_EXPIRES_SECONDS)
        return True

    def check_run_worker_health(self, run):
        from dagster_celery.tags import DAGSTER_CELERY_TASK_ID_TAG

        worker = run.tags.get(WORKER_TAG)
        if worker is None:  # taken by a worker without heartbeats (dagster-celery's own): its check
            return super().check_run_worker_health(run)
        task_id = run.tags.get(DAGSTER_CELERY_TASK_ID_TAG)
        if task_id and self.celery.AsyncResult(task_id).state == "FAILURE":
            return CheckRunHealthResult(WorkerStatus.FAILED, f"The Celery task on worker {worker} failed.")
        if read_heartbeat(self.redis, run.run_id) is not None:
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        return CheckRunHealthResult(
            WorkerStatus.FAILED,
            f"Worker {worker} stopped sending this run's heartbeat (it expires CELERY_WORKER_LOST_SECONDS after "
            "the last one): the worker was killed or its host is gone.",
        )

    def run_progress(self, run_id: str) -> dict | None:
        """The run's heartbeat (objects planned, done, bytes copied so far) while it runs."""
        return read_heartbeat(self.redis, run_id)
