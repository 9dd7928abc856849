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


def ensure_dagster_home() -> Path:
    """DAGSTER_HOME, defaulting to ./.dagster_home (with ./dagster.yaml copied in when present)."""
    home = Path(os.environ.get("DAGSTER_HOME") or Path.cwd() / ".dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)
    template = Path.cwd() / "dagster.yaml"
    if not (home / "dagster.yaml").exists() and template.is_file() and template.resolve() != home / "dagster.yaml":
        shutil.copy(template, home / "dagster.yaml")
    return home


def checked_resources(tables: Sequence[str]) -> dict:
    """The resources with real values, after checking the database and both buckets answer."""
    from mastodon_s3_sync.resources import build_resources, check_distinct

    resources = build_resources(as_env_vars=False)
    check_distinct(resources["source_s3"], resources["destination_s3"])
    resources["destination_s3"].acl_permission()
    with resources["mastodon_db"].connection() as connection:
        missing = [table for table in tables if not _table_exists(connection, table)]
    if missing:
        raise ConfigError(f"the database {resources['mastodon_db'].describe()} has no table {', '.join(missing)}")
    resources["source_s3"].check_access()
    resources["destination_s3"].check_access()
    return resources


def _table_exists(connection, table: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", (table,))
        return cursor.fetchone()[0]


def command_sync(arguments: argparse.Namespace) -> int:
    from dagster import DagsterInstance

    from mastodon_s3_sync.definitions import build_definitions
    from mastodon_s3_sync.runner import sync_tables

    resources = checked_resources(arguments.assets)
    home = ensure_dagster_home()
    print(f"Runs are recorded in DAGSTER_HOME={home}", flush=True)

    def announce(table: str, key: str, position: int, total: int) -> None:
        print(f"{table}: partition {key} ({position}/{total})", flush=True)

    with DagsterInstance.get() as instance:
        results = sync_tables(
            build_definitions(),
            instance,
            arguments.assets,
            resources["mastodon_db"],
            resources["sync_tuning"],
            on_partition=announce,
        )
    failed = False
    for result in results:
        print(
            f"{result.table}: {len(result.new_partitions)} new partitions, {len(result.changed)} with changed rows, "
            f"{len(result.succeeded)} synced, "
            f"{len(result.failed)} failed; {result.copied} objects copied, {result.skipped} already there, "
            f"{result.missing} missing at the source"
        )
        for key, message in result.failed.items():
            failed = True
            print(f"  failed {key}: {message}")
    return EXIT_INCOMPLETE if failed else 0


def command_verify(arguments: argparse.Namespace) -> int:
    from mastodon_s3_sync.verify import Problem, verify_table

    resources = checked_resources(arguments.assets)
    complete = True
    for table in arguments.assets:
        result = verify_table(
            resources["mastodon_db"], TABLES[table], resources["source_s3"], resources["destination_s3"]
        )
        counts = result.counts
        complete &= result.complete
        print(
            f"{table}: {result.expected} expected, {result.present} present, "
            + ", ".join(f"{counts[problem]} {problem.value.replace('_', ' ')}" for problem in Problem)
            + ("" if result.acl_checked else " (ACLs not reported by the destination)")
        )
        for finding in result.findings[:20]:
            print(
                f"  {finding.problem.value}: {finding.table} {finding.row_id} {finding.key} {finding.detail}".rstrip()
            )
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
        ("sync", command_sync, "add new partitions, then copy every partition not yet synced"),
        ("verify", command_verify, "check every referenced object at the destination"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("assets", nargs="*", metavar="ASSET", help=f"any of {', '.join(TABLES)} (default all)")
        command.set_defaults(handler=handler)
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
