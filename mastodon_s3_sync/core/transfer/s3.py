"""A small asyncio S3 client (lean HTTP/1.1 + SigV4): just the calls a bucket copy needs.

Every request goes through the endpoint's limiter. Errors come back as
``S3Error`` with the HTTP status and S3 error code, so callers decide what to
retry; nothing here retries by itself.
"""

from __future__ import annotations

import html
import re
import time
import xml.etree.ElementTree as ElementTree
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

from mastodon_s3_sync.core import providers
from mastodon_s3_sync.core.transfer.http import Buffer, ConnectionPool, Response
from mastodon_s3_sync.core.transfer.limiter import EndpointLimiter
from mastodon_s3_sync.core.transfer.sigv4 import Signer, canonical_query, uri_encode

_COPIED_LOWER = tuple((name.lower(), name) for name in providers.COPIED_HEADERS)


@dataclass(frozen=True)
class Bucket:
    """Where a bucket lives and how to sign for it."""

    name: str
    endpoint_url: str | None = None
    region: str = "us-east-1"
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    ca_bundle: str | None = None
    """A PEM file of CA certificates to verify the endpoint's TLS certificate with (a private
    CA, a self-signed endpoint); None: the system's CAs. Verification is never off."""

    @property
    def base_url(self) -> str:
        return self.endpoint_url.rstrip("/") if self.endpoint_url else providers.aws_endpoint(self.region)

    @property
    def uses_path_style(self) -> bool:
        """Path style for custom endpoints (MinIO, R2, B2...), virtual host on AWS, as Mastodon does."""
        return providers.default_path_style(self.endpoint_url)

    def same_account_as(self, other: Bucket) -> bool:
        """True when one set of credentials reaches both buckets, so CopyObject works."""
        return (self.base_url, self.region, self.access_key_id) == (other.base_url, other.region, other.access_key_id)


class S3Error(Exception):
    def __init__(self, status: int, code: str, message: str, key: str | None, retry_after: float | None = None):
        super().__init__(f"HTTP {status} {code}: {message}" + (f" (key {key})" if key else ""))
        self.status = status
        self.code = code
        self.key = key
        self.retry_after = retry_after

    @property
    def is_not_found(self) -> bool:
        return self.status == 404

    @property
    def is_throttle(self) -> bool:
        return providers.is_throttle(self.status, self.code)

    @property
    def is_retryable(self) -> bool:
        return providers.is_retryable(self.status, self.code)


@dataclass(frozen=True, slots=True)
class ListedObject:
    key: str
    size: int
    etag: str | None = None
    """As listed (quotes dropped); None when the listing gave none."""


@dataclass(frozen=True, slots=True)
class PendingUpload:
    """An unfinished multipart upload (ListMultipartUploads)."""

    key: str
    upload_id: str
    initiated: datetime | None


@dataclass(frozen=True)
class ObjectHead:
    size: int
    headers: dict[str, str]
    """Content-Type, Cache-Control and the other copied headers that the object has."""
    etag: str | None = None
    content_md5: str | None = None
    """The content's MD5 when the ETag states it (see ``providers.content_md5_of``)."""
    stated_md5: str | None = None
    """The content's MD5 as the ETag or the ``md5chksum`` metadata states it (``providers.stated_md5``)."""


def copied_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The object headers a copy keeps, from a response's (lower-cased) headers."""
    copied = {name: headers[lower] for lower, name in _COPIED_LOWER if lower in headers}
    copied.update({name: value for name, value in headers.items() if name.startswith("x-amz-meta-")})
    return copied


def _retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
        except (TypeError, ValueError):
            return None


def _parse_xml(body: bytes) -> tuple[ElementTree.Element, str]:
    """The root element and its namespace as a ``{...}`` tag prefix ('' when there is none)."""
    root = ElementTree.fromstring(body)
    namespace = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    return root, namespace


