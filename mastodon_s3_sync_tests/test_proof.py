"""The content-proof rules (``core/transfer/proof.py``), table by table: pure functions, no servers.

The tests against real servers (test_integrity.py, test_transfer_engine.py, test_verify_proof.py)
show the copier applies them; these say what each rule decides, case by case."""

from __future__ import annotations

import base64
import hashlib

import pytest

from mastodon_s3_sync.core.transfer import proof
from mastodon_s3_sync.core.transfer.proof import Check, Decision
from mastodon_s3_sync.core.transfer.retries import ContentMismatch
from mastodon_s3_sync.core.transfer.s3 import ListedObject
from mastodon_s3_sync.core.tuning import MiB

A = hashlib.md5(b"a").hexdigest()
B = hashlib.md5(b"b").hexdigest()
PROBE_MD5 = hashlib.md5(proof.ETAG_PROBE_BODY).hexdigest()


def listed(size: int, etag: str | None) -> ListedObject:
    return ListedObject("key", size, etag)


# Skip or copy: (source listed, destination listed, verify, listings' ETags comparable, probe's answer) -> decision
DECISIONS = {
    "in neither listing: the GET decides": (None, None, True, False, None, Decision.COPY),
    "at the destination, not at the source": (None, listed(5, A), True, True, True, Decision.MISSING),
    "not at the destination": (listed(5, A), None, True, True, True, Decision.COPY),
    "another size": (listed(5, A), listed(6, A), True, True, True, Decision.COPY),
    "another size, checks off": (listed(5, A), listed(6, A), False, False, None, Decision.COPY),
    "same size, same MD5": (listed(5, A), listed(5, A), True, True, True, Decision.SKIP),
    "same MD5, quoted and upper-cased": (listed(5, f'"{A}"'), listed(5, A.upper()), True, True, None, Decision.SKIP),
    "other MD5, listings comparable": (listed(5, A), listed(5, B), True, True, None, Decision.RECOPY),
    "other MD5, listings comparable, probe says not MD5s": (
        listed(5, A),
        listed(5, B),
        True,
        True,
        False,
        Decision.RECOPY,
    ),
    "other MD5, probe says MD5s": (listed(5, A), listed(5, B), True, False, True, Decision.RECOPY),
    "other MD5, probe not asked yet": (listed(5, A), listed(5, B), True, False, None, Decision.COPY_TO_FIND_OUT),
    "other MD5, probe says not MD5s (KMS)": (listed(5, A), listed(5, B), True, False, False, Decision.SKIP),
    "other MD5, checks off": (listed(5, A), listed(5, B), False, True, True, Decision.SKIP),
    "multipart ETag at the destination": (listed(5, A), listed(5, f"{B}-2"), True, True, True, Decision.SKIP),
    "multipart ETag at the source": (listed(5, f"{A}-2"), listed(5, B), True, True, True, Decision.SKIP),
    "no ETag listed at the destination": (listed(5, A), listed(5, None), True, True, True, Decision.SKIP),
    "empty objects": (listed(0, None), listed(0, None), True, False, None, Decision.SKIP),
}


@pytest.mark.parametrize(
    ("source", "destination", "verify", "comparable", "md5_etags", "expected"), DECISIONS.values(), ids=DECISIONS
)
def test_skip_or_copy(source, destination, verify, comparable, md5_etags, expected):
    decision = proof.decide(
        source, destination, verify=verify, listed_etags_comparable=comparable, destination_md5_etags=md5_etags
    )
    assert decision is expected


COMPARABLE = {
    "no pairs": ([], False),
    "a same-size pair agrees": ([(listed(5, A), listed(5, B)), (listed(5, A), listed(5, f'"{A}"'))], True),
    "every pair differs (KMS)": ([(listed(5, A), listed(5, B)), (listed(7, B), listed(7, A))], False),
    "agreeing ETags, other sizes": ([(listed(5, A), listed(6, A))], False),
    "agreeing multipart ETags only": ([(listed(5, f"{A}-2"), listed(5, f"{A}-2"))], False),
    "no ETags": ([(listed(5, None), listed(5, None))], False),
}


@pytest.mark.parametrize(("pairs", "expected"), COMPARABLE.values(), ids=COMPARABLE)
def test_listings_etags_comparable(pairs, expected):
    assert proof.etags_comparable(pairs) is expected


# The ETag probe: the ETag answered to the probe's PUT -> whether the destination's ETags are MD5s
PROBE_ANSWERS = {
    "the body's MD5, quoted": (f'"{PROBE_MD5}"', True),
    "the body's MD5, upper case": (PROBE_MD5.upper(), True),
    "the body's MD5, XML-escaped quotes": (f"&quot;{PROBE_MD5}&quot;", True),
    "another MD5 (KMS)": (A, False),
    "a multipart form": (f"{PROBE_MD5}-1", False),
    "a weak ETag": (f'W/"{PROBE_MD5}"', False),
    "no ETag": (None, False),
    "an empty ETag": ("", False),
}


