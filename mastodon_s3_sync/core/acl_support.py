"""Whether a destination keeps object ACLs: decided once per run, here and nowhere else.

It matters both ways. A server without ACLs may take ``PUT ?acl`` for a PutObject and replace
the object with an empty body (rclone's server does), so nothing sends PutObjectAcl before this
says the server keeps ACLs. And a server that keeps them but is read as keeping none gets no ACL
set and none checked: media a moderator took down stays public while the run says it is done.

A directory (``DiskEnd``) keeps them as file modes, as Mastodon's filesystem storage does: no
probe asks it.

For a bucket, only a definite answer means "no ACLs":
- the provider is one known to keep none (``providers.WITHOUT_ACLS``: R2, B2), or
- GetBucketAcl answers a not-supported error (``providers.acl_unsupported``: 400, 404, 405,
  501, NotImplemented), or a 200 whose body is no AccessControlPolicy (rclone's server
  ignores ``?acl`` and answers a listing).

A 5xx, a throttle or a network error says nothing: it is retried like any request, and if it
persists the probe raises ``AclProbeUnanswered`` (transient), which fails the caller's run before
any state (the ACL refresh's cursor) moves. Access denied to GetBucketAcl is not "no ACLs" either:
the credential lacks ``s3:GetBucketAcl``, which ``AclProbeDenied`` (permanent) names.
"""

from __future__ import annotations

from dataclasses import dataclass

from mastodon_s3_sync.core import providers
from mastodon_s3_sync.core.errors import AclProbeDenied, AclProbeUnanswered
from mastodon_s3_sync.core.transfer.disk import DiskEnd
from mastodon_s3_sync.core.transfer.retries import NETWORK_ERRORS, with_retries
from mastodon_s3_sync.core.transfer.s3 import S3Client, S3Error, access_control_policy


@dataclass(frozen=True)
class AclSupport:
    keeps_acls: bool
    reason: str
    """Why, in words for the run's log and metadata."""


async def probe_acl_support(client: S3Client | DiskEnd, max_attempts: int = 5, max_throttled: int = 30) -> AclSupport:
    """Ask ``client``'s bucket whether it keeps ACLs (see the module docstring for what counts)."""
    if isinstance(client, DiskEnd):
        return AclSupport(True, "a directory: file modes, as Mastodon's filesystem storage")
    bucket = client.bucket
    provider = providers.provider_without_acls(bucket.endpoint_url)
    if provider is not None:
        return AclSupport(False, f"{provider} keeps no object ACLs")

    async def ask() -> bytes | S3Error:
        try:
            return await client.get_bucket_acl()
        except S3Error as error:
            if providers.acl_unsupported(error.status, error.code):
                return error  # definite: not retried (501 would otherwise count as a 5xx)
            raise

    try:
        answer = await with_retries(ask, max_attempts, max_throttled)
    except S3Error as error:
        answered = (
            f"cannot tell whether bucket {bucket.name!r} at {bucket.base_url} keeps ACLs: GetBucketAcl "
            f"answered {error.status} {error.code or ''}".rstrip()
        )
        if error.status == 403:
            raise AclProbeDenied(f"{answered} (allow s3:GetBucketAcl)") from None
        raise AclProbeUnanswered(f"{answered}; nothing was changed, try again") from None
    except NETWORK_ERRORS as error:
        raise AclProbeUnanswered(
            f"cannot tell whether bucket {bucket.name!r} at {bucket.base_url} keeps ACLs: {error}; "
            "nothing was changed, try again"
        ) from None
    if isinstance(answer, S3Error):
        return AclSupport(False, f"GetBucketAcl is not supported ({answer.status} {answer.code})")
    body = answer
    if access_control_policy(body) is None:
        return AclSupport(False, "GetBucketAcl answers no AccessControlPolicy (the server ignores ACLs)")
    return AclSupport(True, "GetBucketAcl answers an AccessControlPolicy")
