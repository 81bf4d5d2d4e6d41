"""Where finished media goes, and the hidden temp files it is written to first.

By default media lives at ``Workdir.media_path(clip_id, ext)`` and ffmpeg writes to
``.<clip_id>.<ext>.<random>.tmp`` beside it; both files are renamed into place only once
both are complete and checked. With ``media_url`` (any fsspec URL, e.g. ``s3://b/valor``
or ``file:///shared/valor``) the temps live in ``W/fetch/staging/`` and are uploaded to
``<media_url>/<2 hex>/<clip_id>.<ext>`` (temp name, then move). Temps left by a killed
run are removed by ``clean_stale`` at the start of the next run (under the stage lock).
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from pathlib import Path

from valor_data.fetch.outcome import disk_full, is_disk_full
from valor_data.workdir import Workdir

log = logging.getLogger(__name__)


class MediaStore:
    """Temp paths and publishing for one work dir (and an optional fsspec media root)."""

    def __init__(self, workdir: Workdir, media_url: str | None = None):
        self.workdir = workdir
        self.media_url = media_url.rstrip("/") if media_url else None
        self._fs = None

    @property
    def staging(self) -> Path:
        return self.workdir.path("fetch", "staging")

    @property
    def downloads(self) -> Path:
        """Partial downloads of whole files (http), resumable within a run."""
        return self.workdir.path("fetch", "downloads")

    def temp(self, clip_id: str, ext: str) -> Path:
        """A new hidden temp file for ``clip_id.ext``, created empty (never a followed link)."""
        final = self.workdir.media_path(clip_id, ext)
        folder = final.parent if self.media_url is None else self.staging
        path = folder / f".{final.name}.{uuid.uuid4().hex[:12]}.tmp"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self.workdir.path(*folder.relative_to(self.workdir.root).parts)   # no folder linked out of W
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644))
        except OSError as exc:
            if is_disk_full(exc):
                raise disk_full(str(folder)) from None
            raise
        return path

    def publish(self, clip_id: str, files: dict[str, Path | None]) -> None:
        """Move finished temps into place (``{ext: temp or None}``; None removes an old file)."""
        try:
            for ext, tmp in files.items():
                if self.media_url is None:
                    final = self.workdir.media_path(clip_id, ext)
                    if tmp is not None:
                        os.replace(tmp, final)
                    elif final.exists():
                        final.unlink()
                else:
                    self._upload(clip_id, ext, tmp)
        except OSError as exc:
            if is_disk_full(exc):
                raise disk_full(self.media_url or str(self.workdir.root)) from None
            raise

    def discard(self, clip_id: str) -> None:
        """Remove the clip's media (a killed run may have published them): a failed clip keeps none."""
        self.publish(clip_id, {"mp4": None, "flac": None})

    def _upload(self, clip_id: str, ext: str, tmp: Path | None) -> None:
        fs, root = self._filesystem()
        fan = self.workdir.media_path(clip_id, ext).parent.name
        final = f"{root}/{fan}/{clip_id}.{ext}"
        if tmp is None:
            if fs.exists(final):
                fs.rm(final)
            return
        partial = f"{root}/{fan}/.{clip_id}.{ext}.{uuid.uuid4().hex[:12]}.tmp"
        fs.makedirs(f"{root}/{fan}", exist_ok=True)
        fs.put_file(str(tmp), partial)
        fs.mv(partial, final)
        tmp.unlink()

    def _filesystem(self):
        if self._fs is None:
            import fsspec

            self._fs = fsspec.core.url_to_fs(self.media_url)
        return self._fs

    def clean_stale(self) -> int:
        """Remove temps, staging and partial downloads a killed run left behind; return how many."""
        removed = 0
        for folder in (self.staging, self.downloads):      # scratch space: everything goes
            if folder.is_dir():
                for entry in list(folder.iterdir()):
                    if entry.is_dir() and not entry.is_symlink():
                        shutil.rmtree(entry)     # a section download's folder
                    else:
                        entry.unlink()
                    removed += 1
        media = self.workdir.path("media")
        fans = [d for d in media.iterdir() if d.is_dir() and not d.is_symlink()] if media.is_dir() else []
        for fan in fans:                                     # hidden temps beside finished media
            with os.scandir(fan) as entries:
                stale = [e.path for e in entries if e.name.startswith(".") and e.name.endswith(".tmp")
                         and not e.is_dir(follow_symlinks=False)]
            for path in stale:
                os.unlink(path)
            removed += len(stale)
        if removed:
            log.info("removed %d temp files left by an interrupted run", removed)
        return removed
