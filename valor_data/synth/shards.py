"""Learnable synthetic shards in the shard format, for tests, the demo and the benchmark.

Clips come from ``valor_data.synth.render`` (a coloured shape moving over a gradient while a sound
plays; the caption says which), rendered straight at a small size as H.264 yuv420p + AAC, and
the audio written as 16 kHz mono FLAC. Samples go into ``W/shards/<split>-<000000>.tar`` with
a wids-style ``W/shards/<split>.shards.json``: the same contract as build-shards, so the
trainer cannot tell them apart.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import tarfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from valor_data.ids import audioset_clip_id, valor_id
from valor_data.media.ffmpeg import run_ffmpeg
from valor_data.synth.content import SHAPES, random_content
from valor_data.synth.render import RenderSpec, render
from valor_data.workdir import atomic_path

_YTID = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"


@dataclass(frozen=True)
class SynthShards:
    """What to make: clips per split, their size and length, and how many per tar."""

    splits: tuple[tuple[str, int], ...] = (("valor32k-train", 200), ("valor32k-test", 64))
    seconds: float = 5.0
    width: int = 96
    height: int = 72
    fps: float = 8.0
    per_shard: int = 50
    language: str = "en"        # "zh": Chinese captions (Youku style)
    categories: bool = False    # give each clip a category (its shape), as Youku classification does
    keyframe_s: float | None = None   # re-encode as fetch does (x264 veryfast) with a keyframe this often
    seed: int = 0
    workers: int = 0            # parallel ffmpeg processes (0: one per CPU)
    linked_sound: bool = False  # the sound follows the shape and colour (what is seen predicts what is heard)


def _clip(index: int, split: str, cfg: SynthShards, out: Path) -> tuple[str, dict[str, bytes]]:
    """Render clip ``index``; return (clip_id, {ext: bytes})."""
    rng = random.Random(cfg.seed * 1_000_003 + index)
    content = random_content(rng, cfg.linked_sound)
    ytid = "".join(rng.choice(_YTID) for _ in range(11))
    clip_id = audioset_clip_id(ytid, 0.0)
    spec = RenderSpec(content=content, duration=cfg.seconds, width=cfg.width, height=cfg.height, fps=cfg.fps,
                      sample_rate=16000, channels=1, seed=cfg.seed * 100_003 + index)
    mp4 = render(spec, out / f".{clip_id}.mp4")
    if cfg.keyframe_s:
        mp4 = with_keyframes(mp4, cfg.keyframe_s)
    media = mp4.read_bytes()
    mp4.unlink()
    caption = content.caption(cfg.language)
    meta = {"clip_id": clip_id, "valor_id": valor_id(ytid, 0.0, cfg.seconds), "source": "synthetic",
            "subset": split, "video_id": ytid, "url": f"synthetic://{ytid}", "start_s": 0.0,
            "end_s": cfg.seconds, "labels": [content.label[0]], "label_names": [content.label[1]],
            "captions": [caption], "language": cfg.language,
            "category": content.shape if cfg.categories else None,
            "category_index": sorted(SHAPES).index(content.shape) if cfg.categories else None,
            "split": split, "quality": {}}
    return clip_id, {"mp4": media, "flac": _flac(media), "json": json.dumps(meta, ensure_ascii=False).encode(),
                     "txt": caption.encode("utf-8")}



def with_keyframes(mp4: Path, every_s: float) -> Path:
    """Re-encode the video as fetch does with ``keyframe_interval_s`` (x264 veryfast, B-frames)."""
    out = mp4.with_name(f"{mp4.stem}.k.mp4")
    run_ffmpeg(["-y", "-i", mp4, "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p",
                "-force_key_frames", f"expr:gte(t,n_forced*{every_s:g})", "-c:a", "copy", "-threads", "1",
                "-movflags", "+faststart", "-f", "mp4", out], timeout=300)
    mp4.unlink()
    return out


def _flac(mp4: bytes) -> bytes:
    """The mp4's audio track as 16 kHz mono FLAC."""
    import av
    import soundfile

    with av.open(io.BytesIO(mp4)) as container:
        chunks = [f.to_ndarray().reshape(-1) for f in container.decode(audio=0)]
    out = io.BytesIO()
    soundfile.write(out, np.concatenate(chunks).astype(np.float32), 16000, format="FLAC", subtype="PCM_16")
    return out.getvalue()


def write_split(shards: Path, split: str, samples: list[tuple[str, dict[str, bytes]]], per_shard: int) -> Path:
    """Tars of ``per_shard`` samples and the split's wids-style shard list."""
    entries = []
    for n, start in enumerate(range(0, len(samples), per_shard)):
        name = f"{split}-{n:06d}.tar"
        with atomic_path(shards / name) as tmp:
            with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
                for key, members in samples[start:start + per_shard]:
                    for ext, data in members.items():
                        info = tarfile.TarInfo(f"{key}.{ext}")
                        info.size, info.mtime, info.mode = len(data), 0, 0o644
                        tar.addfile(info, io.BytesIO(data))
        data = (shards / name).read_bytes()
        entries.append({"url": name, "nsamples": len(samples[start:start + per_shard]), "filesize": len(data),
                        "sha256": hashlib.sha256(data).hexdigest()})
    index = {"__kind__": "wids-shard-index-v1", "wids_version": 1, "name": split, "shardlist": entries}
    with atomic_path(shards / f"{split}.shards.json") as tmp:
        tmp.write_text(json.dumps(index, indent=1), encoding="utf-8")
    return shards / f"{split}.shards.json"


def make_synthetic_shards(workdir: str | os.PathLike, cfg: SynthShards = SynthShards()) -> dict[str, Path]:
    """Render every split into ``workdir/shards``; return {split: shard list path}."""
    shards = Path(workdir) / "shards"
    shards.mkdir(parents=True, exist_ok=True)
    jobs, first = [], 0
    for split, count in cfg.splits:
        jobs += [(first + i, split) for i in range(count)]
        first += count
    with ThreadPoolExecutor(cfg.workers or os.cpu_count() or 1) as pool:   # each job runs ffmpeg
        made = list(pool.map(lambda job: (job[1], _clip(job[0], job[1], cfg, shards)), jobs))
    return {split: write_split(shards, split, [clip for s, clip in made if s == split], cfg.per_shard)
            for split, _ in cfg.splits}
