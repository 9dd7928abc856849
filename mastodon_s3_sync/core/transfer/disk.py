"""A directory as one end of a copy: Mastodon's ``PAPERCLIP_ROOT_PATH`` (``ends.py``'s ``ObjectSource``
and ``ObjectDestination`` over files).

A key is the file's path under the root (there is no key prefix on disk). Listings walk the tree in
key order (entries sorted as their keys sort: a directory as its name plus ``/``), so the copier's
and ``verify``'s listings, skip rules and resume work as on a bucket; a listed file's ETag is the
MD5 of its bytes, read here (the network is the cost; a local read decides).

A file carries no headers: ``get`` and ``head`` state the Content-Type the caller set for the key
(``content_types``, from the rows: ``layout.style_content_type``) and Mastodon's Cache-Control.
Files above ``hash_above`` bytes are hashed before they are read, so their MD5 is stated (the
upload then stores it as ``md5chksum`` and checks the whole body against it).

Writes are atomic: the bytes go to a temporary name in the file's own directory (never listed),
are hashed as they are written, checked against the Content-MD5 sent (``BadDigest`` otherwise,
as S3 answers), fsynced, given Mastodon's file mode and renamed over the real name, and the
directory is fsynced. A partial file never has a real name. Parts of a multipart upload are such
temporary files too, joined into one at completion. Paths never leave the root: a key with an
empty, ``.`` or ``..`` segment or a leading ``/`` is refused (``UnsafeKey``), and so is one whose
path resolves outside the root through a symlink; listings follow no symlink out of the root.

ACLs are file modes, as Mastodon's filesystem storage keeps them (``layout.file_mode``): a file is
written with the mode of the canned ACL its PUT sends (``x-amz-acl``: ``private`` media ``0600 & ~umask``,
the rest ``0666 & ~umask``), ``put_acl`` chmods it, and ``get_acl_grants`` reads the mode back as
grants (readable by group or others: AllUsers READ; a backup reads as private whatever its mode). The server-side copy is S3's only.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import stat
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from mastodon_s3_sync.core import providers
from mastodon_s3_sync.core.mastodon.layout import CACHE_CONTROL, file_is_private, file_mode
from mastodon_s3_sync.core.transfer import proof
from mastodon_s3_sync.core.transfer.http import Buffer
from mastodon_s3_sync.core.transfer.limiter import EndpointLimiter
from mastodon_s3_sync.core.transfer.s3 import ListedObject, ObjectHead, S3Error

TEMPORARY_PREFIX = ".mastodon-s3-sync-"
"""Names of files being written (and of the ETag probe): never listed, never a real object."""
READ_SIZE = 1 << 20


class UnsafeKey(S3Error):
    """A key that would name a path outside the root, or not one file: refused, never retried."""

    def __init__(self, key: str, reason: str):
        super().__init__(400, "UnsafeKey", reason, key)


@dataclass(frozen=True)
class DiskRoot:
    """Where a disk end's files are (the engine's counterpart of ``s3.Bucket``)."""

    path: str

    @property
    def name(self) -> str:
        return self.path

    @property
    def base_url(self) -> str:
        return Path(self.path).absolute().as_uri()


def key_segments(key: str) -> list[str]:
    """The path segments a key names under the root; ``UnsafeKey`` for one that could leave it or
    name no single file: empty, absolute, an empty, ``.`` or ``..`` segment, a NUL byte."""
    if not key or key.startswith("/"):
        raise UnsafeKey(key, "an empty or absolute key names no file under the root")
    if "\0" in key:
        raise UnsafeKey(key, "a key with a NUL byte names no file")
    segments = key.split("/")
    if any(segment in ("", ".", "..") for segment in segments):
        raise UnsafeKey(key, "a key with an empty, '.' or '..' segment could name a path outside the root")
    return segments


def process_umask() -> int:
    """The process's umask, read without changing it where Linux says it (/proc/self/status)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def real_path(path: Path) -> Path:
    """``path`` with every symlink resolved, as ``Path.resolve()`` gives it, from the kernel: an
    ``O_PATH`` descriptor's name in /proc/self/fd. Measured: ``Path.resolve()`` (an lstat per
    component, in Python) took 0.31 ms of the 0.89 ms of CPU a 180 kB file cost to upload; this
    takes two system calls. A path that does not exist (yet) is its real parent joined with its name."""
    try:
        descriptor = os.open(path, os.O_PATH)
    except FileNotFoundError:
        return path.resolve() if path.parent == path else real_path(path.parent) / path.name
    except OSError:
        return path.resolve()
    try:
        return Path(os.readlink(f"/proc/self/fd/{descriptor}"))
    except OSError:  # no /proc
        return path.resolve()
    finally:
        os.close(descriptor)


