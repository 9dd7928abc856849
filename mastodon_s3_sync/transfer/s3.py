"""A small asyncio S3 client (aiohttp + SigV4): just the calls a bucket copy needs.

Every request goes through the endpoint's limiter. Errors come back as
``S3Error`` with the HTTP status and S3 error code, so callers decide what to
retry; nothing here retries by itself.
"""

from __future__ import annotations

import asyncio
import random
import re
import xml.etree.ElementTree as ElementTree
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from mastodon_s3_sync.transfer.limiter import EndpointLimiter
from mastodon_s3_sync.transfer.sigv4 import Signer, canonical_query, uri_encode

COPIED_HEADERS = (
    "Content-Type",
    "Cache-Control",
    "Content-Disposition",
    "Content-Encoding",
    "Content-Language",
    "Expires",
)
"""Object headers that travel with a copy, besides ``x-amz-meta-*``."""

THROTTLE_STATUSES = {429, 503}
_NAMESPACE = re.compile(r"^\{[^}]*\}")


@dataclass(frozen=True)
class Bucket:
    """Where a bucket lives and how to sign for it."""

    name: str
    endpoint_url: str | None = None
    region: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None
    path_style: bool | None = None
    """Defaults to path style for custom endpoints (MinIO, R2, B2...), virtual host on AWS."""

    @property
    def base_url(self) -> str:
        if self.endpoint_url:
            return self.endpoint_url.rstrip("/")
        return f"https://s3.{self.region}.amazonaws.com"

    @property
    def uses_path_style(self) -> bool:
        return self.path_style if self.path_style is not None else bool(self.endpoint_url)

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
        return self.status in THROTTLE_STATUSES or self.code in ("SlowDown", "TooManyRequests")

    @property
    def is_retryable(self) -> bool:
        return self.is_throttle or self.status >= 500 or self.status in (408, 409) or self.code == "RequestTimeout"


@dataclass(frozen=True, slots=True)
class ListedObject:
    key: str
    size: int


@dataclass(frozen=True)
class ObjectHead:
    size: int
    headers: dict[str, str]
    """Content-Type, Cache-Control and the other copied headers that the object has."""


def copied_headers(response_headers: CIMultiDictProxy[str]) -> dict[str, str]:
    headers = {name: response_headers[name] for name in COPIED_HEADERS if name in response_headers}
    headers.update({name: value for name, value in response_headers.items() if name.lower().startswith("x-amz-meta-")})
    return headers


def _operation(method: str, key: str | None, query: dict[str, str], headers: dict[str, str]) -> str:
    """The S3 operation name of a request, for request counts."""
    if key is None:
        return "ListObjectsV2"
    if "x-amz-copy-source" in headers:
        return "UploadPartCopy" if "partNumber" in query else "CopyObject"
    if "partNumber" in query:
        return "UploadPart"
    if "uploads" in query:
        return "CreateMultipartUpload"
    if "uploadId" in query:
        return "CompleteMultipartUpload" if method == "POST" else "AbortMultipartUpload"
    if "acl" in query:
        return "GetObjectAcl"
    return {"GET": "GetObject", "PUT": "PutObject", "HEAD": "HeadObject", "DELETE": "DeleteObject"}[method]


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


def _xml_children(body: bytes) -> ElementTree.Element:
    root = ElementTree.fromstring(body)
    for element in root.iter():
        element.tag = _NAMESPACE.sub("", element.tag)
    return root


