"""Write a tar whose bytes depend only on its members: names, order and content.

Every header has mtime 0, uid/gid 0, empty user/group names, mode 0644 and a regular
file type; names longer than the 100 bytes ustar allows get a PAX ``path`` record.
The archive ends like GNU tar and Python's tarfile do (two zero blocks, padded to a
10,240-byte record). Each member's and the whole file's sha256 are computed while
the bytes are written, so nothing is read twice; the whole-file hash runs in a
helper thread (hashlib releases the GIL), one chunk behind the writer.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

BLOCK = 512
RECORD = 20 * BLOCK
CHUNK = 1 << 20


@dataclass(frozen=True)
class Member:
    """Where one member's data sits in the tar, and its sha256."""

    name: str
    header_offset: int
    offset: int
    size: int
    sha256: str


def header(name: str, size: int) -> bytes:
    """The fixed-metadata header block(s) of a regular file ``name`` of ``size`` bytes."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, 0, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


class TarShardWriter:
    """Append members to a new tar file; ``close()`` returns (file size, sha256).

    Headers, padding and small members are gathered into one buffer; file data is read
    into two alternating buffers, so the hashing thread reads one while the next is filled.
    """

    def __init__(self, path: str | os.PathLike):
        self._fh = open(path, "wb", buffering=0)
        self._pos = 0
        self._whole = hashlib.sha256()
        self._hasher = ThreadPoolExecutor(1, thread_name_prefix="tar-sha256")
        self._pending: Future | None = None
        self._small = bytearray()
        self._buffers = [bytearray(CHUNK), bytearray(CHUNK)]
        self._turn = 0

    def _emit(self, data) -> None:
        """Write ``data`` (bytes or a view of a buffer not reused before the next emit returns)."""
        if self._pending is not None:
            self._pending.result()
        self._pending = self._hasher.submit(self._whole.update, data)
        view = memoryview(data)
        while view:
            view = view[self._fh.write(view):]
        self._pos += len(data)

    def _put(self, data: bytes) -> None:
        self._small += data

    def _flush(self) -> None:
        if self._small:
            small, self._small = bytes(self._small), bytearray()
            self._emit(small)

    @property
    def _offset(self) -> int:
        return self._pos + len(self._small)

    def _pad(self, size: int) -> None:
        if size % BLOCK:
            self._put(bytes(BLOCK - size % BLOCK))

    def add_bytes(self, name: str, data: bytes) -> Member:
        """Add a member holding ``data``."""
        start = self._offset
        self._put(header(name, len(data)))
        offset = self._offset
        self._put(data)
        self._pad(len(data))
        return Member(name, start, offset, len(data), hashlib.sha256(data).hexdigest())

    def add_file(self, name: str, path: str | os.PathLike) -> Member:
        """Add a member copied from the file at ``path`` (streamed, hashed on the way)."""
        with open(path, "rb", buffering=0) as src:
            size = os.fstat(src.fileno()).st_size
            start = self._offset
            self._put(header(name, size))
            offset, digest, copied = self._offset, hashlib.sha256(), 0
            self._flush()
            while True:
                buffer = self._buffers[self._turn]
                n = src.readinto(buffer)
                if not n:
                    break
                chunk = memoryview(buffer)[:n]
                digest.update(chunk)
                self._emit(chunk)
                self._turn ^= 1
                copied += n
        if copied != size:
            raise OSError(f"{path} changed size while being copied ({size} -> {copied} bytes)")
        self._pad(size)
        return Member(name, start, offset, size, digest.hexdigest())

    def close(self) -> tuple[int, str]:
        """Finish the archive; return its size and sha256."""
        end = self._offset + 2 * BLOCK
        self._put(bytes(2 * BLOCK + (-end) % RECORD))
        self._flush()
        if self._pending is not None:
            self._pending.result()
        self._hasher.shutdown()
        self._fh.close()
        return self._pos, self._whole.hexdigest()

    def abort(self) -> None:
        self._hasher.shutdown(wait=True)
        self._fh.close()


def header_size(name: str, size: int) -> int:
    """``len(header(name, size))`` without building it: one block unless a PAX record is needed."""
    if name.isascii() and len(name) <= 100 and size < 8 ** 11:
        return BLOCK
    return len(header(name, size))


def tar_size(sizes: list[int], names: list[str]) -> int:
    """Bytes the members add to a tar (headers and padding included)."""
    return sum(header_size(n, s) + s + (-s) % BLOCK for n, s in zip(names, sizes, strict=True))