@pytest.mark.parametrize(("answered", "expected"), PROBE_ANSWERS.values(), ids=PROBE_ANSWERS)
def test_what_the_probe_answer_decides(answered, expected):
    assert proof.probe_says_md5_etags(answered) is expected


def test_the_probe_body_goes_with_its_content_md5():
    assert proof.content_md5(proof.ETAG_PROBE_DIGEST) == base64.b64encode(bytes.fromhex(PROBE_MD5)).decode()


# A later mismatch: (the probe's answer, the ETag a PUT or a part answered, the MD5 sent) -> the attempt fails
LATER_ANSWERS = {
    "MD5 ETags, the MD5 sent": (True, f'"{A}"', A, False),
    "MD5 ETags, another MD5: bytes changed on the way": (True, B, A, True),
    "MD5 ETags, no ETag": (True, None, A, True),
    "MD5 ETags, a multipart form": (True, f"{A}-1", A, True),
    "not MD5s, another MD5: says nothing": (False, B, A, False),
    "not MD5s, no ETag": (False, None, A, False),
    "checks off (never probed)": (None, B, A, False),
}


@pytest.mark.parametrize(("md5_etags", "answered", "sent", "refuted"), LATER_ANSWERS.values(), ids=LATER_ANSWERS)
def test_how_a_later_etag_mismatch_is_treated(md5_etags, answered, sent, refuted):
    """Only the probe says whether ETags are MD5s (a mismatch may be a corrupted answer): after it says
    so, a mismatch fails the attempt (retried from its GET); after it says not, an ETag proves nothing."""
    assert proof.etag_refutes(md5_etags, answered, sent) is refuted


# A single PUT: (the source's stated MD5, the probe's answer) -> what it proves (ETAG: nothing hashed here)
PUT_CHECKS = {
    "source MD5, MD5 ETags": (A, True, Check.ETAG),
    "source MD5, not MD5s: hashed here": (A, False, Check.MD5),
    "no source MD5, MD5 ETags": (None, True, Check.SENT_MD5),
    "no source MD5, not MD5s": (None, False, Check.SENT_MD5),
}


@pytest.mark.parametrize(("source_md5", "md5_etags", "expected"), PUT_CHECKS.values(), ids=PUT_CHECKS)
def test_what_a_put_proves(source_md5, md5_etags, expected):
    assert proof.put_check(source_md5, md5_etags) is expected


PARTS = [hashlib.md5(b"x").digest(), hashlib.md5(b"y").digest()]
PARTS_ETAG = f"{hashlib.md5(b''.join(PARTS)).hexdigest()}-2"

# A streamed multipart copy: (source MD5, body's MD5 hashed here, source ETag) -> what it proves
STREAMED = {
    "source MD5, body agrees": (A, A, A, Check.MD5),
    "no source MD5, same layout": (None, None, PARTS_ETAG, Check.MULTIPART_ETAG),
    "no source MD5, same layout, quoted": (None, None, f'"{PARTS_ETAG.upper()}"', Check.MULTIPART_ETAG),
    "no source MD5, another layout": (None, None, f"{B}-3", Check.SENT_MD5),
}


@pytest.mark.parametrize(("source_md5", "whole_md5", "source_etag", "expected"), STREAMED.values(), ids=STREAMED)
def test_what_a_streamed_multipart_copy_proves(source_md5, whole_md5, source_etag, expected):
    assert proof.parts_etag(PARTS) == PARTS_ETAG
    assert proof.streamed_check("key", source_md5, whole_md5, source_etag, PARTS_ETAG) is expected


def test_a_streamed_body_of_another_md5_is_refused():
    with pytest.raises(ContentMismatch, match=f"GET body of key: MD5 {B}, not {A}"):
        proof.streamed_check("key", A, B, A, PARTS_ETAG)


# The assembled object's ETag: (probe's answer, final ETag, body's MD5) -> why it is wrong, or None
ASSEMBLED = {
    "the parts' ETag": (True, f'"{PARTS_ETAG}"', None, None),
    "other parts": (True, f"{B}-2", None, f"assembled as {B}-2, the parts sent make {PARTS_ETAG}"),
    "the body's MD5": (True, A, A, None),
    "another MD5": (True, B, A, f"assembled with MD5 {B}, the source's is {A}"),
    "an MD5, body not hashed": (True, B, None, None),
    "no ETag": (True, None, A, None),
    "not MD5 ETags": (False, f"{B}-2", A, None),
}


@pytest.mark.parametrize(("md5_etags", "final", "whole_md5", "problem"), ASSEMBLED.values(), ids=ASSEMBLED)
def test_what_the_assembled_etag_refutes(md5_etags, final, whole_md5, problem):
    assert proof.assembled_refutes(md5_etags, final, PARTS_ETAG, whole_md5) == problem