class S3Client:
    """One bucket, one aiohttp session, one limiter."""

    def __init__(self, bucket: Bucket, session: aiohttp.ClientSession, limiter: EndpointLimiter):
        self.bucket = bucket
        self.session = session
        self.limiter = limiter
        self.requests: Counter[str] = Counter()
        split = urlsplit(bucket.base_url)
        self._scheme = split.scheme
        self._base_path = split.path.rstrip("/")
        if bucket.uses_path_style:
            self._host = split.netloc
            self._bucket_path = f"{self._base_path}/{uri_encode(bucket.name, keep_slash=False)}"
        else:
            self._host = f"{bucket.name}.{split.netloc}"
            self._bucket_path = self._base_path
        self._signer = (
            Signer(bucket.access_key_id, bucket.secret_access_key, bucket.region, bucket.session_token)
            if bucket.access_key_id and bucket.secret_access_key
            else None
        )

    def _path(self, key: str | None) -> str:
        return f"{self._bucket_path}/{uri_encode(key, keep_slash=True)}" if key is not None else f"{self._bucket_path}/"

    @asynccontextmanager
    async def request(
        self,
        method: str,
        key: str | None,
        *,
        query: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        ok_statuses: tuple[int, ...] = (200,),
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Send one signed request; raise ``S3Error`` unless the status is in ``ok_statuses``."""
        path = self._path(key)
        encoded_query = canonical_query(query or {})
        request_headers = dict(headers or {})
        if self._signer is not None:
            request_headers = self._signer.sign(method, self._host, path, encoded_query, request_headers)
        else:
            request_headers["Host"] = self._host
        url = URL(f"{self._scheme}://{self._host}{path}" + (f"?{encoded_query}" if encoded_query else ""), encoded=True)
        self.requests[_operation(method, key, query or {}, request_headers)] += 1
        async with self.limiter.slot():
            async with self.session.request(method, url, headers=request_headers, data=body) as response:
                if response.status not in ok_statuses:
                    await self._raise_error(response, key)
                self.limiter.succeeded()
                yield response

    async def _raise_error(self, response: aiohttp.ClientResponse, key: str | None) -> None:
        body = await response.read()
        code, message = str(response.status), response.reason or ""
        if body.startswith(b"<"):
            try:
                root = _xml_children(body)
                code = root.findtext("Code") or code
                message = root.findtext("Message") or message
            except ElementTree.ParseError:
                pass
        error = S3Error(response.status, code, message, key, _retry_after_seconds(response.headers.get("Retry-After")))
        if error.is_throttle:
            error.retry_after = self.limiter.throttled(error.retry_after)
        raise error

    async def list_page(
        self, prefix: str, start_after: str | None, continuation_token: str | None, max_keys: int = 1000
    ) -> tuple[list[ListedObject], str | None]:
        query = {"list-type": "2", "prefix": prefix, "max-keys": str(max_keys)}
        if continuation_token:
            query["continuation-token"] = continuation_token
        elif start_after:
            query["start-after"] = start_after
        async with self.request("GET", None, query=query) as response:
            root = _xml_children(await response.read())
        objects = [
            ListedObject(item.findtext("Key") or "", int(item.findtext("Size") or 0)) for item in root.iter("Contents")
        ]
        truncated = (root.findtext("IsTruncated") or "false").lower() == "true"
        token = root.findtext("NextContinuationToken") if truncated else None
        return objects, token

    async def head(self, key: str) -> ObjectHead | None:
        try:
            async with self.request("HEAD", key) as response:
                return ObjectHead(int(response.headers.get("Content-Length", 0)), copied_headers(response.headers))
        except S3Error as error:
            if error.is_not_found:
                return None
            raise

    async def put(self, key: str, body: bytes, headers: dict[str, str]) -> None:
        async with self.request("PUT", key, headers=headers, body=body) as response:
            await response.read()

    async def create_multipart_upload(self, key: str, headers: dict[str, str]) -> str:
        async with self.request("POST", key, query={"uploads": ""}, headers=headers) as response:
            return _xml_children(await response.read()).findtext("UploadId") or ""

    async def upload_part(
        self,
        key: str,
        upload_id: str,
        part_number: int,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> str:
        """UploadPart with a body, or UploadPartCopy when ``headers`` name a copy source."""
        query = {"partNumber": str(part_number), "uploadId": upload_id}
        async with self.request("PUT", key, query=query, headers=headers, body=body) as response:
            if headers and "x-amz-copy-source" in headers:
                return _xml_children(await response.read()).findtext("ETag") or ""
            await response.read()
            return response.headers["ETag"]

    async def complete_multipart_upload(self, key: str, upload_id: str, etags: list[str]) -> None:
        parts = "".join(
            f"<Part><PartNumber>{number}</PartNumber><ETag>{etag}</ETag></Part>"
            for number, etag in enumerate(etags, start=1)
        )
        body = f"<CompleteMultipartUpload>{parts}</CompleteMultipartUpload>".encode()
        async with self.request("POST", key, query={"uploadId": upload_id}, body=body) as response:
            payload = await response.read()
        if b"<Error>" in payload:  # S3 may report a failed completion inside a 200 answer
            root = _xml_children(payload)
            raise S3Error(500, root.findtext("Code") or "InternalError", root.findtext("Message") or "", key)

    async def abort_multipart_upload(self, key: str, upload_id: str) -> None:
        async with self.request("DELETE", key, query={"uploadId": upload_id}, ok_statuses=(200, 204, 404)):
            pass

    async def copy_from(self, key: str, source: Bucket, source_key: str, headers: dict[str, str]) -> None:
        """Server-side CopyObject that writes ``headers`` (metadata directive REPLACE)."""
        copy_headers = dict(headers)
        copy_headers["x-amz-copy-source"] = f"/{source.name}/{uri_encode(source_key, keep_slash=True)}"
        copy_headers["x-amz-metadata-directive"] = "REPLACE"
        async with self.request("PUT", key, headers=copy_headers) as response:
            payload = await response.read()
        if b"<Error>" in payload:
            root = _xml_children(payload)
            raise S3Error(500, root.findtext("Code") or "InternalError", root.findtext("Message") or "", key)

    async def get_acl_grants(self, key: str) -> list[tuple[str, str]] | None:
        """(grantee URI or id, permission) pairs, or None when the server does not report ACLs."""
        try:
            async with self.request("GET", key, query={"acl": ""}) as response:
                body = await response.read()
        except S3Error as error:
            if error.status in (400, 404, 405, 501) or error.code == "NotImplemented":
                return None
            raise
        try:
            root = _xml_children(body)
        except ElementTree.ParseError:
            return None  # rclone ignores ?acl and answers with the object itself
        if root.tag != "AccessControlPolicy":
            return None
        grants = []
        for grant in root.iter("Grant"):
            grantee = grant.find("Grantee")
            who = "" if grantee is None else (grantee.findtext("URI") or grantee.findtext("ID") or "")
            grants.append((who, grant.findtext("Permission") or ""))
        return grants


async def sleep_backoff(attempt: int, base: float = 0.2, cap: float = 20.0, at_least: float = 0.0) -> None:
    """Exponential backoff with full jitter (attempt starts at 1)."""
    await asyncio.sleep(max(at_least, random.uniform(0, min(cap, base * 2**attempt))))