class _WouldBlock(Exception):
    """A read the page cache cannot answer: to be done in a thread."""


MEMORY_FILE_SYSTEMS = frozenset({"tmpfs", "ramfs"})


def _cached_read(file, size: int, never_blocks: bool) -> bytearray:
    """``size`` bytes from the file's position, only if the page cache holds them all (``RWF_NOWAIT``);
    on a file system without it, a plain read when ``never_blocks``."""
    buffer = bytearray(size)
    offset = file.tell()
    try:
        count = os.preadv(file.fileno(), [buffer], offset, os.RWF_NOWAIT)
    except BlockingIOError:
        raise _WouldBlock from None
    except OSError as error:
        if error.errno != errno.EOPNOTSUPP or not never_blocks:
            raise _WouldBlock from None
        count = os.preadv(file.fileno(), [buffer], offset)
    if count != size:
        raise _WouldBlock  # partly cached (or shorter than its size said): the thread reads it whole
    return buffer


def file_system_type(path: Path) -> str | None:
    """The type of the file system holding ``path`` (``/proc/self/mountinfo``), if Linux says it."""
    try:
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    best, found = "", None
    for line in mounts:
        fields = line.split(" - ", 1)
        mount_point = fields[0].split()[4]
        if fields[1:] and (str(path) + "/").startswith(mount_point.rstrip("/") + "/") and len(mount_point) >= len(best):
            best, found = mount_point, fields[1].split()[0]
    return found


class _FileBody:
    """A file being read, as ``ends.SourceBody``."""

    def __init__(self, file, headers: dict[str, str], limit: int):
        self.file = file
        self.headers = headers
        self.remaining = limit
        """Bytes left to read (the file's, or its requested range's)."""
        self.ahead: bytearray | None = None
        """What ``read_ahead`` read and ``read_*`` have not handed out yet."""

    def read_ahead(self, never_blocks: bool | None = None) -> None:
        """Read the rest now and close the file: ``read_*`` then hand it out. ``never_blocks`` (on the
        event loop): only what the page cache holds, else ``_WouldBlock``; True: the file system
        keeps everything in memory (tmpfs), so a plain read cannot block either."""
        if never_blocks is None:
            self.ahead = self._read(self.remaining)
        else:
            self.ahead = _cached_read(self.file, self.remaining, never_blocks)
            self.remaining = 0
        self.file.close()

    async def read_chunks(self) -> list[Buffer]:
        return [await self.read_up_to(len(self.ahead) if self.ahead is not None else self.remaining)]

    async def read_up_to(self, size: int) -> bytearray:
        if self.ahead is None:
            return await asyncio.to_thread(self._read, size)
        if size >= len(self.ahead):
            taken, self.ahead = self.ahead, bytearray()
            return taken
        taken, self.ahead = self.ahead[:size], self.ahead[size:]
        return taken

    def _read(self, size: int) -> bytearray:
        size = min(size, self.remaining)
        buffer = bytearray(size)
        view, filled = memoryview(buffer), 0
        while filled < size and (count := self.file.readinto(view[filled:])):
            filled += count
        del view
        del buffer[filled:]
        self.remaining -= filled
        return buffer


@dataclass
class _Upload:
    path: Path
    mode: int
    """The joined file's (from the ACL the upload was started with)."""
    parts: dict[int, tuple[Path, bytes]]
    """Part number -> its temporary file and MD5."""


