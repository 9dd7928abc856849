"""The two ends of a copy, as the copier reads and writes them: ``ObjectSource`` and ``ObjectDestination``.

``S3Client`` is both, and so is ``disk.DiskEnd``: these serve the listings (``listing.py``), the streamed
copy (``copier.BatchCopy._copy``: GET, then ``_put_checked``, ``parallel_parts`` with ranged GETs, or
``multipart.upload_parts``), the ETag probe and a skipped object made private (``put_acl``: a chmod on
disk); the server-side copy stays S3's, and ``acl_support.probe_acl_support`` answers for either end.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Protocol

from mastodon_s3_sync.core.transfer.http import Buffer
from mastodon_s3_sync.core.transfer.s3 import ListedObject


class Listable(Protocol):
    async def list_page(
        self, prefix: str, start_after: str | None, continuation_token: str | None, max_keys: int = 1000
    ) -> tuple[list[ListedObject], str | None]:
        """Up to ``max_keys`` objects under ``prefix`` after ``start_after``, in key order; the next page's token."""
        ...


class SourceBody(Protocol):
    """An object being read: its headers (lower-cased names: content-length, etag, the copied ones)
    and its body, whole or in parts."""

    headers: dict[str, str]

    async def read_chunks(self) -> list[Buffer]: ...

    async def read_up_to(self, size: int) -> bytearray: ...


class ObjectSource(Listable, Protocol):
    def get(
        self, key: str, byte_range: tuple[int, int] | None = None, if_match: str | None = None
    ) -> AbstractAsyncContextManager[SourceBody | None]:
        """The object to read, or None when there is no such key; ``byte_range`` (first, last byte): that
        part only (its headers say ``content-range``); ``if_match``: only while its ETag is that one."""
        ...

    async def head_first_part(self, key: str) -> tuple[int, int] | None:
        """(part 1's length, the number of parts) of an object uploaded in parts, when known."""
        ...


class ObjectDestination(Listable, Protocol):
    async def put(self, key: str, body: Buffer | list[Buffer], headers: dict[str, str]) -> str | None:
        """Write a whole object; the ETag answered, if any."""
        ...

    async def delete(self, key: str) -> None: ...

    async def create_multipart_upload(self, key: str, headers: dict[str, str]) -> str: ...

    async def upload_part(
        self, key: str, upload_id: str, part_number: int, body: Buffer, headers: dict[str, str] | None = None
    ) -> str: ...

    async def complete_multipart_upload(self, key: str, upload_id: str, etags: list[str]) -> str | None: ...

    async def abort_multipart_upload(self, key: str, upload_id: str) -> None: ...

    async def put_acl(self, key: str, acl: str) -> bool:
        """Set the object's canned ACL, its body untouched; False when there is no such object."""
        ...
