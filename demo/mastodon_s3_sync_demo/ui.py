"""What the tests and benchmarks that drive the Dagster UI share: the UI's backfill mutation, and
how Debian's Chromium runs on these machines."""

LAUNCH_BACKFILL = """
mutation($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on PartitionSetNotFoundError { message }
    ... on PartitionKeysNotFoundError { message }
    ... on UnauthorizedError { message }
  }
}
"""
"""``launchPartitionBackfill`` as the asset graph's *Materialize all* and a job page's *Backfill* send it."""

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
"""The network is closed: without the background-networking flags Chromium stalls on its own
requests. Playwright's launch() adds a fresh temporary --user-data-dir of its own."""
