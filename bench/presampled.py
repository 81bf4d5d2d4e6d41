"""Benchmark helper: add build-shards' pre-sampled members to synthetic shards.

``make_synthetic_shards`` writes the four base members; build-shards with ``presampled_frames``
adds ``<key>.jpgs`` and ``<key>.fbank_<settings>.npy`` after them. This rewrites a split's tars
the same way (with the same ``valor_data.train.presampled`` functions) and refreshes the shard
list's sizes and hashes, so the benchmarks can read both kinds of shard side by side.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

from valor_data.train import presampled


def _members(tar_path: Path) -> dict[str, dict[str, bytes]]:
    samples: dict[str, dict[str, bytes]] = {}
    with tarfile.open(tar_path) as tar:
        for member in tar:
            key, ext = member.name.split(".", 1)
            samples.setdefault(key, {})[ext] = tar.extractfile(member).read()
    return samples


def add_presampled(shard_list: Path, out_split: str, k: int, n: int, size: int, rate: int) -> tuple[Path, int]:
    """Copy the split of ``shard_list`` to ``out_split`` with pre-sampled members; return the new
    shard list and the extra bytes per sample (member data, tar headers and padding excluded)."""
    index = json.loads(shard_list.read_text(encoding="utf-8"))
    entries, extra, count = [], 0, 0
    for n_shard, entry in enumerate(index["shardlist"]):
        name = f"{out_split}-{n_shard:06d}.tar"
        with tarfile.open(shard_list.parent / name, "w", format=tarfile.USTAR_FORMAT) as tar:
            for key, members in _members(shard_list.parent / entry["url"]).items():
                added = {presampled.FRAMES_EXT: presampled.frames_member(members["mp4"], n, k, size),
                         presampled.fbank_ext(rate): presampled.fbank_member(members["flac"], rate)}
                extra, count = extra + sum(map(len, added.values())), count + 1
                for ext, blob in {**members, **added}.items():
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size, info.mtime, info.mode = len(blob), 0, 0o644
                    tar.addfile(info, io.BytesIO(blob))
        blob = (shard_list.parent / name).read_bytes()
        entries.append({"url": name, "nsamples": entry["nsamples"], "filesize": len(blob),
                        "sha256": hashlib.sha256(blob).hexdigest()})
    out = shard_list.parent / f"{out_split}.shards.json"
    out.write_text(json.dumps({**index, "name": out_split, "shardlist": entries}, indent=1), encoding="utf-8")
    return out, extra // max(1, count)
