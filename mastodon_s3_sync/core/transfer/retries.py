"""Retries and backoff for S3 requests, in one place.

A request is tried again when the server throttles (until ``max_throttled``
tries: slowing down is the answer, not giving up), on a 5xx or a retryable
4xx (see ``providers.is_retryable``), on network errors and on content that
failed its check (``ContentMismatch``) (until
``max_attempts`` tries). Any other error fails at once. Whole failed batches
are retried once more at the step level by the Dagster op's RetryPolicy.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from mastodon_s3_sync.core.transfer.http import ConnectionLost
from mastodon_s3_sync.core.transfer.s3 import S3Error

NETWORK_ERRORS = (OSError,)
"""Refused, reset or lost connections, DNS and TLS failures and timeouts are all ``OSError``."""


class ContentMismatch(Exception):
    """The bytes of a copy are not the source's (a hash or ETag disagrees): the attempt failed,
    and the copy is tried again from its GET like any failed request."""


class BodyLengthMismatch(ConnectionLost):
    """A GET body shorter or longer than its Content-Length: a failed attempt, retried."""


T = TypeVar("T")


async def sleep_backoff(attempt: int, base: float = 0.2, cap: float = 20.0, at_least: float = 0.0) -> None:
    """Exponential backoff with full jitter (attempt starts at 1)."""
    await asyncio.sleep(max(at_least, random.uniform(0, min(cap, base * 2**attempt))))


async def with_retries(
    operation: Callable[[], Awaitable[T]],
    max_attempts: int,
    max_throttled: int,
    final: tuple[type[BaseException], ...] = (),
) -> T:
    """``operation``'s result, tried again as the module says; ``final`` errors are passed on at once
    (for a caller above to retry, e.g. a whole copy when one of its parts cannot be)."""
    failures = throttles = 0
    while True:
        try:
            return await operation()
        except final:
            raise
        except S3Error as error:
            if not error.is_retryable:
                raise
            if error.is_throttle:
                throttles += 1
                if throttles >= max_throttled:
                    raise
            else:
                failures += 1
                if failures >= max_attempts:
                    raise
        except (*NETWORK_ERRORS, ContentMismatch):
            failures += 1
            if failures >= max_attempts:
                raise
        await sleep_backoff(failures + throttles)
