"""Unfinished multipart uploads: find the stale ones and abort them (most buckets keep, and bill,
an abandoned upload's parts forever). ``buckets.py`` offers it to the operator."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from mastodon_s3_sync.core import providers
from mastodon_s3_sync.core.transfer.batch import TransferSettings
from mastodon_s3_sync.core.transfer.engine import open_clients, run_async
from mastodon_s3_sync.core.transfer.retries import with_retries
from mastodon_s3_sync.core.transfer.s3 import Bucket, PendingUpload, S3Client, S3Error


async def list_stale_uploads_async(
    client: S3Client, prefix: str = "", older_than: timedelta = timedelta(days=1), now: datetime | None = None
) -> list[PendingUpload]:
    """The bucket's unfinished multipart uploads under ``prefix`` started more than ``older_than`` ago
    (ListMultipartUploads, every page). An upload whose start the server does not say is left out."""
    cutoff = (now or datetime.now(UTC)) - older_than
    stale: list[PendingUpload] = []
    markers: tuple[str, str] | None = None
    while True:
        key_marker, upload_marker = markers or (None, None)
        try:
            uploads, markers = await with_retries(
                lambda key_marker=key_marker, upload_marker=upload_marker: client.list_multipart_uploads(
                    prefix, key_marker, upload_marker
                ),
                5,
                30,
            )
        except S3Error as error:
            if providers.no_uploads(error.status, error.code):
                return stale
            raise
        stale.extend(upload for upload in uploads if upload.initiated is not None and upload.initiated <= cutoff)
        if markers is None:
            return stale


async def abort_uploads_async(client: S3Client, uploads: Sequence[PendingUpload], concurrency: int = 16) -> int:
    """Abort ``uploads`` (AbortMultipartUpload; one already gone counts as aborted); how many were aborted."""
    gate = asyncio.Semaphore(concurrency)

    async def abort(upload: PendingUpload) -> None:
        async with gate:
            await with_retries(lambda: client.abort_multipart_upload(upload.key, upload.upload_id), 5, 30)

    await asyncio.gather(*(abort(upload) for upload in uploads))
    return len(uploads)


def list_stale_uploads(
    bucket: Bucket,
    prefix: str = "",
    older_than: timedelta = timedelta(days=1),
    settings: TransferSettings = TransferSettings(),
) -> list[PendingUpload]:
    """Synchronous ``list_stale_uploads_async`` on its own event loop."""

    async def run() -> list[PendingUpload]:
        async with open_clients(bucket, bucket, settings) as (client, _):
            return await list_stale_uploads_async(client, prefix, older_than)

    return run_async(run())


def abort_uploads(
    bucket: Bucket, uploads: Sequence[PendingUpload], settings: TransferSettings = TransferSettings()
) -> int:
    """Synchronous ``abort_uploads_async`` on its own event loop."""

    async def run() -> int:
        async with open_clients(bucket, bucket, settings) as (client, _):
            return await abort_uploads_async(client, uploads)

    return run_async(run())