class DiskEnd:
    """Files under a root directory as the copier's source or destination."""

    def __init__(self, root: DiskRoot, limiter: EndpointLimiter, hash_above: int):
        self.root = Path(root.path).resolve()
        self.bucket = root
        """Where the files are, named as an ``S3Client``'s bucket is (in errors)."""
        self.limiter = limiter
        """Never throttles; kept for the batch's statistics, as an ``S3Client``'s."""
        self.hash_above = hash_above
        self.content_types: dict[str, str | None] = {}
        """Key -> the Content-Type Mastodon would have stored with it on S3 (``expect``)."""
        self._md5s: dict[str, tuple[int, int, str]] = {}
        """Key -> (size, mtime in ns, MD5) of the expected keys listed: a HEAD after the listing reads nothing."""
        self.requests: Counter[str] = Counter()
        """File operations by kind, counted as an ``S3Client`` counts its requests."""
        self.umask = process_umask()
        """Applied to the modes Mastodon gives files, as Paperclip applies the process's (directories:
        ``mkdir_p``'s ``0777 & ~umask``)."""
        self._uploads: dict[str, _Upload] = {}
        self.never_blocks = file_system_type(self.root) in MEMORY_FILE_SYSTEMS
        """Reads cannot wait for a disk (tmpfs), though the file system refuses ``RWF_NOWAIT``."""

    # Paths ----------------------------------------------------------------------------------------

    def path_of(self, key: str) -> Path:
        """The key's path, refused (``UnsafeKey``) when it would leave the root."""
        path = self.root.joinpath(*key_segments(key))
        if not self._inside(real_path(path)):
            raise UnsafeKey(key, f"the path resolves outside {self.root} through a symlink")
        return path

    def expect(self, content_types: Mapping[str, str | None]) -> None:
        """The keys a batch is about to read, with the Content-Type the rows give each; the last batch's
        are forgotten."""
        self.content_types = dict(content_types)
        self._md5s.clear()

    def _inside(self, resolved: Path) -> bool:
        return resolved == self.root or resolved.is_relative_to(self.root)

    def _headers(self, key: str, size: int) -> dict[str, str]:
        headers = {"content-length": str(size), "cache-control": CACHE_CONTROL}
        content_type = self.content_types.get(key)
        if content_type:
            headers["content-type"] = content_type
        return headers

    # Reading --------------------------------------------------------------------------------------

    async def list_page(
        self, prefix: str, start_after: str | None, continuation_token: str | None, max_keys: int = 1000
    ) -> tuple[list[ListedObject], str | None]:
        """Files whose keys start with ``prefix``, after ``start_after`` (or the token: the last key of
        the page before), in key order, with their MD5s; the last key as the next token when full."""
        self.requests["ListFiles"] += 1
        after = continuation_token or start_after or ""
        page = await asyncio.to_thread(self._list, prefix, after, max_keys)
        return page, page[-1].key if len(page) == max_keys else None

    def _list(self, prefix: str, after: str, max_keys: int) -> list[ListedObject]:
        found: list[tuple[str, Path]] = []
        directory, _, _ = prefix.rpartition("/")
        start = directory + "/" if directory else ""
        try:
            start_path = self.root.joinpath(*key_segments(directory)) if directory else self.root
        except UnsafeKey:
            return []
        if self._inside(start_path.resolve()):
            self._walk(start_path, start, prefix, after, max_keys, found)
        return [ListedObject(key, *self._size_and_md5(key, path)) for key, path in found]

    def _walk(self, directory: Path, key_prefix: str, prefix: str, after: str, limit: int, found: list) -> bool:
        """Add the files under ``directory`` (whose keys start with ``key_prefix``) to ``found`` in key
        order; True once ``limit`` are found."""
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            return False
        named = []
        for entry in entries:
            if entry.name.startswith(TEMPORARY_PREFIX):
                continue
            if entry.is_symlink() and not self._inside(Path(entry.path).resolve()):
                continue  # never out of the root
            if entry.is_dir():
                named.append((entry.name + "/", entry, True))
            elif entry.is_file():
                named.append((entry.name, entry, False))
        for name, entry, is_directory in sorted(named, key=lambda named_entry: named_entry[0]):
            key = key_prefix + name
            if is_directory:
                if not (key.startswith(prefix) or prefix.startswith(key)):
                    continue
                if key < after and not after.startswith(key):
                    continue  # every key below is before ``after``
                if entry.is_symlink() and directory.resolve().is_relative_to(Path(entry.path).resolve()):
                    continue  # a loop
                if self._walk(Path(entry.path), key, prefix, after, limit, found):
                    return True
            elif key.startswith(prefix) and key > after:
                found.append((key, Path(entry.path)))
                if len(found) >= limit:
                    return True
        return False

    @asynccontextmanager
    async def get(
        self, key: str, byte_range: tuple[int, int] | None = None, if_match: str | None = None
    ) -> AsyncIterator[_FileBody | None]:
        """The file to read (with the headers Mastodon would have stored it with), or None; a
        ``byte_range`` (first, last byte) reads that part only, and ``if_match`` answers 412 once the
        file's MD5 is another (read again only when its size or mtime moved)."""
        self.requests["ReadFile"] += 1
        try:
            body = self._open(key, byte_range, if_match, from_cache=True)
        except _WouldBlock:
            body = await asyncio.to_thread(self._open, key, byte_range, if_match)
        try:
            yield body
        finally:
            if body is not None and not body.file.closed:
                await asyncio.to_thread(body.file.close)

    def _open(
        self, key: str, byte_range: tuple[int, int] | None, if_match: str | None, from_cache: bool = False
    ) -> _FileBody | None:
        """Everything up to the body, and a file of at most ``READ_SIZE`` (most of Mastodon's) read
        whole. ``from_cache``: on the event loop, only from the page cache (``RWF_NOWAIT``), else
        ``_WouldBlock``, and the caller does it again in a thread. Measured on 3,000 files of 180 kB
        read 64 at a time: 41 us of CPU per file on the loop, 234 us through a thread each (the GIL
        handed back and forth), which made an upload from disk cost twice the CPU of one from a bucket."""
        path = self.path_of(key)
        try:
            file = open(path, "rb", buffering=0)  # read into our own buffers: no second copy
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        try:
            size = os.fstat(file.fileno()).st_size
            headers = self._headers(key, size)
            if if_match is not None or size > self.hash_above:
                if from_cache:
                    raise _WouldBlock  # reads the whole file
                headers["etag"] = self._size_and_md5(key, path)[1]
            if if_match is not None and providers.normalized_etag(if_match) != headers["etag"]:
                raise S3Error(412, "PreconditionFailed", "the file changed since it was first read", key)
            limit = size
            if byte_range is not None:
                first, last = byte_range[0], min(byte_range[1], size - 1)
                file.seek(first)
                limit = last - first + 1
                headers |= {"content-length": str(limit), "content-range": f"bytes {first}-{last}/{size}"}
            body = _FileBody(file, headers, limit)
            if limit <= READ_SIZE:
                body.read_ahead(self.never_blocks if from_cache else None)
            elif from_cache:
                raise _WouldBlock
            return body
        except BaseException:
            file.close()
            raise

    async def head(self, key: str) -> ObjectHead | None:
        """Size, the derived headers and the file's MD5 (read here), or None when there is no file."""
        self.requests["StatFile"] += 1
        path = self.path_of(key)
        try:
            size, md5 = await asyncio.to_thread(self._size_and_md5, key, path)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        headers = {name.title(): value for name, value in self._headers(key, size).items() if name != "content-length"}
        return ObjectHead(size, headers, md5, md5, md5)

    def _size_and_md5(self, key: str, path: Path) -> tuple[int, str]:
        """The file's size and MD5, read once per batch for an expected key."""
        with open(path, "rb") as file:
            status = os.fstat(file.fileno())
            size, mtime = status.st_size, status.st_mtime_ns
            cached = self._md5s.get(key)
            if cached is not None and cached[:2] == (size, mtime):
                return size, cached[2]
            md5 = _md5_of_file(file)
        if key in self.content_types:
            self._md5s[key] = (size, mtime, md5)
        return size, md5

    async def makes_etag(self, key: str, etag: str | None) -> bool:
        """Whether the file, hashed in parts of one of ``proof.part_size_candidates``, makes the multipart
        ``etag`` (a source's): its content proven by a local read, whatever uploaded the source."""
        path = self.path_of(key)

        def hash_parts() -> bool:
            with open(path, "rb") as file:
                sizes = proof.part_size_candidates(etag, os.fstat(file.fileno()).st_size)
                if not sizes:
                    return False
                digests: dict[int, list[bytes]] = {size: [] for size in sizes}
                running = {size: hashlib.md5() for size in sizes}
                filled = dict.fromkeys(sizes, 0)
                while chunk := file.read(READ_SIZE):
                    view = memoryview(chunk)
                    for size in sizes:
                        offset = 0
                        while offset < len(view):
                            take = min(size - filled[size], len(view) - offset)
                            running[size].update(view[offset : offset + take])
                            offset, filled[size] = offset + take, filled[size] + take
                            if filled[size] == size:
                                digests[size].append(running[size].digest())
                                running[size], filled[size] = hashlib.md5(), 0
            wanted = providers.normalized_etag(etag)
            for size in sizes:
                parts = digests[size] + ([running[size].digest()] if filled[size] else [])
                if proof.parts_etag(parts) == wanted:
                    return True
            return False

        self.requests["HashFileInParts"] += 1
        try:
            return await asyncio.to_thread(hash_parts)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return False

    async def head_first_part(self, key: str) -> tuple[int, int] | None:
        return None  # a file has no part layout

    # Writing --------------------------------------------------------------------------------------

    def _mode(self, key: str, headers: dict[str, str]) -> int:
        """The mode Mastodon gives the file, from the canned ACL the copy sends (``x-amz-acl``)."""
        return file_mode(key, headers.get("x-amz-acl"), self.umask)

    async def put(self, key: str, body: Buffer | list[Buffer], headers: dict[str, str]) -> str | None:
        """Write the file atomically, with the mode of its ACL; its MD5 (as written) is the ETag."""
        self.requests["WriteFile"] += 1
        path = self.path_of(key)
        chunks = body if isinstance(body, list) else [body]
        mode = self._mode(key, headers)
        return await asyncio.to_thread(self._write, key, path, chunks, headers.get("Content-MD5"), mode)

    def _write(self, key: str, path: Path, chunks: list[Buffer], content_md5: str | None, mode: int) -> str:
        temporary = self._temporary(path, key, "put")
        try:
            md5 = self._write_temporary(temporary, chunks, key, content_md5, mode)
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        _fsync_directory(path.parent)
        return md5

    def _temporary(self, path: Path, key: str, what: str) -> Path:
        """A temporary name beside ``path`` (its directories made, inside the root)."""
        path.parent.mkdir(mode=0o777, parents=True, exist_ok=True)
        self.path_of(key)  # a symlink may have appeared on the way
        return path.parent / f"{TEMPORARY_PREFIX}{what}-{uuid.uuid4().hex}"

    def _write_temporary(
        self, temporary: Path, chunks: list[Buffer], key: str, content_md5: str | None, mode: int
    ) -> str:
        """Write, hash, check the Content-MD5, fsync, set ``mode``; the MD5 in hex."""
        digest = hashlib.md5()
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with open(descriptor, "wb") as file:
            for chunk in chunks:
                digest.update(chunk)
                file.write(chunk)
            if content_md5 is not None and proof.content_md5(digest.digest()) != content_md5:
                raise S3Error(400, "BadDigest", "the bytes written are not the Content-MD5 sent", key)
            file.flush()
            os.fsync(file.fileno())
            os.fchmod(file.fileno(), mode)
        return digest.hexdigest()

    async def delete(self, key: str) -> None:
        self.requests["DeleteFile"] += 1
        path = self.path_of(key)
        await asyncio.to_thread(path.unlink, True)

    async def create_multipart_upload(self, key: str, headers: dict[str, str]) -> str:
        self.requests["StartParts"] += 1
        upload_id = uuid.uuid4().hex
        self._uploads[upload_id] = _Upload(self.path_of(key), self._mode(key, headers), {})
        return upload_id

    async def upload_part(
        self, key: str, upload_id: str, part_number: int, body: Buffer, headers: dict[str, str] | None = None
    ) -> str:
        """The part goes to a temporary file of its own; its MD5 is the ETag."""
        self.requests["WritePart"] += 1
        upload = self._uploads[upload_id]
        content_md5 = (headers or {}).get("Content-MD5")

        def write() -> str:
            temporary = self._temporary(upload.path, key, f"part-{upload_id}-{part_number}")
            try:
                md5 = self._write_temporary(temporary, [body], key, content_md5, upload.mode)
            except BaseException:
                temporary.unlink(missing_ok=True)
                raise
            previous = upload.parts.get(part_number)
            upload.parts[part_number] = (temporary, bytes.fromhex(md5))
            if previous is not None:
                previous[0].unlink(missing_ok=True)
            return md5

        return await asyncio.to_thread(write)

    async def complete_multipart_upload(self, key: str, upload_id: str, etags: list[str]) -> str | None:
        """Join the parts, in order, into the file (atomically); the multipart ETag S3 would answer."""
        self.requests["JoinParts"] += 1
        upload = self._uploads[upload_id]
        numbers = range(1, len(etags) + 1)
        if sorted(upload.parts) != list(numbers):
            raise S3Error(400, "InvalidPart", "parts are missing", key)

        def join() -> None:
            temporary = self._temporary(upload.path, key, f"join-{upload_id}")
            try:
                descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with open(descriptor, "wb") as file:
                    for number in numbers:
                        with open(upload.parts[number][0], "rb") as part:
                            while chunk := part.read(READ_SIZE):
                                file.write(chunk)
                    file.flush()
                    os.fsync(file.fileno())
                    os.fchmod(file.fileno(), upload.mode)
                os.replace(temporary, upload.path)
            except BaseException:
                temporary.unlink(missing_ok=True)
                raise
            _fsync_directory(upload.path.parent)

        await asyncio.to_thread(join)
        digests = [upload.parts[number][1] for number in numbers]
        await self.abort_multipart_upload(key, upload_id)
        return proof.parts_etag(digests)

    async def abort_multipart_upload(self, key: str, upload_id: str) -> None:
        upload = self._uploads.pop(upload_id, None)
        for temporary, _ in upload.parts.values() if upload else ():
            temporary.unlink(missing_ok=True)

    # ACLs: file modes -------------------------------------------------------------------------------

    async def put_acl(self, key: str, acl: str) -> bool:
        """Give the file the mode of the canned ACL ``acl`` (one chmod, atomic); False when there is no
        such file, as PutObjectAcl answers 404."""
        self.requests["ChmodFile"] += 1
        path = self.path_of(key)
        mode = file_mode(key, acl, self.umask)

        def chmod() -> bool:
            try:
                descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            except (FileNotFoundError, NotADirectoryError):
                return False
            try:
                if not stat.S_ISREG(os.fstat(descriptor).st_mode):
                    return False  # a directory or a device is no object
                os.fchmod(descriptor, mode)
                return True
            finally:
                os.close(descriptor)

        return await asyncio.to_thread(chmod)

    async def get_acl_grants(self, key: str) -> list[tuple[str, str]]:
        """The file's mode as GetObjectAcl's grants: READ for AllUsers unless it stands for a private
        object (``layout.file_is_private``: only its owner may read it, or a backup); ``NoSuchKey`` when
        there is no file."""
        self.requests["StatFile"] += 1
        path = self.path_of(key)
        try:
            status = await asyncio.to_thread(os.stat, path)
        except (FileNotFoundError, NotADirectoryError):
            raise S3Error(404, "NoSuchKey", "there is no such file", key) from None
        if not stat.S_ISREG(status.st_mode):
            raise S3Error(404, "NoSuchKey", "there is no such file", key)
        return [] if file_is_private(key, status.st_mode) else [(providers.ALL_USERS, "READ")]


def _md5_of_file(file) -> str:
    digest = hashlib.md5()
    while chunk := file.read(READ_SIZE):
        digest.update(chunk)
    return digest.hexdigest()


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
