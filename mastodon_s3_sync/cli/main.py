"""``mastodon-s3-sync``: demo, check, plan, sync and verify from the command line."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from contextlib import contextmanager
from importlib.metadata import entry_points
from pathlib import Path

from mastodon_s3_sync.core.errors import ConfigError, SyncError, TransientError
from mastodon_s3_sync.core.mastodon.tables import TABLES
from mastodon_s3_sync.core.settings import load_environment

COMMAND_PLUGINS = "mastodon_s3_sync.commands"
"""Entry-point group through which other packages add commands (the demo package adds ``demo``)."""

EXIT_INCOMPLETE = 1
"""Not everything is done: the same command again may finish it."""
EXIT_CONFIG = 2
"""Something must be changed first (configuration, credentials, permissions): a retry cannot help."""


def exit_code(error: SyncError) -> int:
    """A transient error (a connection lost) asks for the same command again, as an incomplete sync
    does; a permanent one for a fix first."""
    return EXIT_INCOMPLETE if isinstance(error, TransientError) else EXIT_CONFIG


def check_tables(database, tables: Sequence[str]) -> None:
    """Connect (a one-line error if we cannot) and make sure the media tables exist."""
    with database.connection() as connection, connection.cursor() as cursor:
        cursor.execute("SELECT name FROM unnest(%s::text[]) AS name WHERE to_regclass(name) IS NULL", (list(tables),))
        missing = [row[0] for row in cursor]
    if missing:
        raise ConfigError(f"the database {database.describe()} has no table {', '.join(missing)}")


def checked_resources(tables: Sequence[str]) -> dict:
    """The resources with real values, after checking the database and both buckets answer."""
    from mastodon_s3_sync.core.buckets import check_distinct
    from mastodon_s3_sync.core.configured import configured

    resources = configured()
    check_distinct(resources["source_s3"], resources["destination_s3"])
    resources["destination_s3"].acl_permission()
    check_tables(resources["mastodon_db"], tables)
    resources["source_s3"].check_access()
    resources["destination_s3"].check_access()
    return resources


def command_plan(arguments: argparse.Namespace) -> int:
    from dagster import DagsterInstance

    from mastodon_s3_sync.cli.render import plan_table_view, print_view
    from mastodon_s3_sync.core.configured import configured
    from mastodon_s3_sync.core.planning import PlanRates
    from mastodon_s3_sync.definitions.plan_job import observe_plans
    from mastodon_s3_sync.execution.instance import ensure_dagster_home

    resources = configured(only=("mastodon_db", "sync_tuning"))
    check_tables(resources["mastodon_db"], arguments.assets)
    ensure_dagster_home()
    with DagsterInstance.get() as instance:
        observed = observe_plans(instance, resources["mastodon_db"], resources["sync_tuning"], arguments.assets)
        for _, observation in observed:
            instance.report_runless_asset_event(observation)
    print_view(plan_table_view([plan for plan, _ in observed], PlanRates.tuned(resources["sync_tuning"])))
    _print_trimming(resources["mastodon_db"], arguments.days)
    _print_url_change()
    print("Nothing was copied. The figures are on each asset in the Dagster UI too.")
    return 0


def _print_trimming(database, days: int) -> None:
    """What to trim first: cached remote media by age, and what ``tootctl media remove`` would free."""
    from mastodon_s3_sync.cli.render import cached_media_view, print_view, tootctl_lines
    from mastodon_s3_sync.core.cached_media import cached_media

    report = cached_media(database, days)
    print_view(cached_media_view(report))
    print("Trimming before the move copies less (run on the instance; this tool never writes to the database):")
    for line in tootctl_lines(report):
        print(f"  {line}")


def _print_url_change() -> None:
    """Whether the media URLs change with this move (``public_urls.url_change``) and, from disk, the
    nginx rule that keeps the old ones working."""
    from mastodon_s3_sync.core import settings
    from mastodon_s3_sync.core.configured import configured
    from mastodon_s3_sync.core.public_urls import url_change

    try:
        ends = configured(only=("source_s3", "destination_s3"))
    except ConfigError:
        print(
            "Media URLs: set the source and destination (SOURCE_S3_BUCKET or SOURCE_PAPERCLIP_ROOT_PATH, "
            "DESTINATION_S3_BUCKET or DESTINATION_PAPERCLIP_ROOT_PATH) to learn whether they change."
        )
        return
    web_domain = settings.instance_web_domain()
    change = url_change(
        ends["source_s3"].media_home(settings.value("SOURCE_S3_ALIAS_HOST"), web_domain),
        ends["destination_s3"].media_home(settings.value("DESTINATION_S3_ALIAS_HOST"), web_domain),
    )
    verdict = "WILL CHANGE" if change.changes else "stay the same"
    print(f"Media URLs {verdict}: {change.old_base}... -> {change.new_base}...; {change.reason}")
    if change.nginx_rule:
        print(f"In the instance's nginx site, instead of its `location /system/` block:\n{change.nginx_rule}")


def command_sync(arguments: argparse.Namespace) -> int:
    from mastodon_s3_sync.cli.progress import TerminalProgress, live_board
    from mastodon_s3_sync.core import settings
    from mastodon_s3_sync.core.progress import PROGRESS
    from mastodon_s3_sync.definitions.definitions import build_definitions
    from mastodon_s3_sync.execution.instance import ensure_dagster_home, in_process_instance
    from mastodon_s3_sync.execution.runs import refresh_acls_in_process, sync_tables

    if arguments.accept_missing:
        os.environ["SYNC_ACCEPT_MISSING"] = "true"
    resources = checked_resources(arguments.assets)
    home = ensure_dagster_home()
    print(f"Runs are recorded in DAGSTER_HOME={home}", file=sys.stderr, flush=True)
    aborted = resources["destination_s3"].abort_stale_uploads()
    if aborted:
        print(f"Aborted {aborted} unfinished multipart uploads older than a day at the destination.", flush=True)
    definitions = build_definitions()
    with in_process_instance() as instance, live_board() as board:

        @contextmanager
        def table_progress(table: str):
            with TerminalProgress(table, board=board) as progress, PROGRESS.listening(progress, this_thread_only=True):
                yield

        _say_where_runs_execute(instance)
        results = sync_tables(
            definitions,
            instance,
            arguments.assets,
            resources["mastodon_db"],
            resources["sync_tuning"],
            # The request limit holds per copy step: two tables at once would send twice the rate.
            tables_at_once=1 if resources["sync_tuning"].requests_per_second else settings.value("SYNC_TABLES_AT_ONCE"),
            table_progress=table_progress,
        )
        fix_all = arguments.assets if arguments.fix_acls else ()
        refresh = "media_attachments" in arguments.assets or fix_all
        acls = refresh_acls_in_process(definitions, instance, fix_all) if refresh else None
    failed = False
    for result in results:
        made_private = f" ({result.acls_fixed} of them made private)" if result.acls_fixed else ""
        print(
            f"{result.table}: {len(result.new_partitions)} new partitions, {len(result.changed)} with changed rows, "
            f"{len(result.succeeded)} synced, {len(result.failed)} failed; {result.copied} objects copied, "
            f"{result.skipped} already there{made_private}, {result.missing} missing at the source"
        )
        for key, message in result.failed.items():
            failed = True
            print(f"  failed {key}: {message}")
    if acls is not None:
        print(acl_summary(acls))
        failed = failed or acls.error is not None
    return EXIT_INCOMPLETE if failed else 0


def acl_summary(acls) -> str:
    """The ``ACLs:`` lines of ``sync``: what the refresh (and ``--fix-acls``) did, or why it did nothing."""
    figures = acls.metadata
    if not figures and acls.error:
        return f"ACLs: not refreshed: {acls.error}"
    if figures.get("destination_keeps_acls") is False:
        summary = "ACLs: the destination keeps no ACLs, none set"
    else:
        summary = (
            f"ACLs: {figures.get('acls_set', 0)} set on the destination "
            f"({figures.get('accounts_suspended_or_unsuspended', 0)} accounts suspended or unsuspended, "
            f"{figures.get('statuses_deleted', 0)} statuses deleted since the last refresh)"
        )
    for table, fixed in acls.fixed.items():
        if fixed.get("destination_keeps_acls") is not False:
            summary += (
                f"\nACLs of {table}: {fixed['fix_all_acls_set']} of {fixed['fix_all_objects_checked']} objects set, "
                f"{fixed['fix_all_not_at_destination']} not at the destination, {fixed['fix_all_acl_failures']} failed"
            )
    return summary + (f"; failed: {acls.error}" if acls.error else "")


def _say_where_runs_execute(instance) -> None:
    from mastodon_s3_sync.execution.queued_runs import queue_warning, runs_execute_elsewhere

    if not runs_execute_elsewhere(instance):
        if os.environ.get("CELERY_BROKER_URL"):
            print(
                f"note: CELERY_BROKER_URL is set but {instance.root_directory}/dagster.yaml has no Celery run "
                "launcher (it was there before): the runs execute in this process",
                file=sys.stderr,
                flush=True,
            )
        return
    print(
        f"Runs are submitted to the run queue; {type(instance.run_launcher).__name__} hands them to the workers.",
        file=sys.stderr,
        flush=True,
    )
    warning = queue_warning(instance)
    if warning:
        print(f"warning: {warning}", file=sys.stderr, flush=True)


def command_worker(arguments: argparse.Namespace) -> int:
    from mastodon_s3_sync.execution.instance import ensure_dagster_home
    from mastodon_s3_sync.hosts.workers import check_worker_environment, node_name, start_worker

    if not os.environ.get("CELERY_BROKER_URL"):
        raise ConfigError("CELERY_BROKER_URL is not set: it names the Redis that queues the runs for the workers")
    ensure_dagster_home()
    setup = check_worker_environment()
    queues = arguments.queue or ["dagster"]
    print(f"Worker {node_name(arguments.name)} takes runs from queues {', '.join(queues)}; {setup}", flush=True)
    return start_worker(arguments.name, queues, arguments.loglevel)


def command_verify(arguments: argparse.Namespace) -> int:
    from mastodon_s3_sync.cli.progress import TerminalProgress
    from mastodon_s3_sync.cli.render import FindingsFile, print_view, verify_table_view
    from mastodon_s3_sync.core.planning import plan_table
    from mastodon_s3_sync.core.verification import verify_table

    if arguments.accept_missing:
        os.environ["SYNC_ACCEPT_MISSING"] = "true"
    resources = checked_resources(arguments.assets)
    findings_file = FindingsFile(Path(arguments.output)) if arguments.output else None
    results = []
    try:
        for table in arguments.assets:
            total = plan_table(resources["mastodon_db"], TABLES[table], [], 1).objects
            with TerminalProgress(f"verify {table}", total) as progress:
                results.append(
                    verify_table(
                        resources["mastodon_db"],
                        TABLES[table],
                        resources["source_s3"],
                        resources["destination_s3"],
                        deep=arguments.deep,
                        on_progress=lambda checked, progress=progress: progress.advanced(checked, 0),
                        on_finding=findings_file,
                        accept_missing=resources["sync_tuning"].accept_missing,
                    )
                )
    finally:
        if findings_file:
            findings_file.close()
    print_view(verify_table_view(results))
    if findings_file:
        print(f"{findings_file.written} problem keys written to {arguments.output}")
    stale = resources["destination_s3"].stale_uploads()
    if stale:
        print(f"{len(stale)} unfinished multipart uploads older than a day at the destination (`sync` aborts them).")
    for note in (note for result in results for note in result.unproven()):
        print(note)
    complete = all(result.complete for result in results)
    print("verified: complete" if complete else "verified: INCOMPLETE")
    return 0 if complete else EXIT_INCOMPLETE


def command_check(arguments: argparse.Namespace) -> int:
    from mastodon_s3_sync.core import settings
    from mastodon_s3_sync.core.buckets import MediaDirectory
    from mastodon_s3_sync.core.configured import configured
    from mastodon_s3_sync.core.preflight import env_block, run_preflight
    from mastodon_s3_sync.core.public_urls import MediaHome

    destination = configured(only=("destination_s3",))["destination_s3"]
    if isinstance(destination, MediaDirectory):
        raise ConfigError(
            "check probes a destination bucket; DESTINATION_PAPERCLIP_ROOT_PATH names a directory "
            "(`sync` checks that it is one and writable)"
        )
    destination.acl_permission()
    home = MediaHome.of_bucket(destination, settings.value("DESTINATION_S3_ALIAS_HOST"))
    print(f"Checking bucket {destination.bucket!r} at {destination.endpoint_url or 'AWS S3'}; nothing is copied.")
    preflight = run_preflight(destination, home, lambda result: print(result.line(), flush=True))
    print("\nFor the cut-over, in the instance's .env.production:\n")
    print(env_block(destination, home, preflight.required_permission))
    if preflight.failed:
        print(f"\nFailed: {len(preflight.failed)} of {len(preflight.results)} checks; fix them before the cut-over.")
        return EXIT_CONFIG
    return 0


def demo_not_installed(arguments: argparse.Namespace) -> int:
    raise ConfigError("the demo is a separate package, not installed here: pip install ./demo (make demo does)")


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="mastodon-s3-sync",
        description="Copy exactly the media objects a Mastodon database references to another bucket.",
    )
    commands = root.add_subparsers(dest="command", required=True)
    for plugin in entry_points(group=COMMAND_PLUGINS):
        plugin.load()(commands)
    if "demo" not in commands.choices:
        demo = commands.add_parser("demo", help="the embedded demo (a separate package: pip install ./demo)")
        demo.set_defaults(handler=demo_not_installed)
    for name, handler, text in (
        ("plan", command_plan, "count rows, objects and bytes per table and estimate the time; copy nothing"),
        ("sync", command_sync, "add new partitions, then copy every partition not yet synced or with changed rows"),
        ("verify", command_verify, "check every referenced object at the destination"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("assets", nargs="*", metavar="ASSET", help=f"any of {', '.join(TABLES)} (default all)")
        command.set_defaults(handler=handler)
        if name == "plan":
            command.add_argument(
                "--days",
                type=int,
                default=7,
                help="the age `tootctl media remove --days` would be given, for what trimming first saves (default 7)",
            )
        if name in ("sync", "verify"):
            command.add_argument(
                "--accept-missing",
                action="store_true",
                help="go on when most referenced objects are missing at the source (SYNC_ACCEPT_MISSING)",
            )
            command.add_argument(
                "--fix-acls",
                action="store_true",
                help="also set the ACL of every referenced object, one PutObjectAcl each (a destination filled by "
                "another tool), like tootctl's --fix-permissions",
            )
        if name == "verify":
            command.add_argument(
                "--output", metavar="FILE", help="write every problem key to FILE (.csv, else JSON Lines)"
            )
            command.add_argument(
                "--deep",
                action="store_true",
                help="also download and hash the objects whose ETags cannot prove their content (multipart, encrypted)",
            )
    check = commands.add_parser(
        "check",
        help="try the destination as Mastodon will use it (write, ACLs, anonymous reads, listing, headers) and "
        "print the .env.production block for the cut-over; copy nothing",
    )
    check.set_defaults(handler=command_check)
    worker = commands.add_parser(
        "worker",
        help="run the runs the daemon queues for this host (Celery worker; CELERY_BROKER_URL)",
        description="A Celery worker for this code location on a copy host: one run at a time, taken when "
        "idle, each in a fresh process; a heartbeat lets the daemon retry its run elsewhere if this host dies.",
    )
    worker.add_argument("--name", help="the worker's name, shown in the UI and flower as NAME@host (default copy)")
    worker.add_argument(
        "--queue",
        action="append",
        metavar="QUEUE",
        help="a queue to take runs from (repeatable; default dagster). Runs tagged dagster-celery/queue=QUEUE "
        "go only to workers serving QUEUE",
    )
    worker.add_argument("--loglevel", default="INFO", help="Celery's log level (default INFO)")
    worker.set_defaults(handler=command_worker)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parser().parse_args(argv)
    if hasattr(arguments, "assets"):
        unknown = [name for name in arguments.assets if name not in TABLES]
        if unknown:
            print(f"error: unknown asset {', '.join(unknown)}; choose from {', '.join(TABLES)}", file=sys.stderr)
            return EXIT_CONFIG
        arguments.assets = arguments.assets or list(TABLES)
    try:
        load_environment()
        return arguments.handler(arguments)
    except SyncError as error:
        print(f"error: {error}", file=sys.stderr)
        return exit_code(error)
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
