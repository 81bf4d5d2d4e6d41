"""Which manifest clips this fetch run may take: a partition of the videos, minus an archive.

``--partition i/N`` keeps the clips whose video id hashes to ``i`` (sha1 of the id, mod
``N``): stable across machines, Python versions and runs, and every clip of a video lands
in the same partition, so N machines can share one manifest, each in its own work dir,
and ``valor-data merge`` joins them. ``--skip-archive`` drops the YouTube videos listed in
a yt-dlp download archive (see ``archive``).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from valor_data.errors import ConfigError
from valor_data.fetch.archive import youtube_mask


@dataclass(frozen=True)
class Partition:
    """Partition ``index`` of ``count`` (0 <= index < count)."""

    index: int
    count: int

    def __post_init__(self):
        if not 0 <= self.index < self.count:
            raise ConfigError(f"partition {self.index}/{self.count}: need 0 <= i < N")

    @classmethod
    def parse(cls, text: str) -> Partition:
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
        if not match:
            raise ConfigError(f"--partition {text!r}: write it as i/N, e.g. 0/3")
        return cls(int(match.group(1)), int(match.group(2)))

    def holds(self, video_id: str) -> bool:
        digest = hashlib.sha1(video_id.encode("utf-8")).digest()
        return int.from_bytes(digest[:8], "big") % self.count == self.index


@dataclass(frozen=True)
class Scope:
    """The clips of a run: those of the partition, less the skipped YouTube videos."""

    partition: Partition | None = None
    skip_videos: frozenset[str] = frozenset()

    def excluded(self, manifest: str | os.PathLike) -> set[str]:
        """Clip ids of the manifest this run must leave alone."""
        table = pq.read_table(manifest, columns=["clip_id", "video_id", "source", "url"])
        drop = pa.array([False] * table.num_rows)
        if self.partition is not None:
            videos = pc.unique(table.column("video_id")).to_pylist()
            outside = pa.array([v for v in videos if not self.partition.holds(v)], pa.string())
            drop = pc.or_(drop, pc.is_in(table.column("video_id"), value_set=outside))
        if self.skip_videos:
            listed = pc.is_in(table.column("video_id"), value_set=pa.array(sorted(self.skip_videos), pa.string()))
            drop = pc.or_(drop, pc.and_(listed, youtube_mask(table)))
        return set(table.filter(drop).column("clip_id").to_pylist())
