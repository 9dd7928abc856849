"""What S3-compatible providers do differently, as data, in one place.

The transfer engine, the bucket checks and verification consult these instead
of carrying their own special cases. A new provider quirk goes here.
"""

from __future__ import annotations

import base64
from urllib.parse import urlsplit

COPIED_HEADERS = (
    "Content-Type",
    "Cache-Control",
    "Content-Disposition",
    "Content-Encoding",
    "Content-Language",
    "Expires",
)
"""Object headers that travel with a copy, besides ``x-amz-meta-*``. S3 never carries an ACL
across a copy, so the ACL is always sent explicitly."""

THROTTLE_STATUSES = frozenset({429, 503})
THROTTLE_CODES = frozenset({"SlowDown", "TooManyRequests"})
"""AWS answers 503 SlowDown; Backblaze B2, Wasabi and Cloudflare R2 answer 429 or 503."""
RETRYABLE_STATUSES = frozenset({408, 409})
RETRYABLE_CODES = frozenset({"RequestTimeout", "BadDigest"})
"""Besides throttling and every 5xx: worth another try. BadDigest: the body did not match the
Content-MD5 sent with it (it changed on the way), so the copy starts again from its GET."""

ACCESS_ERROR_CODES = frozenset({"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken"})
EXPIRED_CREDENTIAL_CODES = frozenset({"ExpiredToken", "ExpiredTokenException", "TokenRefreshRequired"})
"""Temporary credentials (a session token) past their expiry: AWS answers 400 ExpiredToken."""
CLOCK_SKEW_CODES = frozenset({"RequestTimeTooSkewed", "RequestExpired"})
"""The request's signing time is more than 15 minutes off the server's clock (AWS answers 403)."""

ACL_UNSUPPORTED_STATUSES = frozenset({400, 404, 405, 501})
ACL_UNSUPPORTED_CODES = frozenset({"NotImplemented"})
"""Answers to ``GET ?acl`` from servers that keep no ACLs (R2 answers 501 NotImplemented). rclone's
server ignores ``?acl``: GetBucketAcl answers a listing (not an AccessControlPolicy), GetObjectAcl
the object itself or a 500; only GetBucketAcl's answer is definite (see ``core.acl_support``)."""

DEFAULT_PERMISSION = "public-read"
PRIVATE = "private"
"""The canned ACL of what Mastodon keeps from the public (backups, suspended accounts' media)."""
ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
"""The grantee of a public object's READ grant (GetObjectAcl)."""
CANNED_ACLS = frozenset(
    {
        PRIVATE,
        DEFAULT_PERMISSION,
        "public-read-write",
        "authenticated-read",
        "aws-exec-read",
        "bucket-owner-read",
        "bucket-owner-full-control",
    }
)

DEFAULT_REGION = "us-east-1"


def default_path_style(endpoint_url: str | None) -> bool:
    """Path-style addressing for custom endpoints (MinIO, R2, B2, Wasabi, rclone, moto), whose
    buckets rarely have DNS names; virtual-hosted style on AWS itself."""
    return bool(endpoint_url)


def aws_endpoint(region: str) -> str:
    return f"https://s3.{region}.amazonaws.com"


def is_throttle(status: int, code: str) -> bool:
    return status in THROTTLE_STATUSES or code in THROTTLE_CODES


def is_retryable(status: int, code: str) -> bool:
    return is_throttle(status, code) or status >= 500 or status in RETRYABLE_STATUSES or code in RETRYABLE_CODES


def acl_unsupported(status: int, code: str) -> bool:
    """A definite "this server keeps no ACLs" (never a 5xx: that may be a passing outage)."""
    return status in ACL_UNSUPPORTED_STATUSES or code in ACL_UNSUPPORTED_CODES


WITHOUT_ACLS = {
    ".r2.cloudflarestorage.com": "Cloudflare R2",
    ".backblazeb2.com": "Backblaze B2",
}
"""Endpoint host suffixes of providers that keep no object ACLs (R2 has none; B2 ignores them:
the bucket is public or not). Mastodon's own docs say to leave S3_PERMISSION empty for both."""


