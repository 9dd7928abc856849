"""``mastodon-s3-sync``: demo, plan, sync and verify from the command line."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from mastodon_s3_sync.config import ConfigError, load_environment
from mastodon_s3_sync.mastodon.tables import TABLES

EXIT_INCOMPLETE = 1
EXIT_CONFIG = 2
DAGSTER_PG_VARIABLES = ("DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB")


def ensure_dagster_home() -> Path:
    """DAGSTER_HOME (default ./.dagster_home), given ./dagster-postgres.yaml when DAGSTER_PG_HOST
    is set (Dagster's storage in that PostgreSQL) or else ./dagster.yaml, unless it has its own."""
    home = Path(os.environ.get("DAGSTER_HOME") or Path.cwd() / ".dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)
    postgres = bool(os.environ.get("DAGSTER_PG_HOST"))
    missing = [name for name in DAGSTER_PG_VARIABLES if postgres and name not in os.environ]
    if missing:
        raise ConfigError(
            f"DAGSTER_PG_HOST is set, so Dagster keeps its records in PostgreSQL: set {', '.join(missing)}"
        )
    template = Path.cwd() / ("dagster-postgres.yaml" if postgres else "dagster.yaml")
    if not (home / "dagster.yaml").exists() and template.is_file():
        shutil.copy(template, home / "dagster.yaml")
    return home


def check_tables(database, tables: Sequence[str]) -> None:
    """Connect (a one-line error if we cannot) and make sure the media tables exist."""
    with database.connection() as connection, connection.cursor() as cursor:
        cursor.execute("SELECT name FROM unnest(%s::text[]) AS name WHERE to_regclass(name) IS NULL", (list(tables),))
        missing = [row[0] for row in cursor]
    if missing:
        raise ConfigError(f"the database {database.describe()} has no table {', '.join(missing)}")


def checked_resources(tables: Sequence[str]) -> dict:
    """The resources with real values, after checking the database and both buckets answer."""
    from mastodon_s3_sync.resources import build_resources, check_distinct

    resources = build_resources(as_env_vars=False)
    check_distinct(resources["source_s3"], resources["destination_s3"])
    resources["destination_s3"].acl_permission()
    check_tables(resources["mastodon_db"], tables)
    resources["source_s3"].check_access()
    resources["destination_s3"].check_access()
    return resources


def command_plan(arguments: argparse.Namespace) -> int:
    from dagster import DagsterInstance

    from mastodon_s3_sync.assets.observations import observe_plans
    from mastodon_s3_sync.reports import plan_table_view, print_view
    from mastodon_s3_sync.resources import build_resources

    resources = build_resources(as_env_vars=False, only=("mastodon_db", "sync_tuning"))
    check_tables(resources["mastodon_db"], arguments.assets)
    ensure_dagster_home()
    with DagsterInstance.get() as instance:
        observed = observe_plans(instance, resources["mastodon_db"], resources["sync_tuning"], arguments.assets)
        for _, observation in observed:
            instance.report_runless_asset_event(observation)
    print_view(plan_table_view([plan for plan, _ in observed], resources["sync_tuning"].plan_rates()))
    print("Nothing was copied. The figures are on each asset in the Dagster UI too.")
    return 0


def command_sync(arguments: argparse.Namespace) -> int:
    from dagster import DagsterInstance

    from mastodon_s3_sync.definitions import build_definitions
    from mastodon_s3_sync.progress import PROGRESS, TerminalProgress
    from mastodon_s3_sync.runner import sync_tables

    resources = checked_resources(arguments.assets)
    home = ensure_dagster_home()
    print(f"Runs are recorded in DAGSTER_HOME={home}", file=sys.stderr, flush=True)
    definitions = build_definitions()
    results = []
    with DagsterInstance.get() as instance:
        for table in arguments.assets:
            with TerminalProgress(table) as progress, PROGRESS.listening(progress):
                results += sync_tables(
                    definitions, instance, [table], resources["mastodon_db"], resources["sync_tuning"]
                )
    failed = False
    for result in results:
        print(
            f"{result.table}: {len(result.new_partitions)} new partitions, {len(result.changed)} with changed rows, "
            f"{len(result.succeeded)} synced, {len(result.failed)} failed; {result.copied} objects copied, "
            f"{result.skipped} already there, {result.missing} missing at the source"
        )
        for key, message in result.failed.items():
            failed = True
            print(f"  failed {key}: {message}")
    return EXIT_INCOMPLETE if failed else 0


def command_verify(arguments: argparse.Namespace) -> int:
    from mastodon_s3_sync.plan import plan_table
    from mastodon_s3_sync.progress import TerminalProgress
    from mastodon_s3_sync.reports import print_view, verify_table_view, write_findings
    from mastodon_s3_sync.verify import verify_table

    resources = checked_resources(arguments.assets)
    results = []
    for table in arguments.assets:
        total = plan_table(resources["mastodon_db"], TABLES[table], [], 1).objects
        with TerminalProgress(f"verify {table}", total) as progress:
            results.append(
                verify_table(
                    resources["mastodon_db"],
                    TABLES[table],
                    resources["source_s3"],
                    resources["destination_s3"],
                    on_progress=lambda checked, progress=progress: progress.advanced(checked, 0),
                )
            )
    print_view(verify_table_view(results))
    if arguments.output:
        count = write_findings(results, Path(arguments.output))
        print(f"{count} problem keys written to {arguments.output}")
    complete = all(result.complete for result in results)
    print("verified: complete" if complete else "verified: INCOMPLETE")
    return 0 if complete else EXIT_INCOMPLETE


def command_demo(arguments: argparse.Namespace) -> int:
    from mastodon_s3_sync.demo.run import run_demo

    return run_demo(ui=arguments.ui)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="mastodon-s3-sync",
        description="Copy exactly the media objects a Mastodon database references to another bucket.",
    )
    commands = root.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the full sync on an embedded fake instance")
    demo.add_argument("--ui", action="store_true", help="open the Dagster UI on the demo environment instead")
    demo.set_defaults(handler=command_demo)
    for name, handler, text in (
        ("plan", command_plan, "count rows, objects and bytes per table and estimate the time; copy nothing"),
        ("sync", command_sync, "add new partitions, then copy every partition not yet synced or with changed rows"),
        ("verify", command_verify, "check every referenced object at the destination"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("assets", nargs="*", metavar="ASSET", help=f"any of {', '.join(TABLES)} (default all)")
        command.set_defaults(handler=handler)
        if name == "verify":
            command.add_argument(
                "--output", metavar="FILE", help="write every problem key to FILE (.csv, else JSON Lines)"
            )
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
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
