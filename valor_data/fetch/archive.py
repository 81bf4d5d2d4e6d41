"""yt-dlp download-archive files (``--download-archive``): one ``<extractor> <video id>`` per line.

yt-dlp writes ``youtube <id>`` once a video is downloaded and skips the videos listed.
valor-data fetches clips, not videos, so an archive maps onto it this way:

- export (``fetch --archive-export FILE``): ``youtube <id>`` for each YouTube video whose every
  clip in the manifest is ``ok`` in the work dir (a video with a clip still missing is left out,
  so a machine that skips the file never skips a clip nobody has), sorted, written atomically;
- import (``fetch --skip-archive FILE``): the YouTube clips of the videos listed are not
  planned in this run (another machine or tool has them); they get no row, stay "not fetched
  yet" here, and come in with ``valor-data merge``. Lines of other extractors are ignored.
"""

from __future__ import annotations

import logging
import os
import re

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from valor_data.errors import ValorError
from valor_data.fetch.worker import YOUTUBE_HOSTS
from valor_data.workdir import Workdir, atomic_path

log = logging.getLogger(__name__)

_YOUTUBE_URL = (r"^https?://(?:[^/?#@]*@)?(?:" + "|".join(re.escape(h) for h in YOUTUBE_HOSTS)
                + r")(?::\d+)?(?:[/?#]|$)")


def youtube_mask(table: pa.Table) -> pa.ChunkedArray:
    """Which rows are YouTube clips (what the fetch worker resolves with yt-dlp): source
    ``audioset`` or a YouTube host in the URL."""
    source = pc.fill_null(pc.equal(table.column("source"), "audioset"), False)
    host = pc.fill_null(pc.match_substring_regex(table.column("url"), _YOUTUBE_URL, ignore_case=True), False)
    return pc.or_(source, host)


def read_archive(path: str | os.PathLike) -> frozenset[str]:
    """The YouTube video ids of an archive file (malformed lines are logged with their number and skipped)."""
    ids, others = set(), 0
    try:
        text = open(path, encoding="utf-8").read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValorError(f"cannot read the download archive {path}: {exc}") from None
    for number, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            log.warning("%s:%d: not '<extractor> <id>', skipped: %r", path, number, line[:80])
        elif parts[0].lower() == "youtube":
            ids.add(parts[1])
        else:
            others += 1
    if others:
        log.warning("%s: %d line(s) of other extractors ignored", path, others)
    return frozenset(ids)


def archive_ids(workdir: Workdir) -> list[str]:
    """Sorted YouTube video ids whose every manifest clip is ok in ``W/fetch.parquet``."""
    results = workdir.path("fetch.parquet")
    if not results.exists():
        return []
    manifest = pq.read_table(workdir.manifest, columns=["clip_id", "video_id", "source", "url"])
    manifest = manifest.filter(youtube_mask(manifest))
    fetched = pq.read_table(results, columns=["clip_id", "status"])
    ok = fetched.filter(pc.equal(fetched.column("status"), "ok")).column("clip_id")
    clip_ok = pc.is_in(manifest.column("clip_id"), value_set=ok.combine_chunks())
    per_video = pa.table({"video_id": manifest.column("video_id"), "ok": clip_ok}).group_by("video_id").aggregate(
        [("ok", "all")])
    done = per_video.filter(per_video.column("ok_all")).column("video_id").to_pylist()
    return sorted(done)


def export_archive(workdir: Workdir, path: str | os.PathLike) -> int:
    """Write ``archive_ids`` as a yt-dlp download archive; return how many videos."""
    ids = archive_ids(workdir)
    with atomic_path(path) as tmp:
        tmp.write_text("".join(f"youtube {i}\n" for i in ids), encoding="utf-8")
    return len(ids)
