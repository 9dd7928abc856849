"""``mastodon-s3-sync demo``: registered into the main CLI through an entry point, so the
production package never imports the demo."""

from __future__ import annotations

import argparse


def register(commands) -> None:
    demo = commands.add_parser("demo", help="run the full sync on an embedded fake instance")
    demo.add_argument("--ui", action="store_true", help="open the Dagster UI on the demo environment instead")
    demo.set_defaults(handler=run)


def run(arguments: argparse.Namespace) -> int:
    from mastodon_s3_sync_demo.run import run_demo

    return run_demo(ui=arguments.ui)
