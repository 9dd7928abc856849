"""``mastodon-s3-sync demo``: registered into the main CLI through an entry point, so the
production package never imports the demo."""

from __future__ import annotations

import argparse


def register(commands) -> None:
    demo = commands.add_parser("demo", help="run the full sync on an embedded fake instance")
    demo.add_argument("--ui", action="store_true", help="open the Dagster UI on the demo environment instead")
    demo.add_argument(
        "--workers",
        type=int,
        default=0,
        metavar="N",
        help="run the runs on N Celery workers (as on N copy hosts), with Redis, a dagster-daemon and flower",
    )
    demo.add_argument(
        "--from-disk",
        action="store_true",
        help="the fake instance keeps its media on disk (public/system, no S3_ENABLED): the move to a bucket",
    )
    demo.set_defaults(handler=run)


def run(arguments: argparse.Namespace) -> int:
    from mastodon_s3_sync_demo.run import run_demo

    if arguments.workers < 0:
        raise SystemExit("--workers must be 0 or more")
    if arguments.workers and arguments.from_disk:
        raise SystemExit("--from-disk runs on one host: the files are on its disk (leave out --workers)")
    return run_demo(ui=arguments.ui, workers=arguments.workers, from_disk=arguments.from_disk)
