"""Multipart uploads: an object streamed through in parts, and a server-side copy part by part.

Objects above the multipart threshold are copied as parts in parallel (``parallel_parts.py``); one
whose size is not known (no Content-Length) streams through here in fixed-size parts, each read
while holding its bytes in the byte budget, so memory is bounded by the budget, never by object
size. Both create, upload and complete through ``create``, ``upload_part`` and ``complete``. What the
parts' and the assembled object's ETags prove is ``proof``'s to say. An upload that fails is
aborted (quietly: one left behind is invisible and expires with the bucket's lifecycle rules;
``uploads.py`` finds and aborts the stale ones).
"""

from __future__ import annotations

import asyncio
import hashlib

from mastodon_s3_sync.core import providers
from mastodon_s3_sync.core.transfer import proof
from mastodon_s3_sync.core.transfer.budget import ByteBudget
from mastodon_s3_sync.core.transfer.ends import ObjectDestination, SourceBody
from mastodon_s3_sync.core.transfer.http import Buffer, ConnectionLost
from mastodon_s3_sync.core.transfer.proof import Check
from mastodon_s3_sync.core.transfer.retries import NETWORK_ERRORS, BodyLengthMismatch, ContentMismatch
from mastodon_s3_sync.core.transfer.s3 import S3Client, S3Error
from mastodon_s3_sync.core.tuning import MiB

HASH_IN_THREAD = 1 * MiB
"""Parts at least this large are hashed on a thread (hashlib releases the GIL), not on the event loop."""


async def upload_parts(
    response: SourceBody,
    destination: ObjectDestination,
    key: str,
    size: int,
    headers: dict[str, str],
    part_size: int,
    budget: ByteBudget,
    destination_md5_etags: bool | None,
    source_etag: str | None,
    source_md5: str | None,
) -> tuple[int, Check]:
    """Stream the GET's body (``size`` bytes, -1 when unknown) through a multipart upload to ``key``.

    ``destination_md5_etags`` None: no content checks (``Check.SIZE``). Else each part goes with its
    Content-MD5 and its ETag is checked, the whole body's MD5 is checked against the source's before
    the upload is completed, and the assembled object's ETag after; the source's MD5 is stored as
    ``md5chksum``.
    """
    verify = destination_md5_etags is not None
    whole = hashlib.md5() if verify and source_md5 is not None else None
    upload_id = await create(destination, key, headers, destination_md5_etags, source_md5)
    try:
        etags: list[str] = []
        digests: list[bytes] = []
        total = 0
        while True:
            async with budget.reserve(part_size):
                try:
                    part = await response.read_up_to(part_size)
                except ConnectionLost as error:
                    raise BodyLengthMismatch(f"GET {key}: body cut short ({error})") from error
                if part or not etags:
                    number = len(etags) + 1
                    digest = await _hash_part(part, whole) if verify else None
                    etags.append(
                        await upload_part(destination, key, upload_id, number, part, digest, destination_md5_etags)
                    )
                    if digest is not None:
                        digests.append(digest)
            total += len(part)
            if len(part) < part_size:
                break
        if size >= 0 and total != size:
            raise BodyLengthMismatch(f"GET {key}: read {total} of {size} bytes")
        whole_md5 = whole.hexdigest() if whole is not None else None
        check = await complete(
            destination, key, upload_id, etags, digests, destination_md5_etags, source_md5, whole_md5, source_etag
        )
    except BaseException:
        await asyncio.shield(abort_quietly(destination, key, upload_id))
        raise
    return total, check


async def create(
    destination: ObjectDestination,
    key: str,
    headers: dict[str, str],
    destination_md5_etags: bool | None,
    source_md5: str | None,
) -> str:
    """CreateMultipartUpload; when the copy is checked, the source's MD5 goes with it as ``md5chksum``."""
    if destination_md5_etags is not None and source_md5 is not None:
        headers[providers.MD5_METADATA] = providers.md5_metadata_value(source_md5)
    return await destination.create_multipart_upload(key, headers)


async def upload_part(
    destination: ObjectDestination,
    key: str,
    upload_id: str,
    number: int,
    part: Buffer,
    digest: bytes | None,
    destination_md5_etags: bool | None,
) -> str:
    """UploadPart, with the part's Content-MD5 (``digest``) when the copy is checked; its ETag, checked."""
    part_headers = None if digest is None else {"Content-MD5": proof.content_md5(digest)}
    etag = await destination.upload_part(key, upload_id, number, part, part_headers)
    if digest is not None and proof.etag_refutes(destination_md5_etags, etag, digest.hex()):
        raise ContentMismatch(
            f"PUT {key} part {number}: the destination's ETag {etag} is not the MD5 sent, {digest.hex()}"
        )
    return etag


async def complete(
    destination: ObjectDestination,
    key: str,
    upload_id: str,
    etags: list[str],
    digests: list[bytes],
    destination_md5_etags: bool | None,
    source_md5: str | None,
    whole_md5: str | None,
    source_etag: str | None,
) -> Check:
    """Complete the upload of the parts ``etags``; what it proves. Unchecked (``destination_md5_etags``
    None): ``Check.SIZE``. Else the whole body's MD5 (``whole_md5``, hashed here when the source states
    one) must be the source's before the upload is completed, and the assembled object's ETag must be
    the one the parts' MD5s (``digests``) make, after."""
    if destination_md5_etags is None:
        await destination.complete_multipart_upload(key, upload_id, etags)
        return Check.SIZE
    expected = proof.parts_etag(digests)
    check = proof.streamed_check(key, source_md5, whole_md5, source_etag, expected)
    final = await destination.complete_multipart_upload(key, upload_id, etags)
    problem = proof.assembled_refutes(destination_md5_etags, final, expected, whole_md5)
    if problem is not None:
        raise ContentMismatch(f"{key}: {problem}")
    return check


async def _hash_part(part: Buffer, whole) -> bytes:
    if len(part) >= HASH_IN_THREAD:
        return await asyncio.to_thread(proof.md5_part, part, whole)
    return proof.md5_part(part, whole)


async def copy_parts(
    destination: S3Client, key: str, source_name: str, size: int, headers: dict[str, str], part_size: int
) -> str | None:
    """Copy the object ``source_name`` (same endpoint and credentials) to ``key`` server-side, part by part
    (UploadPartCopy); the assembled object's ETag."""
    upload_id = await destination.create_multipart_upload(key, headers)
    try:
        etags = [
            await destination.upload_part_copy(
                key, upload_id, number, source_name, start, min(size, start + part_size) - 1
            )
            for number, start in enumerate(range(0, size, part_size), start=1)
        ]
        return await destination.complete_multipart_upload(key, upload_id, etags)
    except BaseException:
        await asyncio.shield(abort_quietly(destination, key, upload_id))
        raise


async def abort_quietly(destination: ObjectDestination, key: str, upload_id: str) -> None:
    try:
        await destination.abort_multipart_upload(key, upload_id)
    except (S3Error, *NETWORK_ERRORS):
        pass  # an unfinished upload is invisible and expires with the bucket's lifecycle rules
