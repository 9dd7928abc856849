"""Large objects copied as parts in parallel: ranged GETs, each part uploaded as soon as it is read.

Far from the provider one connection carries a few MB/s, so an object copied over one stream
takes minutes, and a part's GET and its upload taking turns halve even that. Here an object of
known size above the multipart threshold is copied by ``lanes``: each reserves a part's bytes in
the byte budget, takes the next part, GETs its range (``If-Match`` the first GET's ETag; the
answer's ETag and Content-Range are checked too, as rclone's server ignores If-Match), hashes it
and uploads it (UploadPart with its Content-MD5), then takes the next. While one lane uploads part
N, another GETs part N+1. Part 1 comes from the copier's own GET, whose connection is then closed.

How many lanes and how large the parts (``lanes``, ``part_size``, pure): each object's share (among
the large objects being copied) of the lanes it takes to carry ``TransferSettings.large_object_bandwidth``
at the throughput one lane is measured at (a part's GET and upload, ``Lanes``, over the batch's
parts so far), at least two (a GET overlapping an
upload), within half the byte budget and half the requests in flight (all of that until a part has
been measured); parts of the configured size,
smaller (down to S3's 5 MiB) where an object has fewer parts than lanes, larger where 10,000 parts
would not hold it; a mirrored source layout (``proof.mirrored_part_size``) is kept as given. The
lane count is asked again after every part, so an object's lanes follow the rate as it is measured.

Each part is proven as a streamed one is (``multipart.upload_part``, ``multipart.complete``). A
part whose GET fails or is cut short is fetched again alone; a failed upload is sent again from the
same bytes, so the bytes hashed are the bytes sent. The whole body's MD5 (checked against the
source's stated MD5) needs the parts in order: each part's bytes are added to it in turn,
concurrently with its upload, and held (within the budget, as the lane's reservation) until the
parts before it have been added. A source that changed between ranges fails the attempt
(``SourceChanged``), which the copier retries from its GET (a source that answers no ETag cannot
be watched so; its body's MD5, where stated, still is); a part that fails for good aborts the
upload, and the copier tries the object again from its GET.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
import time
from collections.abc import Awaitable, Callable

from mastodon_s3_sync.core import providers
from mastodon_s3_sync.core.transfer import multipart, proof
from mastodon_s3_sync.core.transfer.batch import TransferSettings
from mastodon_s3_sync.core.transfer.budget import ByteBudget
from mastodon_s3_sync.core.transfer.ends import ObjectDestination, ObjectSource, SourceBody
from mastodon_s3_sync.core.transfer.http import ConnectionLost
from mastodon_s3_sync.core.transfer.multipart import HASH_IN_THREAD
from mastodon_s3_sync.core.transfer.proof import Check
from mastodon_s3_sync.core.transfer.retries import BodyLengthMismatch, ContentMismatch, with_retries
from mastodon_s3_sync.core.transfer.s3 import S3Error
from mastodon_s3_sync.core.tuning import MiB

MIN_PART = 5 * MiB
"""S3's smallest part (but the last)."""
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")


class SourceChanged(ContentMismatch):
    """The source object changed (or went) between two of its ranged GETs: the copy starts over."""


# Sizing (pure) ------------------------------------------------------------------------------------


