"""The content-proof rules, as pure functions (no I/O): when the destination already has an object,
what an ETag proves, what a copy's answers prove (``Check``), and the part layouts.

The copier (``copier.py``, ``multipart.py``) sends the requests and asks these rules what the
answers mean. Every copy is proven equal to its source before it counts as copied, at no cost
where the servers make it free: the source's GET says its MD5 (a plain ETag), which is sent as
Content-MD5 (servers that check it refuse a body changed on the way) and compared with the ETag
the PUT answers (``etag_refutes``), when the destination's ETags are MD5s. One probe PUT per
batch decides that (``probe_says_md5_etags``): a definite answer, unlike mismatches, which
corrupted answers can cause too. So a later mismatch never changes the probe's answer: on a
destination whose ETags are MD5s it fails the attempt (retried from its GET), on one whose ETags
are not it proves nothing. Only where neither side states an MD5 is the body hashed here
(``put_check``). A GET body of the wrong length never reaches a PUT.

Multipart parts carry their Content-MD5, the assembled object's ETag is checked
(``assembled_refutes``), and the whole body's MD5, when known before the upload starts, is stored
as ``x-amz-meta-md5chksum`` (rclone's convention; its format is ``providers.md5_metadata_value``)
so that ``verify`` can prove it without downloading; a source that states no MD5 at all has its
part layout mirrored (``mirrored_part_size``), so that the two multipart ETags agree.

The skip rule (``decide``) is "same size and, where both listings give plain MD5 ETags known to
compare, the same ETag".
"""

from __future__ import annotations

import base64
import enum
import hashlib
from collections.abc import Sequence

from mastodon_s3_sync.core import providers
from mastodon_s3_sync.core.transfer.http import Buffer
from mastodon_s3_sync.core.transfer.retries import ContentMismatch
from mastodon_s3_sync.core.transfer.s3 import ListedObject
from mastodon_s3_sync.core.tuning import MiB

MAX_SINGLE_COPY = 5 * 1024 * MiB
"""CopyObject's limit; larger objects are copied server-side part by part (UploadPartCopy)."""
SERVER_SIDE_PART = 512 * MiB
MAX_PARTS = 10_000
MAX_MIRRORED_PART = 64 * MiB
"""A source's part layout is mirrored (``mirrored_part_size``) only with parts up to this size."""
ETAG_PROBE_BODY = b"mastodon-s3-sync: does this bucket answer a PUT with the body's MD5?\n"
ETAG_PROBE_DIGEST = hashlib.md5(ETAG_PROBE_BODY).digest()


class Check(enum.StrEnum):
    """How a copied object was proven equal to its source, strongest first."""

    ETAG = "etag"
    """The destination's ETag is the source's MD5 (end to end, nothing hashed here)."""
    MD5 = "md5"
    """The body hashed here is the source's MD5 and went out with it as Content-MD5 (the destination's
    ETags are not MD5s); for multipart uploads, also every part's Content-MD5 and ETag."""
    MULTIPART_ETAG = "multipart_etag"
    """Source and destination have the same multipart ETag (same part layout, every part's MD5)."""
    SENT_MD5 = "sent_md5"
    """The source states no MD5 (multipart ETag of another layout, encrypted): its body is checked by
    length, and the destination by the Content-MD5 of what was sent (and its ETag, where it reports one)."""
    SERVER_SIDE_ETAG = "server_side_etag"
    """Copied server-side; the new object's ETag is the source's."""
    SERVER_SIDE = "server_side"
    """Copied server-side; the ETags do not compare (e.g. multipart source): the server's word only."""
    SIZE = "size"
    """Length only: ``TransferSettings.verify_content`` is off."""


# Skip or copy -------------------------------------------------------------------------------------


class Decision(enum.Enum):
    """What to do with an item, from the batch's listings (``decide``)."""

    COPY = "copy"
    """The destination lacks the key (the GET then says whether the source has it), or has another size."""
    SKIP = "skip"
    """The destination has the source's size and no content known to be another."""
    RECOPY = "recopy"
    """Same size, but the ETags are known to compare and differ: wrong content, copied again."""
    COPY_TO_FIND_OUT = "copy_to_find_out"
    """Same size, other ETags, not yet known to compare (the probe has not answered): copied again, but
    not reported as wrong content."""
    MISSING = "missing"
    """The destination has the key and the source's listing (over those keys) does not."""


