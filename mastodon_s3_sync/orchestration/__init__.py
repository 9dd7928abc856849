"""Compatibility only: the two class paths that DAGSTER_HOME/dagster.yaml files copied from
dagster-celery.yaml before the split of ``orchestration/`` name. Dagster imports an instance's run
launcher and compute log manager by the ``module`` and ``class`` written in that file, so
``mastodon_s3_sync.orchestration.workers.CeleryWorkerRunLauncher`` and
``mastodon_s3_sync.orchestration.compute_logs.SharedComputeLogManager`` keep resolving, to the
classes now in ``hosts.workers`` and ``execution.compute_logs``. Nothing else lives here; new
files name the new paths (dagster-celery.yaml), and this module goes once no copied file names the old ones.
"""

import sys
from types import ModuleType

from mastodon_s3_sync.execution.compute_logs import SharedComputeLogManager
from mastodon_s3_sync.hosts.workers import CeleryWorkerRunLauncher


def _old_module(name: str, cls: type) -> None:
    module = ModuleType(f"{__name__}.{name}", f"Moved: {cls.__module__}.{cls.__name__}.")
    setattr(module, cls.__name__, cls)
    sys.modules[module.__name__] = module


_old_module("workers", CeleryWorkerRunLauncher)
_old_module("compute_logs", SharedComputeLogManager)