def part_size(size: int, configured: int, lanes_wanted: int) -> int:
    """Parts of ``configured`` size; smaller, down to ``MIN_PART``, where ``size`` would make fewer parts
    than ``lanes_wanted``; larger where ``proof.MAX_PARTS`` parts would not hold it (S3's largest object,
    5 TiB, then has parts of 525 MiB, far below S3's largest part, 5 GiB)."""
    spread = -(-size // max(1, lanes_wanted))
    return max(MIN_PART, -(-size // proof.MAX_PARTS), min(configured, spread))


def lanes(
    bandwidth: float,
    lane_rate: float | None,
    objects: int,
    part_size: int,
    parts: int,
    memory_budget: int,
    in_flight: int,
) -> int:
    """Parts of one of ``objects`` large objects in flight: their share of the lanes it takes to carry
    ``bandwidth`` (bytes/s) at ``lane_rate`` each, at least two (a part's GET overlapping another's
    upload); at most one per part, half the budget's parts and half the requests in flight (other
    objects go on meanwhile). Not measured yet (None): that most, cut down once the first parts have
    been measured (starting with two cost a slow link a part's time at a fraction of its speed)."""
    most = max(1, min(parts, memory_budget // (2 * part_size), in_flight // 2))
    if not lane_rate:
        return most
    return min(most, max(2, math.ceil(bandwidth / lane_rate / max(1, objects))))


class Lanes:
    """What a batch's large objects share: the bytes/s of one lane (a part's GET, then its upload),
    averaged over the parts measured so far, and how many objects are being copied in parts now."""

    WEIGHT = 0.3
    """Of the newest part (an exponential moving average)."""

    def __init__(self) -> None:
        self.rate: float | None = None
        self.objects = 0

    def record(self, size: int, seconds: float) -> None:
        if seconds > 0:
            rate = size / seconds
            self.rate = rate if self.rate is None else (1 - self.WEIGHT) * self.rate + self.WEIGHT * rate


# The copy -----------------------------------------------------------------------------------------


class ParallelCopy:
    """One object of ``size`` bytes from ``source`` (its first GET ``first``, still unread, closed by
    ``close_first``) to ``destination`` in parts (``run``)."""

    def __init__(
        self,
        source: ObjectSource,
        source_key: str,
        first: SourceBody,
        close_first: Callable[[], Awaitable[object]],
        destination: ObjectDestination,
        key: str,
        size: int,
        headers: dict[str, str],
        settings: TransferSettings,
        budget: ByteBudget,
        lanes: Lanes,
        destination_md5_etags: bool | None,
        source_md5: str | None,
        mirrored_part_size: int | None,
        on_rejected: Callable[[], None],
    ):
        self.source, self.source_key, self.destination, self.key = source, source_key, destination, key
        self.first: SourceBody | None = first
        self._close_first = close_first
        self.size, self.headers, self.settings, self.budget, self.lanes = size, headers, settings, budget, lanes
        self.source_etag = first.headers.get("etag")
        self.destination_md5_etags, self.source_md5 = destination_md5_etags, source_md5
        self.on_rejected = on_rejected
        self.verify = destination_md5_etags is not None
        self.part_size = mirrored_part_size or part_size(size, settings.part_size, self._lanes(settings.part_size))
        self.parts = max(1, -(-size // self.part_size))
        self.etags: list[str] = [""] * self.parts
        self.digests: list[bytes] = [b""] * self.parts
        self.whole = hashlib.md5() if self.verify and source_md5 is not None else None
        self._hashed = 0
        """Parts added to ``whole`` so far (in order)."""
        self._turn = asyncio.Condition()
        self._next = 1
        self._running = 0
        self.upload_id = ""
        self._group: asyncio.TaskGroup | None = None

    def _lanes(self, part_size: int, parts: int | None = None) -> int:
        parts = parts if parts is not None else -(-self.size // part_size)
        settings, shared = self.settings, self.lanes
        return lanes(
            settings.large_object_bandwidth, shared.rate, shared.objects, part_size, parts,
            settings.memory_budget, settings.max_in_flight_per_endpoint,
        )  # fmt: skip

    async def run(self) -> tuple[int, Check]:
        self.lanes.objects += 1
        try:
            self.upload_id = await multipart.create(
                self.destination, self.key, self.headers, self.destination_md5_etags, self.source_md5
            )
            try:
                async with asyncio.TaskGroup() as group:
                    self._group = group
                    self._grow()
                whole_md5 = self.whole.hexdigest() if self.whole is not None else None
                check = await multipart.complete(
                    self.destination, self.key, self.upload_id, self.etags, self.digests if self.verify else [],
                    self.destination_md5_etags, self.source_md5, whole_md5, self.source_etag,
                )  # fmt: skip
            except BaseException as error:
                await asyncio.shield(multipart.abort_quietly(self.destination, self.key, self.upload_id))
                if isinstance(error, BaseExceptionGroup):
                    raise _first(error) from error
                raise
        finally:
            self.lanes.objects -= 1
            await self._release_first()
        return self.size, check

    def _grow(self) -> None:
        """Start lanes up to the count wanted now, while parts are left to take."""
        wanted = min(self._lanes(self.part_size, self.parts), self.parts - self._next + 1)
        while self._running < wanted:
            self._running += 1
            self._group.create_task(self._lane())

    async def _lane(self) -> None:
        while True:
            async with self.budget.reserve(self.part_size):
                if self._next > self.parts:  # taken after the reservation: the parts held are the first ones
                    break
                number, self._next = self._next, self._next + 1
                await self._copy_part(number)
            if self._running > self._lanes(self.part_size, self.parts):
                break
            self._grow()
        self._running -= 1

    async def _copy_part(self, number: int) -> None:
        start = (number - 1) * self.part_size
        length = min(self.part_size, self.size - start)
        started = time.monotonic()
        body = await self._with_retries(lambda: self._fetch(number, start, length))
        digest = await _md5(body) if self.verify else None

        async def upload() -> None:
            self.etags[number - 1] = await self._with_retries(lambda: self._upload(number, body, digest))
            self.lanes.record(length, time.monotonic() - started)

        if self.whole is None:
            await upload()
        else:
            async with asyncio.TaskGroup() as both:
                both.create_task(upload())
                both.create_task(self._add_in_turn(number, body))
        if digest is not None:
            self.digests[number - 1] = digest

    async def _fetch(self, number: int, start: int, length: int) -> bytearray:
        """The part's bytes: part 1 from the first GET (once), the others by ranged GETs."""
        try:
            if number == 1 and self.first is not None:
                try:
                    body = await self.first.read_up_to(length)
                finally:
                    await self._release_first()
            else:
                body = await self._ranged_get(start, length)
        except ConnectionLost as error:
            self.on_rejected()
            raise BodyLengthMismatch(f"GET {self.source_key} part {number}: body cut short ({error})") from error
        if len(body) != length:
            self.on_rejected()
            raise BodyLengthMismatch(f"GET {self.source_key} part {number}: {len(body)} bytes, not {length}")
        return body

    async def _ranged_get(self, start: int, length: int) -> bytearray:
        last = start + length - 1
        try:
            async with self.source.get(self.source_key, (start, last), self.source_etag) as response:
                if response is None:
                    raise SourceChanged(f"GET {self.source_key}: gone since its first GET")
                etag = providers.normalized_etag(response.headers.get("etag"))
                if self.source_etag is not None and etag != providers.normalized_etag(self.source_etag):
                    raise SourceChanged(f"GET {self.source_key}: ETag {etag}, its first GET's was {self.source_etag}")
                found = _CONTENT_RANGE.fullmatch(response.headers.get("content-range", ""))
                if found is None or tuple(map(int, found.groups())) != (start, last, self.size):
                    raise S3Error(  # not retried: a server that ignores Range will again
                        response.status, "RangeNotHonoured", f"asked bytes {start}-{last}/{self.size}, "
                        f"answered {response.headers.get('content-range')!r}", self.source_key,
                    )  # fmt: skip
                return await response.read_up_to(length)
        except S3Error as error:
            if error.status == 412:
                raise SourceChanged(f"GET {self.source_key}: changed since its first GET ({error})") from error
            raise

    async def _upload(self, number: int, body: bytearray, digest: bytes | None) -> str:
        try:
            return await multipart.upload_part(
                self.destination, self.key, self.upload_id, number, body, digest, self.destination_md5_etags
            )
        except ContentMismatch:
            self.on_rejected()
            raise
        except S3Error as error:
            if error.code == "BadDigest":
                self.on_rejected()
            raise

    async def _add_in_turn(self, number: int, body: bytearray) -> None:
        """Add the part to the whole body's MD5 once the parts before it have been."""
        async with self._turn:
            await self._turn.wait_for(lambda: self._hashed == number - 1)
        if len(body) >= HASH_IN_THREAD:
            await asyncio.to_thread(self.whole.update, body)
        else:
            self.whole.update(body)
        async with self._turn:
            self._hashed = number
            self._turn.notify_all()

    async def _with_retries(self, operation):
        settings = self.settings
        return await with_retries(operation, settings.max_attempts, settings.max_throttled_attempts, (SourceChanged,))

    async def _release_first(self) -> None:
        if self.first is not None:
            self.first = None
            await self._close_first()


async def _md5(body: bytearray) -> bytes:
    if len(body) >= HASH_IN_THREAD:
        return await asyncio.to_thread(lambda: hashlib.md5(body).digest())
    return hashlib.md5(body).digest()


def _first(group: BaseExceptionGroup) -> BaseException:
    """The first error of a task group's (nested) errors, as the copier's retries expect one error."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error
