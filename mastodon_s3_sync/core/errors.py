"""The errors the sync raises on purpose, each saying whether trying again can help.

Like rclone's ``fs/fserrors`` (``Retrier``, ``NoRetryError``): every error here is either a
``TransientError`` (a retry may succeed: a connection lost mid-scan, a bucket unreachable for a
while) or a ``PermanentError`` (it cannot: configuration, credentials, permissions), never
both. Whatever decides between retrying and failing at once (the ops' one-line failures, the
CLI's exit code) asks ``isinstance(error, TransientError)``, not the order of ``except``
clauses. Any other exception (a bug, a library error nobody foresaw) is left to the op's
``RetryPolicy``, which retries it. Each message is one line for the user. A leaf module: it
imports nothing of the package, so every module may import it.
"""

from __future__ import annotations


class SyncError(Exception):
    """An error said in one line (the CLI prints it, a failed run shows it)."""


class TransientError(SyncError):
    """A retry may succeed: what failed can come back by itself."""


class PermanentError(SyncError):
    """A retry cannot help: someone must change something first."""


class ConfigError(PermanentError):
    """A configuration problem, said in one line that names the variable."""


class SourceMostlyMissing(ConfigError):
    """Most referenced objects are missing at the source: a wrong bucket, endpoint or key prefix
    (``copying.mostly_missing_error``), not a verdict on the destination."""


class DatabaseUnavailable(ConfigError):
    """The database (or the SSH host in front of it) cannot be reached or refuses us."""


class DatabaseConnectionLost(TransientError):
    """An open connection broke mid-work (the server restarted or terminated our backend, the SSH
    tunnel went down): a retry may succeed, unlike the configuration errors."""

    def __init__(self, where: str, reason: str, doing: str = "reading rows"):
        super().__init__(f"the Mastodon database connection{where} was lost while {doing}: {reason}")
        self.where = where
        self.reason = reason

    def reading(self, what: str) -> DatabaseConnectionLost:
        """The same loss, said as what was being read (``media_attachments rows 1-5000``)."""
        return DatabaseConnectionLost(self.where, self.reason, f"reading {what}")


class BucketOutage(TransientError):
    """A bucket could not be listed for a while (unreachable, 5xx, throttled past the request retries)."""


class AclProbeFailed(SyncError):
    """The destination did not say whether it keeps ACLs (``core.acl_support``): nothing that
    depends on the answer was done."""


class AclProbeUnanswered(AclProbeFailed, TransientError):
    """GetBucketAcl answered 5xx, throttled or was cut off, past the request retries."""


class AclProbeDenied(AclProbeFailed, PermanentError):
    """GetBucketAcl was refused (403): the credential lacks ``s3:GetBucketAcl``, which no retry grants."""
