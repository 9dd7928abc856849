"""What ``dagster dev`` loads (``definitions.py`` assembles ``defs``), in Dagster's public API only: the
assets, resources, partitions, jobs, schedules, sensors and checks. No module here imports
``execution``, ``hosts`` or the door to Dagster's internals (test_architecture enforces it)."""
