"""What makes runs fast and robust: ``sync``'s in-process runs (``runs``), following runs queued for
other hosts (``queued_runs``), the Dagster instance and its file (``instance``), and the shared compute
logs (``compute_logs``). Dagster's internals are reached through ``mastodon_s3_sync.dagster_internals`` only."""