def provider_without_acls(endpoint_url: str | None) -> str | None:
    """The name of the ACL-less provider behind ``endpoint_url``, or None."""
    host = (urlsplit(endpoint_url).hostname or "") if endpoint_url else ""
    return next((name for suffix, name in WITHOUT_ACLS.items() if f".{host}".endswith(suffix)), None)


# Content checks (ETags, Content-MD5) -------------------------------------------------------------

ETAG_NOT_MD5_ENCRYPTION = frozenset({"aws:kms", "aws:kms:dsse"})
"""Objects encrypted with KMS keys (x-amz-server-side-encryption) or customer keys (SSE-C) have
ETags of 32 hex digits that are not the MD5 of their content (AWS; R2 and others follow)."""
SSE_CUSTOMER_HEADER = "x-amz-server-side-encryption-customer-algorithm"

ETAG_PROBE_NAME = ".mastodon-s3-sync-etag-probe-"
"""A temporary object the engine PUTs (with Content-MD5) next to a batch's keys and deletes again, to
learn whether the destination's ETags are MD5s (rclone, moto, MinIO, AWS without KMS: yes; KMS
buckets: no) from one definite answer instead of from mismatches."""

MD5_METADATA = "x-amz-meta-md5chksum"
"""The whole body's MD5, base64 of the 16-byte digest: rclone's convention for objects uploaded in
parts (whose ETag states no MD5). Written on every multipart copy whose MD5 is known beforehand."""


def plain_md5(etag: str | None) -> str | None:
    """The MD5 (32 lower-case hex digits) an ETag states, or None: multipart ETags ('...-N'),
    other forms and missing ETags state none. Quotes (plain or XML-escaped) are dropped."""
    if not etag:
        return None
    etag = etag.replace("&quot;", "").replace("&#34;", "").strip().strip('"').lower()
    if etag.startswith("w/"):
        return None
    if len(etag) != 32:
        return None
    try:
        int(etag, 16)
    except ValueError:
        return None
    return etag


def normalized_etag(etag: str | None) -> str | None:
    """An ETag without quotes, lower-cased, for comparing multipart ETags ('<hex>-N')."""
    if not etag:
        return None
    return etag.replace("&quot;", "").replace("&#34;", "").strip().strip('"').lower() or None


def multipart_parts(etag: str | None) -> int | None:
    """N of a multipart ETag '<32 hex>-N', else None."""
    etag = normalized_etag(etag)
    if not etag or "-" not in etag:
        return None
    digest, _, count = etag.partition("-")
    if plain_md5(digest) is None or not count.isdigit():
        return None
    return int(count)


def content_md5_of(etag: str | None, headers: dict[str, str] | None = None) -> str | None:
    """The content's MD5 when this object's (GET/HEAD) headers and ETag make its ETag one."""
    if headers:
        if headers.get("x-amz-server-side-encryption", "").lower() in ETAG_NOT_MD5_ENCRYPTION:
            return None
        if SSE_CUSTOMER_HEADER in headers:
            return None
    return plain_md5(etag)


def md5_from_metadata(headers: dict[str, str] | None) -> str | None:
    """The MD5 (hex) an object's ``x-amz-meta-md5chksum`` states (lower-cased headers), or None."""
    value = (headers or {}).get(MD5_METADATA)
    if not value:
        return None
    try:
        digest = base64.b64decode(value.strip(), validate=True)
    except ValueError:
        return None
    return digest.hex() if len(digest) == 16 else None


def md5_metadata_value(md5: str) -> str:
    """``x-amz-meta-md5chksum``'s value for an MD5 given in hex."""
    return base64.b64encode(bytes.fromhex(md5)).decode()


def stated_md5(etag: str | None, headers: dict[str, str] | None) -> str | None:
    """The content's MD5 as the object states it: its ETag when that is one, else its ``md5chksum``."""
    return content_md5_of(etag, headers) or md5_from_metadata(headers)


NO_UPLOADS_CODES = frozenset({"NoSuchUpload"})
"""rclone's server answers ListMultipartUploads with 404 NoSuchUpload when a bucket has none."""


def no_uploads(status: int, code: str) -> bool:
    return status == 404 and code in NO_UPLOADS_CODES