def decide(
    source: ListedObject | None,
    destination: ListedObject | None,
    *,
    verify: bool,
    listed_etags_comparable: bool,
    destination_md5_etags: bool | None,
) -> Decision:
    """Skip, copy or copy again, given the source's and the destination's listings of the item (None:
    not listed), whether this batch's listings have shown their ETags to compare (``etags_comparable``)
    and what the ETag probe has said of the destination (None: not asked yet)."""
    if source is None:
        return Decision.MISSING if destination is not None else Decision.COPY
    if destination is None or destination.size != source.size:
        return Decision.COPY
    if not verify or not different_content(source, destination):
        return Decision.SKIP
    if listed_etags_comparable or destination_md5_etags:
        return Decision.RECOPY
    return Decision.COPY_TO_FIND_OUT if destination_md5_etags is None else Decision.SKIP


def etags_comparable(pairs: Sequence[tuple[ListedObject, ListedObject]]) -> bool:
    """Whether two listings' plain-MD5 ETags can be compared: true when any same-size pair agrees.

    When none of them agrees, one side's ETags are probably not MD5s (KMS-encrypted buckets);
    callers then decide from what the destination's PUTs answer, or download (verify --deep).
    """
    return any(
        a.size == b.size and (md5 := providers.plain_md5(a.etag)) is not None and md5 == providers.plain_md5(b.etag)
        for a, b in pairs
    )


def different_content(source: ListedObject | None, destination: ListedObject | None) -> bool:
    """Same size, but both ETags plain MD5s, and different ones."""
    if source is None or destination is None or source.size != destination.size:
        return False
    source_md5, destination_md5 = providers.plain_md5(source.etag), providers.plain_md5(destination.etag)
    return source_md5 is not None and destination_md5 is not None and source_md5 != destination_md5


# What the destination's answers prove -------------------------------------------------------------


def probe_says_md5_etags(answered_etag: str | None) -> bool:
    """Whether the destination's ETags are its objects' MD5s: the ETag answered to the probe PUT of
    ``ETAG_PROBE_BODY`` (sent with its Content-MD5) is that body's MD5."""
    return providers.plain_md5(answered_etag) == ETAG_PROBE_DIGEST.hex()


def etag_refutes(destination_md5_etags: bool | None, answered_etag: str | None, sent_md5: str) -> bool:
    """Whether the ETag a PUT (or a part's upload) answered proves the stored bytes are not the ones sent:
    only where the probe said the destination's ETags are MD5s; elsewhere an ETag says nothing of them."""
    return bool(destination_md5_etags) and providers.plain_md5(answered_etag) != sent_md5


def put_check(source_md5: str | None, destination_md5_etags: bool) -> Check:
    """What a single PUT will prove, which says how it is sent. ``ETAG``: the source's MD5 goes out as
    Content-MD5 and the PUT's ETag must be it, nothing hashed here. Otherwise the body is hashed here
    first (``MD5`` when the source states its MD5, which the hash must be; else ``SENT_MD5``)."""
    if source_md5 is not None and destination_md5_etags:
        return Check.ETAG
    return Check.MD5 if source_md5 is not None else Check.SENT_MD5


def streamed_check(
    key: str, source_md5: str | None, whole_md5: str | None, source_etag: str | None, parts_etag: str
) -> Check:
    """What a streamed multipart copy proves, its parts' ETags checked (``etag_refutes``): ``whole_md5``,
    the body's MD5 hashed here (when the source states one), must be the source's; the same multipart
    ETag as the source's (``parts_etag``, that of the parts sent) proves the same layout and every part."""
    check = Check.SENT_MD5
    if whole_md5 is not None:
        if whole_md5 != source_md5:
            raise ContentMismatch(f"GET body of {key}: MD5 {whole_md5}, not {source_md5}")
        check = Check.MD5
    if providers.normalized_etag(source_etag) == parts_etag:
        check = Check.MULTIPART_ETAG  # same layout, and every part's MD5 the source's
    return check


def assembled_refutes(
    destination_md5_etags: bool | None, final_etag: str | None, parts_etag: str, whole_md5: str | None
) -> str | None:
    """Why the assembled object's ETag proves it wrong, or None. Only where the destination's ETags are MD5s:
    a multipart ETag must be the parts' (AWS, moto, rclone); an MD5 (some servers hash the assembled
    object) must be the whole body's, when it was hashed here."""
    final_etag = providers.normalized_etag(final_etag)
    if not destination_md5_etags or final_etag is None:
        return None
    if providers.multipart_parts(final_etag) is not None and final_etag != parts_etag:
        return f"assembled as {final_etag}, the parts sent make {parts_etag}"
    md5 = providers.plain_md5(final_etag)
    if md5 is not None and whole_md5 is not None and md5 != whole_md5:
        return f"assembled with MD5 {md5}, the source's is {whole_md5}"
    return None


