"""The copy engine's entry points: copy a batch of objects between two buckets with many requests
in flight, on an event loop of its own (uvloop). Knows nothing of Dagster or Mastodon.

The engine, by concern (one module each):
- ``batch.py``: what a batch is: its settings (``TransferSettings``), items, outcomes and results;
- ``listing.py``: which keys a bucket has, by listing it over the keys' range;
- ``proof.py``: the content-proof rules as pure functions: skip or copy again, what an ETag
  proves, how each copy is proven equal to its source (``Check``), the part layouts;
- ``copier.py``: the batch copier: skip, GET and PUT, server-side copy, fallbacks, ACLs;
- ``parallel_parts.py``: large objects copied as parts in parallel (ranged GETs, UploadPart);
- ``multipart.py``: multipart uploads (create, upload a part, complete), server-side part copies;
- ``ends.py``: what the copier reads from (``ObjectSource``) and writes to (``ObjectDestination``):
  a bucket (``s3.py``) or a directory (``disk.py``);
- ``uploads.py``: stale unfinished multipart uploads, found and aborted;
- ``s3.py``, ``http.py``, ``sigv4.py``, ``limiter.py``, ``retries.py``, ``budget.py``: the S3
  client, HTTP/1.1 on httptools, request signing, the per-endpoint limiter, retries and backoff,
  the byte budget that bounds memory;
- ``in_flight.py``: the limiter's control law, how many requests in flight (pure).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from contextlib import asynccontextmanager

from mastodon_s3_sync.core.transfer.batch import BatchProgress, BatchResult, CopyItem, FreshAcls, TransferSettings
from mastodon_s3_sync.core.transfer.copier import BatchCopy
from mastodon_s3_sync.core.transfer.disk import DiskEnd, DiskRoot
from mastodon_s3_sync.core.transfer.http import ConnectionPool
from mastodon_s3_sync.core.transfer.limiter import EndpointLimiter
from mastodon_s3_sync.core.transfer.s3 import Bucket, S3Client

End = Bucket | DiskRoot
"""Where one end of a copy is: a bucket, or a directory (Mastodon's ``PAPERCLIP_ROOT_PATH``)."""


@asynccontextmanager
async def open_clients(source: End, destination: End, settings: TransferSettings):
    """A client for each end (S3 clients share one connection pool); their limiters live as long as they do."""

    def new_limiter() -> EndpointLimiter:
        return EndpointLimiter(settings.max_in_flight_per_endpoint, settings.requests_per_second, settings.concurrency)

    def client(end: End, limiter: EndpointLimiter) -> S3Client | DiskEnd:
        if isinstance(end, DiskRoot):
            return DiskEnd(end, limiter, hash_above=settings.multipart_threshold)
        return S3Client(end, pool, limiter)

    pool = ConnectionPool()
    source_limiter = new_limiter()
    destination_limiter = source_limiter if source.base_url == destination.base_url else new_limiter()
    try:
        yield client(source, source_limiter), client(destination, destination_limiter)
    finally:
        await pool.close()


async def copy_batch_async(
    source: End,
    destination: End,
    items: Sequence[CopyItem],
    settings: TransferSettings = TransferSettings(),
    on_progress: Callable[[BatchProgress], None] | None = None,
    fresh_acls: FreshAcls | None = None,
) -> BatchResult:
    async with open_clients(source, destination, settings) as (source_client, destination_client):
        if isinstance(source_client, DiskEnd):  # a file has no Content-Type: the rows say it
            keys = [(item.source_key, item.content_type) for item in items]
            keys += [(item.fallback_source_key, item.content_type) for item in items if item.fallback_source_key]
            source_client.expect(dict(keys))
        return await BatchCopy(source_client, destination_client, settings, on_progress, fresh_acls).run(items)


def copy_batch(
    source: End,
    destination: End,
    items: Sequence[CopyItem],
    settings: TransferSettings = TransferSettings(),
    on_progress: Callable[[BatchProgress], None] | None = None,
    fresh_acls: FreshAcls | None = None,
) -> BatchResult:
    """Synchronous entry point: runs the batch on its own (uvloop) event loop."""
    return run_async(copy_batch_async(source, destination, items, settings, on_progress, fresh_acls))


def run_async(coroutine):
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency, but not on every platform
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)
