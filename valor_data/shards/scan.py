"""Read a tar once, sequentially: its sha256, every member's place and sha256, and chosen samples' bytes."""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

CHUNK = 1 << 20


@dataclass(frozen=True)
class ScannedMember:
    name: str
    header_offset: int
    offset: int
    size: int
    sha256: str

    @property
    def key(self) -> str:
        return self.name.rsplit("/", 1)[-1].split(".", 1)[0]

    @property
    def ext(self) -> str:
        parts = self.name.rsplit("/", 1)[-1].split(".", 1)
        return parts[1] if len(parts) == 2 else ""


@dataclass
class Scan:
    """What one read of a tar found."""

    name: str
    split: str
    filesize: int = 0
    sha256: str = ""
    members: list[ScannedMember] = field(default_factory=list)
    error: str | None = None


class _HashingReader(io.RawIOBase):
    """A read-only file that hashes and counts every byte read through it."""

    def __init__(self, fh):
        self._fh = fh
        self.sha = hashlib.sha256()
        self.pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self._fh.readinto(buffer)
        self.sha.update(memoryview(buffer)[:n])
        self.pos += n
        return n


def scan_tar(path: Path, split: str, want: Callable[[str], bool],
             on_member: Callable[[ScannedMember, bytes], None]) -> Scan:
    """Scan ``path``; members whose key ``want`` accepts are passed to ``on_member`` with their bytes."""
    scan = Scan(path.name, split)
    with open(path, "rb", buffering=0) as fh:
        reader = _HashingReader(fh)
        try:
            with tarfile.open(fileobj=reader, mode="r|", bufsize=CHUNK) as tar:
                for info in tar:
                    scan.members.append(_read_member(tar, info, want, on_member))
        except (tarfile.TarError, EOFError) as exc:
            scan.error = f"not a readable tar: {exc}"
        while reader.read(CHUNK):
            pass
    scan.filesize, scan.sha256 = reader.pos, reader.sha.hexdigest()
    return scan


def _read_member(tar: tarfile.TarFile, info: tarfile.TarInfo, want, on_member) -> ScannedMember:
    digest, keep = hashlib.sha256(), bytearray()
    key_wanted = want(info.name.rsplit("/", 1)[-1].split(".", 1)[0])
    source = tar.extractfile(info) if info.isfile() else None
    while source is not None and (chunk := source.read(CHUNK)):
        digest.update(chunk)
        if key_wanted:
            keep += chunk
    member = ScannedMember(info.name, info.offset, info.offset_data, info.size if info.isfile() else 0,
                           digest.hexdigest())
    if key_wanted:
        on_member(member, bytes(keep))
    return member
