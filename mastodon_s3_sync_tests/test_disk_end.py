"""The disk end (core/transfer/disk.py) on real files under a temporary directory: path safety,
listings in key order, atomic writes with Mastodon's modes, the proofs a write gives."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest

from mastodon_s3_sync.core import providers
from mastodon_s3_sync.core.errors import ConfigError
from mastodon_s3_sync.core.mastodon.layout import CACHE_CONTROL
from mastodon_s3_sync.core.transfer import proof
from mastodon_s3_sync.core.transfer.disk import (
    TEMPORARY_PREFIX,
    DiskEnd,
    DiskRoot,
    UnsafeKey,
    file_system_type,
    key_segments,
)
from mastodon_s3_sync.core.transfer.limiter import EndpointLimiter
from mastodon_s3_sync.core.transfer.listing import list_objects
from mastodon_s3_sync.core.transfer.s3 import S3Error
from mastodon_s3_sync.execution.compute_logs import SharedComputeLogManager


def end(root, hash_above: int = 1 << 20) -> DiskEnd:
    return DiskEnd(DiskRoot(str(root)), EndpointLimiter(), hash_above)


def write(root, key: str, body: bytes) -> None:
    path = root.joinpath(*key.split("/"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)


def run(coroutine):
    return asyncio.run(coroutine)


@pytest.mark.parametrize(
    ("key", "segments"),
    [
        (
            "accounts/avatars/000/000/001/original/a.png",
            ["accounts", "avatars", "000", "000", "001", "original", "a.png"],
        ),
        ("a b/é%2F.png", ["a b", "é%2F.png"]),
        ("..a/b..", ["..a", "b.."]),
        ("", None),
        ("/etc/passwd", None),
        ("../outside", None),
        ("a/../../outside", None),
        ("a/./b", None),
        ("a//b", None),
        ("a/b/", None),
        ("a/\0b", None),
    ],
)
def test_key_segments(key, segments) -> None:
    if segments is None:
        with pytest.raises(UnsafeKey):
            key_segments(key)
    else:
        assert key_segments(key) == segments


def test_symlinks_out_of_the_root_are_refused_and_not_listed(tmp_path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    write(outside, "secret/x.png", b"secret")
    write(root, "inside/a.png", b"a")
    (root / "escape").symlink_to(outside / "secret")
    (root / "alias").symlink_to(root / "inside")  # inside the root: followed
    disk = end(root)
    with pytest.raises(UnsafeKey, match="outside"):
        disk.path_of("escape/x.png")
    with pytest.raises(UnsafeKey):
        run(disk.put("escape/y.png", [b"y"], {}))
    assert not (outside / "secret" / "y.png").exists()
    page, _ = run(disk.list_page("", None, None))
    assert [listed.key for listed in page] == ["alias/a.png", "inside/a.png"]


def test_listing_is_in_key_order_with_md5s_pages_and_prefixes(tmp_path) -> None:
    keys = ["a-c", "a/b", "a/b-", "a/b/c", "a.b/c", "ab", "b/0/1", "b/01", "é/x", "z"]
    for key in ("a/b/c", "b/0/1", "é/x"):
        write(tmp_path, key, key.encode())
    for key in set(keys) - {"a/b/c", "b/0/1", "é/x", "a/b"}:
        write(tmp_path, key, key.encode())
    keys.remove("a/b")  # a directory here, not a file
    (tmp_path / f"{TEMPORARY_PREFIX}put-1").write_bytes(b"half")
    (tmp_path / "a" / f"{TEMPORARY_PREFIX}put-2").write_bytes(b"half")
    disk = end(tmp_path)
    listed = []
    token = None
    while True:
        page, token = run(disk.list_page("", None, token, max_keys=3))
        listed += page
        if token is None:
            break
    assert [item.key for item in listed] == sorted(keys), "S3's order: the keys' own"
    assert all(item.etag == hashlib.md5(item.key.encode()).hexdigest() for item in listed)
    assert all(item.size == len(item.key.encode()) for item in listed)
    after, _ = run(disk.list_page("a", "a.b/c", None))
    assert [item.key for item in after] == ["a/b-", "a/b/c", "ab"]
    under, _ = run(disk.list_page("b/0", None, None))
    assert [item.key for item in under] == ["b/0/1", "b/01"]
    found = run(list_objects(disk, ["a/b/c", "z", "missing/x", "a/b-"]))
    assert sorted(found) == ["a/b-", "a/b/c", "z"]


def test_put_is_atomic_with_mastodons_modes(tmp_path) -> None:
    old_umask = os.umask(0o022)
    try:
        disk = end(tmp_path / "root")
        (tmp_path / "root").mkdir()
        body = [b"hello ", bytearray(b"world")]
        md5 = hashlib.md5(b"hello world").digest()
        etag = run(disk.put("x/y/z.png", body, {"Content-MD5": proof.content_md5(md5)}))
    finally:
        os.umask(old_umask)
    path = tmp_path / "root" / "x" / "y" / "z.png"
    assert etag == md5.hex() and path.read_bytes() == b"hello world"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o755
    assert os.listdir(path.parent) == ["z.png"], "no temporary file left"


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def mode_of(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_files_get_the_mode_of_their_acl_and_put_acl_chmods_them(tmp_path, umask_022) -> None:
    """Private media 0600 as Mastodon chmods it on disk, backups and the rest 0644; a chmod sets the
    mode of a file already there, and its grants read the mode back."""
    disk = end(tmp_path)
    private, public, backup = (
        "media_attachments/files/1/original/a.png",
        "accounts/avatars/a.png",
        "backups/dumps/b.zip",
    )
    run(disk.put(private, [b"p"], {"x-amz-acl": "private"}))
    run(disk.put(public, [b"q"], {"x-amz-acl": "public-read"}))
    run(disk.put(backup, [b"b"], {"x-amz-acl": "private"}))

    async def upload_private() -> None:
        upload_id = await disk.create_multipart_upload("v/video.mp4", {"x-amz-acl": "private"})
        etag = await disk.upload_part("v/video.mp4", upload_id, 1, b"v")
        await disk.complete_multipart_upload("v/video.mp4", upload_id, [etag])

    run(upload_private())
    paths = {key: tmp_path.joinpath(*key.split("/")) for key in (private, public, backup, "v/video.mp4")}
    assert {key: mode_of(path) for key, path in paths.items()} == {
        private: 0o600, public: 0o644, backup: 0o644, "v/video.mp4": 0o600
    }  # fmt: skip
    public_grants = [(providers.ALL_USERS, "READ")]
    assert [run(disk.get_acl_grants(key)) for key in (private, public, backup)] == [[], public_grants, []]

    assert run(disk.put_acl(public, "private")) and mode_of(paths[public]) == 0o600
    assert run(disk.put_acl(private, "public-read")) and mode_of(paths[private]) == 0o644
    assert run(disk.get_acl_grants(public)) == [] and run(disk.get_acl_grants(private)) == public_grants
    paths[public].chmod(0o640)  # readable by the web server's group: not private
    assert run(disk.get_acl_grants(public)) == public_grants
    assert run(disk.put_acl(backup, "private")) and mode_of(paths[backup]) == 0o644, "backups are never chmodded"
    assert not run(disk.put_acl("accounts/avatars/missing.png", "private")), "no such file, as a 404"
    assert not run(disk.put_acl("accounts", "private")) and mode_of(tmp_path / "accounts") == 0o755, "no directory"
    with pytest.raises(S3Error) as missing:
        run(disk.get_acl_grants("accounts/avatars/missing.png"))
    assert missing.value.code == "NoSuchKey"


def test_put_acl_never_leaves_the_root(tmp_path, umask_022) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    write(outside, "secret/x.png", b"secret")
    (outside / "secret" / "x.png").chmod(0o644)
    root.mkdir()
    (root / "escape").symlink_to(outside / "secret")
    disk = end(root)
    for key in ("escape/x.png", "../outside/secret/x.png"):
        with pytest.raises(UnsafeKey):
            run(disk.put_acl(key, "private"))
    assert mode_of(outside / "secret" / "x.png") == 0o644


def test_a_write_whose_bytes_are_not_the_content_md5_leaves_nothing(tmp_path) -> None:
    disk = end(tmp_path)
    wrong = proof.content_md5(hashlib.md5(b"something else").digest())
    with pytest.raises(S3Error) as refused:
        run(disk.put("x/z.png", [b"hello"], {"Content-MD5": wrong}))
    assert refused.value.code == "BadDigest"
    write(tmp_path, "y/old.png", b"old")
    with pytest.raises(S3Error):
        run(disk.put("y/old.png", [b"new"], {"Content-MD5": wrong}))
    assert os.listdir(tmp_path / "x") == []
    assert os.listdir(tmp_path / "y") == ["old.png"] and (tmp_path / "y" / "old.png").read_bytes() == b"old"


def test_multipart_upload_joins_parts_atomically(tmp_path) -> None:
    disk = end(tmp_path)
    parts = [b"a" * 10, b"b" * 10, b"c" * 3]

    async def upload(abort: bool) -> str | None:
        upload_id = await disk.create_multipart_upload("v/video.mp4", {})
        etags = []
        for number, part in reversed(list(enumerate(parts, start=1))):  # in any order
            md5 = hashlib.md5(part).digest()
            etags.insert(
                0,
                await disk.upload_part("v/video.mp4", upload_id, number, part, {"Content-MD5": proof.content_md5(md5)}),
            )
            assert not (tmp_path / "v" / "video.mp4").exists(), "never under its real name before completion"
        if abort:
            await disk.abort_multipart_upload("v/video.mp4", upload_id)
            return None
        return await disk.complete_multipart_upload("v/video.mp4", upload_id, etags)

    assert run(upload(abort=True)) is None
    assert os.listdir(tmp_path / "v") == [], "an aborted upload leaves nothing"
    etag = run(upload(abort=False))
    assert etag == proof.parts_etag([hashlib.md5(part).digest() for part in parts])
    assert (tmp_path / "v" / "video.mp4").read_bytes() == b"".join(parts)
    assert os.listdir(tmp_path / "v") == ["video.mp4"]


def test_get_and_head_state_what_mastodon_would_have_stored(tmp_path) -> None:
    write(tmp_path, "small.png", b"png")
    write(tmp_path, "large.mp4", b"m" * 100)
    disk = end(tmp_path, hash_above=50)
    disk.content_types = {"small.png": "image/png", "large.mp4": "video/mp4"}

    async def read(key: str, size: int | None):
        async with disk.get(key) as body:
            if body is None:
                return None
            data = await body.read_chunks() if size is None else [await body.read_up_to(size)]
            return body.headers, b"".join(data)

    headers, data = run(read("small.png", None))
    assert data == b"png"
    assert headers == {"content-length": "3", "cache-control": CACHE_CONTROL, "content-type": "image/png"}
    headers, data = run(read("large.mp4", 1000))
    assert data == b"m" * 100, "read from the start after hashing"
    assert headers["etag"] == hashlib.md5(b"m" * 100).hexdigest(), "a large file states its MD5"
    assert run(read("nothing.png", None)) is None
    head = run(disk.head("small.png"))
    assert head.headers == {"Cache-Control": CACHE_CONTROL, "Content-Type": "image/png"}
    assert head.stated_md5 == hashlib.md5(b"png").hexdigest() and head.size == 3
    assert run(disk.head("nothing.png")) is None


def test_a_ranged_read_gives_its_part_and_refuses_a_changed_file(tmp_path) -> None:
    """The parallel parts' ranged GETs (If-Match on the first read's ETag) on a file."""
    body = bytes(range(256)) * 40
    write(tmp_path, "video.mp4", body)
    disk = end(tmp_path, hash_above=50)
    md5 = hashlib.md5(body).hexdigest()

    async def ranged(first: int, last: int, if_match: str | None):
        async with disk.get("video.mp4", (first, last), if_match) as part:
            return part.headers, bytes(await part.read_up_to(1 << 20)), await part.read_up_to(10)

    headers, data, after = run(ranged(1000, 4999, f'"{md5}"'))
    assert data == body[1000:5000] and after == b"", "exactly the range, nothing past it"
    assert headers["content-range"] == f"bytes 1000-4999/{len(body)}" and headers["content-length"] == "4000"
    assert headers["etag"] == md5
    write(tmp_path, "video.mp4", body[::-1])  # rewritten between two ranges
    with pytest.raises(S3Error) as refused:
        run(ranged(5000, 9999, md5))
    assert refused.value.status == 412


@pytest.mark.parametrize("where", ["tmp_path", "/dev/shm"])
def test_a_small_file_read_on_the_loop_is_the_files_bytes(where, tmp_path) -> None:
    """Read from the page cache on the event loop (``RWF_NOWAIT``; tmpfs refuses it and is read
    plainly), else in a thread: the bytes are the same either way."""
    root = tmp_path if where == "tmp_path" else Path(tempfile.mkdtemp(dir=where))
    try:
        body = os.urandom(300_000)
        write(root, "a/b.png", body)
        disk = end(root)
        assert disk.never_blocks == (file_system_type(root) in ("tmpfs", "ramfs"))
        assert file_system_type(Path("/dev/shm")) == "tmpfs"

        async def read():
            async with disk.get("a/b.png") as file:
                return b"".join(await file.read_chunks())

        assert run(read()) == body
        assert run(read()) == body, "again, now certainly cached"
    finally:
        if root != tmp_path:  # /dev/shm is memory: never leave it behind
            shutil.rmtree(root)


def test_several_hosts_refuse_a_directory_destination(monkeypatch, tmp_path) -> None:
    """Each Celery host would write to its own disk; the compute logs' bucket is the destination's too."""
    monkeypatch.setenv("DAGSTER_COMPUTE_LOGS_BUCKET", "dagster-logs")
    monkeypatch.setenv("DESTINATION_PAPERCLIP_ROOT_PATH", str(tmp_path))
    monkeypatch.delenv("DESTINATION_S3_BUCKET", raising=False)
    with pytest.raises(ConfigError, match="without CELERY_BROKER_URL"):
        SharedComputeLogManager()


def test_a_batch_reads_each_expected_file_once(tmp_path) -> None:
    """``verify`` lists, then HEADs a disk source: the MD5 the listing read is reused while the file is
    unchanged (size and mtime), and forgotten with the next batch."""
    for key in ("a.png", "b.png"):
        write(tmp_path, key, b"1234")
    disk = end(tmp_path)
    disk.expect({"a.png": "image/png"})
    run(disk.list_page("", None, None))
    for key in ("a.png", "b.png"):
        stamp = (tmp_path / key).stat().st_mtime_ns
        (tmp_path / key).write_bytes(b"5678")
        os.utime(tmp_path / key, ns=(stamp, stamp))
    assert run(disk.head("a.png")).stated_md5 == hashlib.md5(b"1234").hexdigest(), "not read again"
    assert run(disk.head("b.png")).stated_md5 == hashlib.md5(b"5678").hexdigest(), "not expected: not kept"
    disk.expect({"a.png": "image/png"})
    assert run(disk.head("a.png")).stated_md5 == hashlib.md5(b"5678").hexdigest()


def test_a_file_is_proven_against_a_multipart_etag_by_hashing_it_in_parts(tmp_path) -> None:
    body = os.urandom(12 * 1024 * 1024 + 5)
    write(tmp_path, "v.mp4", body)
    disk = end(tmp_path)

    def etag(part_size: int) -> str:
        return proof.parts_etag(
            [hashlib.md5(body[at : at + part_size]).digest() for at in range(0, len(body), part_size)]
        )

    mib = 1024 * 1024
    assert run(disk.makes_etag("v.mp4", etag(5 * mib))), "Mastodon's aws-sdk uploads: 5 MiB parts"
    assert run(disk.makes_etag("v.mp4", f'"{etag(8 * mib).upper()}"')), "rclone's 8 MiB, quoted"
    assert run(disk.makes_etag("v.mp4", etag(3 * mib))), "an even split in whole MiB"
    assert not run(disk.makes_etag("v.mp4", etag(2_831_155))), "an odd layout proves nothing"
    assert not run(disk.makes_etag("v.mp4", hashlib.md5(body).hexdigest())), "not a multipart ETag"
    assert not run(disk.makes_etag("gone.mp4", etag(5 * mib)))
    (tmp_path / "v.mp4").write_bytes(body[:-1] + b"!")
    assert not run(disk.makes_etag("v.mp4", etag(5 * mib)))
