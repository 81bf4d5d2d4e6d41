"""Cut each split's ordered samples into shards, and fingerprint what decides each shard's bytes.

A shard closes before it would pass ``max_bytes`` or ``max_samples`` (a single sample
larger than ``max_bytes`` gets a shard of its own). The fingerprint covers the keys,
media sizes and mtimes and the JSON/text members, so a resumed build can tell a
finished shard from a stale one without reading it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import pyarrow as pa

from valor_data.errors import ValorError
from valor_data.shards.config import ShardConfig
from valor_data.shards.samples import Sample, SampleSource
from valor_data.shards.tarwriter import BLOCK, RECORD, tar_size

WRITER_VERSION = "valor-data-tar-1"
BATCH = 5_000


@dataclass
class ShardPlan:
    """One shard to write: its samples, expected size and fingerprint."""

    name: str
    split: str
    keys: list[str] = field(default_factory=list)
    manifest_pos: list[int] = field(default_factory=list)
    quality_pos: list[int | None] = field(default_factory=list)
    size: int = 0                     # member bytes so far (headers and padding included)
    fingerprint: hashlib._Hash = field(default_factory=lambda: hashlib.sha256(WRITER_VERSION.encode()))

    @property
    def digest(self) -> str:
        return self.fingerprint.hexdigest()

    @property
    def file_size(self) -> int:
        """The tar's size once written (end blocks and record padding included)."""
        end = self.size + 2 * BLOCK
        return end + (-end) % RECORD

    def samples(self, source: SampleSource) -> Iterator[Sample]:
        quality = pa.array(self.quality_pos, pa.int64()) if source.quality is not None else None
        return source.samples(self.keys, self.split, pa.array(self.manifest_pos, pa.int64()), quality)


def shard_name(split: str, index: int) -> str:
    return f"{split}-{index:06d}.tar"


def _sample_bytes(sample: Sample) -> tuple[int, str]:
    """(bytes the sample adds to a tar, its fingerprint line)."""
    try:
        stats = [os.stat(sample.mp4), os.stat(sample.flac)]
    except FileNotFoundError as exc:
        raise ValorError(f"media of clip {sample.key} is missing ({exc.filename}): rerun fetch, then split") from None
    sizes = [stats[0].st_size, stats[1].st_size, len(sample.json), len(sample.txt)]
    line = (f"{sample.key} {sizes[0]} {stats[0].st_mtime_ns} {sizes[1]} {stats[1].st_mtime_ns} "
            f"{hashlib.sha256(sample.json).hexdigest()} {hashlib.sha256(sample.txt).hexdigest()}\n")
    return tar_size(sizes, sample.names()), line


def plan_split(source: SampleSource, split: str, keys: list[str], cfg: ShardConfig) -> list[ShardPlan]:
    """Shards of one split, its samples in the order of ``keys``."""
    plans = [ShardPlan(shard_name(split, 0), split)]
    for start in range(0, len(keys), BATCH):
        batch = keys[start:start + BATCH]
        manifest_pos, quality_pos = source.locate(batch)
        qpos = quality_pos.to_pylist() if quality_pos is not None else [None] * len(batch)
        for sample, mpos, q in zip(source.samples(batch, split, manifest_pos, quality_pos),
                                   manifest_pos.to_pylist(), qpos, strict=True):
            size, line = _sample_bytes(sample)
            shard = plans[-1]
            if shard.keys and (shard.size + size + 2 * BLOCK > cfg.max_bytes or len(shard.keys) >= cfg.max_samples):
                shard = ShardPlan(shard_name(split, len(plans)), split)
                plans.append(shard)
            shard.keys.append(sample.key)
            shard.manifest_pos.append(mpos)
            shard.quality_pos.append(q)
            shard.size += size
            shard.fingerprint.update(line.encode())
    return plans if plans[0].keys else []