_LISTED_KEY = re.compile(rb"<Key>([^<]*)</Key>")
_LISTED_SIZE = re.compile(rb"<Size>([0-9]+)</Size>")
_LISTED_ETAG = re.compile(rb"<ETag>([^<]*)</ETag>")
_NEXT_TOKEN = re.compile(rb"<NextContinuationToken>([^<]*)</NextContinuationToken>")
_TRUNCATED = re.compile(rb"<IsTruncated>\s*true\s*</IsTruncated>", re.IGNORECASE)


def access_control_policy(body: bytes) -> ElementTree.Element | None:
    """The body's AccessControlPolicy element, or None when the body is something else."""
    try:
        root, ns = _parse_xml(body)
    except ElementTree.ParseError:
        return None
    return root if root.tag == f"{ns}AccessControlPolicy" else None


def _parse_listing(body: bytes) -> tuple[list[ListedObject], str | None]:
    """Objects and continuation token of a ListObjectsV2 page.

    Two regular expressions instead of ElementTree: a page has thousands of
    elements, and building them costs CPU and wakes the garbage collector,
    while only each object's Key, Size and ETag are needed (every listed object
    has exactly one of each, in order; keys are XML-escaped, never CDATA). A
    listing whose ETags cannot be paired with its keys gives none.
    """
    keys = _LISTED_KEY.findall(body)
    sizes = _LISTED_SIZE.findall(body)
    if len(keys) != len(sizes):
        raise S3Error(500, "MalformedListing", f"{len(keys)} keys but {len(sizes)} sizes in a listing page", None)
    etags = _LISTED_ETAG.findall(body)
    if len(etags) == len(keys):
        objects = [
            ListedObject(_xml_text(key), int(size), _etag_text(etag)) for key, size, etag in zip(keys, sizes, etags)
        ]
    else:
        objects = [ListedObject(_xml_text(key), int(size)) for key, size in zip(keys, sizes)]
    token = _NEXT_TOKEN.search(body) if _TRUNCATED.search(body) else None
    return objects, _xml_text(token.group(1)) if token else None