# A server-side copy: (new ETag, source's ETag, source's ETag is its MD5) -> what it proves
SERVER_SIDE = {
    "the source's ETag": (f'"{A}"', A, A, Check.SERVER_SIDE_ETAG),
    "the source's multipart ETag": (f"{A}-3", f'"{A}-3"', None, Check.SERVER_SIDE_ETAG),
    "another layout": (f"{B}-2", f"{A}-3", None, Check.SERVER_SIDE),
    "an MD5, the source's multipart": (B, f"{A}-3", None, Check.SERVER_SIDE),
    "no ETag answered": (None, A, A, Check.SERVER_SIDE),
}


@pytest.mark.parametrize(("etag", "source_etag", "source_md5", "expected"), SERVER_SIDE.values(), ids=SERVER_SIDE)
def test_what_a_server_side_copy_proves(etag, source_etag, source_md5, expected):
    assert proof.server_side_check("key", etag, source_etag, source_md5) is expected


def test_a_server_side_copy_with_another_md5_is_refused():
    with pytest.raises(ContentMismatch, match=f"CopyObject key: ETag {B}, the source's is {A}"):
        proof.server_side_check("key", B, A, A)


# Mirroring a source's part layout: (source ETag, HEAD of part 1's (size, count), object size, memory budget)
# -> the part size
MIRRORED = {
    "3 parts of 5 MiB": (f"{A}-3", (5 * MiB, 3), 12 * MiB, 256 * MiB, 5 * MiB),
    "last part full": (f"{A}-3", (5 * MiB, 3), 15 * MiB, 256 * MiB, 5 * MiB),
    "parts of the largest size mirrored": (f"{A}-2", (64 * MiB, 2), 100 * MiB, 256 * MiB, 64 * MiB),
    "a plain MD5: nothing to mirror": (A, (5 * MiB, 3), 12 * MiB, 256 * MiB, None),
    "the layout unknown (rclone)": (f"{A}-3", None, 12 * MiB, 256 * MiB, None),
    "another part count": (f"{A}-4", (5 * MiB, 3), 12 * MiB, 256 * MiB, None),
    "parts larger than mirrored": (f"{A}-2", (65 * MiB, 2), 100 * MiB, 256 * MiB, None),
    "parts larger than the memory budget": (f"{A}-3", (8 * MiB, 3), 20 * MiB, 6 * MiB, None),
    "size beyond the layout": (f"{A}-3", (5 * MiB, 3), 16 * MiB, 256 * MiB, None),
    "size short of the layout": (f"{A}-3", (5 * MiB, 3), 10 * MiB, 256 * MiB, None),
}


@pytest.mark.parametrize(("source_etag", "layout", "size", "budget", "expected"), MIRRORED.values(), ids=MIRRORED)
def test_mirrored_part_size(source_etag, layout, size, budget, expected):
    assert proof.mirrored_part_size(source_etag, layout, size, budget) == expected


def test_part_sizes_keep_within_the_part_count_limit():
    assert proof.streamed_part_size(8 * MiB, 100 * MiB) == 8 * MiB
    assert proof.streamed_part_size(8 * MiB, -1) == 8 * MiB  # no Content-Length
    assert proof.streamed_part_size(8 * MiB, 100_000 * MiB) == 10 * MiB  # 10,000 parts at most
    assert proof.server_side_part_size(8 * MiB, 6 * 1024 * MiB) == 512 * MiB
    assert proof.server_side_part_size(8 * MiB, 10_000 * 1024 * MiB) == 1024 * MiB
    assert proof.fits_single_copy(5 * 1024 * MiB) and not proof.fits_single_copy(5 * 1024 * MiB + 1)


PART_SIZE_CANDIDATES = {
    # Mastodon's aws-sdk uploads above 15 MB: 5 MiB parts
    "a 20 MB video in 4 parts": (f"{A}-4", 20_000_000, None, [5_000_000, 5 * MiB]),
    "rclone or aws-cli, 8 MiB": (f"{A}-3", 20 * MiB, None, [6_990_507, 7 * MiB, 8 * MiB]),  # 10 MiB: 2 parts
    "an even split in whole MiB": (f"{A}-3", 60 * MiB, None, [20 * MiB]),
    "several fit": (f"{A}-2", 30 * MiB, None, [15 * MiB, 16 * MiB]),
    "the configured part size": (
        f"{A}-2",
        13 * MiB + 1,
        7 * MiB + 3,
        [6_815_745, 7 * MiB, 7 * MiB + 3, 8 * MiB, 10 * MiB],
    ),
    "one part": (
        f"{A}-1",
        3 * MiB,
        None,
        [3 * MiB, 5 * MiB, 8 * MiB, 10 * MiB, 15 * MiB, 16 * MiB, 32 * MiB, 64 * MiB],
    ),
    "a plain MD5": (A, 20 * MiB, None, []),
    "no ETag": (None, 20 * MiB, None, []),
}


@pytest.mark.parametrize(
    ("etag", "size", "part_size", "expected"), PART_SIZE_CANDIDATES.values(), ids=PART_SIZE_CANDIDATES
)
def test_part_size_candidates(etag, size, part_size, expected):
    assert proof.part_size_candidates(etag, size, part_size) == expected
