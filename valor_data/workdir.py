"""The work directory: where every stage reads and writes its tables and media.

Layout (each stage owns its names; see ARCHITECTURE.md)::

    W/manifest.parquet   clip table (one row per clip_id)
    W/rejects.parquet    manifest rows that could not be read, with file, line, reason
    W/media/ab/<clip_id>.mp4|.flac   normalised media, fanned out by a hash prefix
    W/raw/               official metadata downloaded by `manifest --download`
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from valor_data.errors import UnsafePathError
from valor_data.ids import check_clip_id

_UMASK = os.umask(0)
os.umask(_UMASK)


@dataclass(frozen=True)
class Workdir:
    """Paths inside one work directory; every path handed out is confined to it."""

    root: Path

    @classmethod
    def create(cls, root: str | os.PathLike) -> Workdir:
        path = Path(root).expanduser().resolve()
        path.mkdir(parents=True, exist_ok=True)
        return cls(path)

    def path(self, *parts: str) -> Path:
        """``root/parts...``, refusing anything that resolves outside the root."""
        candidate = self.root.joinpath(*parts).resolve()
        if candidate != self.root and self.root not in candidate.parents:
            raise UnsafePathError(f"path escapes the work dir {self.root}: {'/'.join(parts)}")
        return candidate

    @property
    def manifest(self) -> Path:
        return self.path("manifest.parquet")

    @property
    def rejects(self) -> Path:
        return self.path("rejects.parquet")

    def media_path(self, clip_id: str, ext: str) -> Path:
        """Where a clip's normalised media lives: ``media/<2 hex>/<clip_id>.<ext>``.

        A checked clip id and an alphanumeric extension cannot leave the root, so this
        needs no filesystem call (it runs once per clip per stage, millions of times).
        """
        check_clip_id(clip_id)
        if not ext.isalnum():
            raise UnsafePathError(f"unsafe media extension: {ext!r}")
        fan = hashlib.sha1(clip_id.encode()).hexdigest()[:2]
        return self.root / "media" / fan / f"{clip_id}.{ext}"


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside ``target``; rename it over ``target`` only on success.

    Readers never see a half-written file: either the old one or the complete new one.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_UMASK)   # mkstemp makes 0600; give the usual file mode
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