def server_side_check(
    key: str, copied_etag: str | None, source_etag: str | None, source_content_md5: str | None
) -> Check:
    """What a server-side copy's ETag proves: the source's ETag again, or only the server's word; when the
    source's ETag is its MD5 (``source_content_md5``) and the copy's is another MD5, the copy is wrong."""
    etag, source_etag = providers.normalized_etag(copied_etag), providers.normalized_etag(source_etag)
    if etag is not None and etag == source_etag:
        return Check.SERVER_SIDE_ETAG
    if source_content_md5 is not None and providers.plain_md5(etag) is not None:
        raise ContentMismatch(f"CopyObject {key}: ETag {etag}, the source's is {source_etag}")
    return Check.SERVER_SIDE


# Hashes -------------------------------------------------------------------------------------------


def content_md5(digest: bytes) -> str:
    """A Content-MD5 header's value: base64 of the 16-byte digest."""
    return base64.b64encode(digest).decode()


def md5_of(chunks: Sequence[Buffer]) -> bytes:
    digest = hashlib.md5()
    for chunk in chunks:
        digest.update(chunk)
    return digest.digest()


def md5_part(part: Buffer, whole) -> bytes:
    """The part's MD5, adding the part to ``whole`` (a running MD5) too when given."""
    if whole is not None:
        whole.update(part)
    return hashlib.md5(part).digest()


def parts_etag(digests: Sequence[bytes]) -> str:
    """The multipart ETag that parts of these MD5s make: the MD5 of their digests, and their count."""
    return f"{hashlib.md5(b''.join(digests)).hexdigest()}-{len(digests)}"


# Part layouts -------------------------------------------------------------------------------------


def streamed_part_size(part_size: int, size: int) -> int:
    """The configured part size, larger where ``size`` would take more than ``MAX_PARTS`` parts."""
    return max(part_size, -(-size // MAX_PARTS))


def server_side_part_size(part_size: int, size: int) -> int:
    """Server-side parts cost no bandwidth here: at least ``SERVER_SIDE_PART``."""
    return max(part_size, SERVER_SIDE_PART, -(-size // MAX_PARTS))


UPLOADERS_PART_SIZES = (5 * MiB, 8 * MiB, 10 * MiB, 15 * MiB, 16 * MiB, 32 * MiB, 64 * MiB)
"""Part sizes that common uploaders use: aws-sdk's 5 MiB (Mastodon's own uploads above 15 MB), aws-cli's
and rclone's 8 MiB, this tool's ``SYNC_PART_SIZE_MB`` default, s3cmd's 15 MiB, and a few more."""


def part_size_candidates(etag: str | None, size: int, part_size: int | None = None) -> list[int]:
    """The part sizes that could have made a multipart ``etag`` for an object of ``size`` bytes (its
    part count allows them): the uploaders' usual ones, ``part_size``, and the size split evenly in
    whole MiB. A local file hashed in these parts proves its content when one of them makes the ETag."""
    parts = providers.multipart_parts(etag)
    if parts is None:
        return []
    candidates = {*UPLOADERS_PART_SIZES, -(-size // parts), -(-size // (parts * MiB)) * MiB}
    if part_size:
        candidates.add(part_size)
    return sorted(p for p in candidates if 0 < p and (parts - 1) * p < size <= parts * p)


def fits_single_copy(size: int) -> bool:
    return size <= MAX_SINGLE_COPY


def mirrored_part_size(
    source_etag: str | None, layout: tuple[int, int] | None, size: int, memory_budget: int
) -> int | None:
    """The source's part size, when its ETag is a multipart one and ``layout`` (first part's size, part
    count: a HEAD of part 1 says it on AWS, moto, MinIO; rclone does not) agrees with it: parts of that
    size make the source's ETag again. None when the layout is unknown, odd, or too large to hold."""
    parts = providers.multipart_parts(source_etag)
    if parts is None or layout is None:
        return None
    first, count = layout
    if count != parts or not 0 < first <= min(MAX_MIRRORED_PART, memory_budget):
        return None
    return first if (count - 1) * first < size <= count * first else None