def _timestamp(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _xml_text(raw: bytes) -> str:
    text = raw.decode()
    return html.unescape(text) if "&" in text else text


def _etag_text(raw: bytes) -> str | None:
    text = raw.decode().replace("&quot;", "").replace("&#34;", "").strip('" ')
    return text or None


def _response_etag(headers: Mapping[str, str]) -> str | None:
    etag = headers.get("etag")
    return etag.strip('" ') if etag else None


def _etag_in_body(body: bytes) -> str | None:
    """The ETag of a CopyObject, UploadPartCopy or CompleteMultipartUpload answer."""
    found = _LISTED_ETAG.search(body)
    return _etag_text(found.group(1)) if found else None


def _error_in_body(body: bytes, key: str | None) -> S3Error | None:
    """S3 may report a failed CopyObject or CompleteMultipartUpload inside a 200 answer."""
    if b"<Error>" not in body:
        return None
    root, ns = _parse_xml(body)
    return S3Error(500, root.findtext(f"{ns}Code") or "InternalError", root.findtext(f"{ns}Message") or "", key)


class S3Client:
    """One bucket over a shared connection pool, behind its endpoint's limiter."""

    def __init__(self, bucket: Bucket, pool: ConnectionPool, limiter: EndpointLimiter):
        self.bucket = bucket
        self.pool = pool
        self.limiter = limiter
        self.requests: Counter[str] = Counter()
        split = urlsplit(bucket.base_url)
        base_path = split.path.rstrip("/")
        host, port = split.hostname or "", split.port or (443 if split.scheme == "https" else 80)
        if bucket.uses_path_style:
            self._host = split.netloc
            self._bucket_path = f"{base_path}/{uri_encode(bucket.name, keep_slash=False)}"
        else:
            self._host = f"{bucket.name}.{split.netloc}"
            host = f"{bucket.name}.{host}"
            self._bucket_path = base_path
        self._origin = (split.scheme, host, port)
        pool.trust(self._origin, bucket.ca_bundle)
        self._signer = (
            Signer(bucket.access_key_id, bucket.secret_access_key, bucket.region, bucket.session_token)
            if bucket.access_key_id and bucket.secret_access_key
            else None
        )

    def object_name(self, key: str) -> str:
        """``/bucket/key`` as x-amz-copy-source wants it."""
        return f"/{self.bucket.name}/{uri_encode(key, keep_slash=True)}"

    async def _send(
        self,
        operation: str,
        method: str,
        key: str | None,
        query: dict[str, str] | None,
        headers: dict[str, str] | None,
        body: Buffer | list[Buffer] | None,
    ) -> tuple[Response, int, float]:
        """Send one signed request once the limiter allows; the caller releases response and slot.
        Returns the response (its headers read), the limiter's window and when the request was sent."""
        path = f"{self._bucket_path}/{uri_encode(key, keep_slash=True)}" if key is not None else f"{self._bucket_path}/"
        encoded_query = canonical_query(query) if query else ""
        self.requests[operation] += 1
        epoch = await self.limiter.acquire()
        sent = time.monotonic()
        try:
            if self._signer is not None:
                signed = self._signer.sign(method, self._host, path, encoded_query, headers or {})
            else:
                signed = {**(headers or {}), "Host": self._host}
            target = f"{path}?{encoded_query}" if encoded_query else path
            return await self.pool.request(self._origin, method, target, signed, body), epoch, sent
        except BaseException:
            self.limiter.release()
            raise

    def _error(self, response: Response, body: bytes, key: str | None, epoch: int) -> S3Error:
        code, message = str(response.status), response.reason
        if body.startswith(b"<"):
            try:
                root, ns = _parse_xml(body)
                code = root.findtext(f"{ns}Code") or code
                message = root.findtext(f"{ns}Message") or message
            except ElementTree.ParseError:
                pass
        error = S3Error(response.status, code, message, key, _retry_after_seconds(response.headers.get("retry-after")))
        if error.is_throttle:
            self.limiter.throttled(epoch, error.retry_after)
        return error

    async def request(
        self,
        operation: str,
        method: str,
        key: str | None,
        *,
        query: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        body: Buffer | list[Buffer] | None = None,
        ok_statuses: tuple[int, ...] = (200,),
    ) -> tuple[Response, bytes]:
        """One request read to its end; raises ``S3Error`` unless the status is in ``ok_statuses``."""
        response, epoch, sent = await self._send(operation, method, key, query, headers, body)
        try:
            data = await response.read()
        finally:
            response.release()
            self.limiter.release()
        if response.status not in ok_statuses:
            raise self._error(response, data, key, epoch)
        self.limiter.succeeded(time.monotonic() - sent)
        return response, data

    @asynccontextmanager
    async def get(
        self, key: str, byte_range: tuple[int, int] | None = None, if_match: str | None = None
    ) -> AsyncIterator[Response | None]:
        """GetObject with the body left to stream (the caller reads what it wants); None if there is no such key.

        ``byte_range`` (first, last byte) asks for part of the object: 206, or 200 with a Content-Range
        (rclone's server); ``if_match`` only while the object's ETag is that one (else 412). The request's
        slot is free again once the whole body has arrived, read or not: a copy's PUT then waits for a slot
        of its own, never for one its GET holds (on an endpoint that is both ends)."""
        headers = {}
        if byte_range is not None:
            headers["Range"] = f"bytes={byte_range[0]}-{byte_range[1]}"
        if if_match is not None:
            headers["If-Match"] = if_match
        response, epoch, sent = await self._send("GetObject", "GET", key, None, headers or None, None)
        released = False

        def free_slot() -> None:
            nonlocal released
            if not released:
                released = True
                self.limiter.release()

        response.when_complete(free_slot)
        try:
            if response.status not in ((200, 206) if byte_range else (200,)):
                error = self._error(response, await response.read(), key, epoch)
                if not error.is_not_found or error.code == "NoSuchBucket":
                    raise error
                yield None
            else:
                self.limiter.succeeded(time.monotonic() - sent)
                yield response
        finally:
            response.release()
            free_slot()

    async def list_page(
        self, prefix: str, start_after: str | None, continuation_token: str | None, max_keys: int = 1000
    ) -> tuple[list[ListedObject], str | None]:
        query = {"list-type": "2", "prefix": prefix, "max-keys": str(max_keys)}
        if continuation_token:
            query["continuation-token"] = continuation_token
        elif start_after:
            query["start-after"] = start_after
        _, body = await self.request("ListObjectsV2", "GET", None, query=query)
        return _parse_listing(body)

    async def head(self, key: str) -> ObjectHead | None:
        try:
            response, _ = await self.request("HeadObject", "HEAD", key)
        except S3Error as error:
            if error.is_not_found:
                return None
            raise
        etag = _response_etag(response.headers)
        return ObjectHead(
            int(response.headers.get("content-length", 0)),
            copied_headers(response.headers),
            etag,
            providers.content_md5_of(etag, response.headers),
            providers.stated_md5(etag, response.headers),
        )

    async def head_first_part(self, key: str) -> tuple[int, int] | None:
        """(part 1's length, the number of parts) of an object uploaded in parts (HEAD ?partNumber=1),
        or None when the server does not say (rclone answers the whole object, without a parts count)."""
        try:
            response, _ = await self.request(
                "HeadObject", "HEAD", key, query={"partNumber": "1"}, ok_statuses=(200, 206)
            )
        except S3Error as error:
            if error.is_not_found or error.status in (400, 416):
                return None
            raise
        count = response.headers.get("x-amz-mp-parts-count", "")
        length = response.headers.get("content-length", "")
        if not count.isdigit() or not length.isdigit():
            return None
        return int(length), int(count)

    async def delete(self, key: str) -> None:
        """DeleteObject (only ever for the engine's own temporary probe object at the destination)."""
        await self.request("DeleteObject", "DELETE", key, ok_statuses=(200, 204, 404))

    async def put(self, key: str, body: Buffer | list[Buffer], headers: dict[str, str]) -> str | None:
        """PutObject; the ETag the server answered with (quotes dropped), if any."""
        response, _ = await self.request("PutObject", "PUT", key, headers=headers, body=body)
        return _response_etag(response.headers)

    async def put_acl(self, key: str, acl: str) -> bool:
        """PutObjectAcl with a canned ACL, the body untouched; False when there is no such object."""
        response, _ = await self.request(
            "PutObjectAcl", "PUT", key, query={"acl": ""}, headers={"x-amz-acl": acl}, ok_statuses=(200, 404)
        )
        return response.status == 200

    async def create_multipart_upload(self, key: str, headers: dict[str, str]) -> str:
        _, body = await self.request("CreateMultipartUpload", "POST", key, query={"uploads": ""}, headers=headers)
        root, ns = _parse_xml(body)
        return root.findtext(f"{ns}UploadId") or ""

    async def upload_part(
        self, key: str, upload_id: str, part_number: int, body: Buffer, headers: dict[str, str] | None = None
    ) -> str:
        """UploadPart (``headers``: e.g. Content-MD5); the part's ETag as answered (with its quotes)."""
        query = {"partNumber": str(part_number), "uploadId": upload_id}
        response, _ = await self.request("UploadPart", "PUT", key, query=query, headers=headers, body=body)
        return response.headers["etag"]

    async def upload_part_copy(
        self, key: str, upload_id: str, part_number: int, source: str, first: int, last: int
    ) -> str:
        """Copy bytes ``first``..``last`` of ``source`` (``/bucket/key``) into a part, server-side."""
        query = {"partNumber": str(part_number), "uploadId": upload_id}
        headers = {"x-amz-copy-source": source, "x-amz-copy-source-range": f"bytes={first}-{last}"}
        _, body = await self.request("UploadPartCopy", "PUT", key, query=query, headers=headers)
        error = _error_in_body(body, key)
        if error:
            raise error
        root, ns = _parse_xml(body)
        return root.findtext(f"{ns}ETag") or ""

    async def complete_multipart_upload(self, key: str, upload_id: str, etags: list[str]) -> str | None:
        """CompleteMultipartUpload; the assembled object's ETag (quotes dropped), if the answer has one."""
        parts = "".join(
            f"<Part><PartNumber>{number}</PartNumber><ETag>{etag}</ETag></Part>"
            for number, etag in enumerate(etags, start=1)
        )
        body = f"<CompleteMultipartUpload>{parts}</CompleteMultipartUpload>".encode()
        _, answer = await self.request("CompleteMultipartUpload", "POST", key, query={"uploadId": upload_id}, body=body)
        error = _error_in_body(answer, key)
        if error:
            raise error
        return _etag_in_body(answer)

    async def abort_multipart_upload(self, key: str, upload_id: str) -> None:
        await self.request(
            "AbortMultipartUpload", "DELETE", key, query={"uploadId": upload_id}, ok_statuses=(200, 204, 404)
        )

    async def copy_from(self, key: str, source: str, headers: dict[str, str]) -> str | None:
        """Server-side CopyObject from ``source`` (``/bucket/key``) that writes ``headers`` (directive REPLACE);
        the new object's ETag (quotes dropped), if the answer has one."""
        copy_headers = {**headers, "x-amz-copy-source": source, "x-amz-metadata-directive": "REPLACE"}
        _, body = await self.request("CopyObject", "PUT", key, headers=copy_headers)
        error = _error_in_body(body, key)
        if error:
            raise error
        return _etag_in_body(body)

    async def list_multipart_uploads(
        self, prefix: str, key_marker: str | None = None, upload_id_marker: str | None = None
    ) -> tuple[list[PendingUpload], tuple[str, str] | None]:
        """One page of ListMultipartUploads under ``prefix``; the markers of the next page, or None."""
        query = {"uploads": "", "prefix": prefix}
        if key_marker:
            query["key-marker"] = key_marker
            if upload_id_marker:
                query["upload-id-marker"] = upload_id_marker
        _, body = await self.request("ListMultipartUploads", "GET", None, query=query)
        root, ns = _parse_xml(body)
        uploads = []
        for upload in root.iter(f"{ns}Upload"):
            initiated = upload.findtext(f"{ns}Initiated")
            key, upload_id = upload.findtext(f"{ns}Key") or "", upload.findtext(f"{ns}UploadId") or ""
            uploads.append(PendingUpload(key, upload_id, _timestamp(initiated)))
        truncated = (root.findtext(f"{ns}IsTruncated") or "").strip().lower() == "true"
        next_key = root.findtext(f"{ns}NextKeyMarker")
        if not truncated or not next_key:
            return uploads, None
        return uploads, (next_key, root.findtext(f"{ns}NextUploadIdMarker") or "")

    async def get_bucket_acl(self) -> bytes:
        """GetBucketAcl's body, whatever it is (``core.acl_support`` reads it)."""
        _, body = await self.request("GetBucketAcl", "GET", None, query={"acl": ""})
        return body

    async def get_acl_grants(self, key: str) -> list[tuple[str, str]] | None:
        """(grantee URI or id, permission) pairs, or None when the server does not report ACLs."""
        try:
            _, body = await self.request("GetObjectAcl", "GET", key, query={"acl": ""})
        except S3Error as error:
            if providers.acl_unsupported(error.status, error.code):
                return None
            raise
        root = access_control_policy(body)
        if root is None:
            return None  # rclone ignores ?acl and answers with the object itself
        ns = root.tag[: -len("AccessControlPolicy")]
        grants = []
        for grant in root.iter(f"{ns}Grant"):
            grantee = grant.find(f"{ns}Grantee")
            who = "" if grantee is None else (grantee.findtext(f"{ns}URI") or grantee.findtext(f"{ns}ID") or "")
            grants.append((who, grant.findtext(f"{ns}Permission") or ""))
        return grants
