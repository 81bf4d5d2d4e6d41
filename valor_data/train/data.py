"""Shards -> decoded, batched samples: webdataset stages run inside a torch DataLoader.

The trainer knows only shard paths: a split's ``W/shards/<split>.shards.json`` (wids style)
or explicit tars, globs and shard lists. Only the known members (mp4, flac, json, txt, and the
pre-sampled frames and filterbank of ``presampled.py`` when build-shards wrote them) are read;
nothing is unpickled. Each stage is a generator; its output is written beside it::

    shard_urls      {"url"}                                      this reader's shards (training: pass after pass)
    shard_samples   {"__key__", "mp4", "flac", "json", "txt"}    raw bytes per clip (``tars``: damage named, counted)
    keep_share      the same, every k-th clip when readers outnumber shards
    shuffle         the same, shuffled in a buffer (training only)
    decode          {"key", "shard", "frames" uint8 [N, 3, S, S], "fbank" float [K, 512, 64],
                     "caption", "captions", "category" (index, -1: none), "category_name", "language"}
    batches         {"key" [B], "frames" [B, N, 3, S, S], "fbank" [B, K, 512, 64],
                     "input_ids" [B, L], "attention_mask" [B, L], "captions", "category" [B], ...}

``to_device`` moves a batch to the model's device and applies CLIP normalisation there (the
workers ship uint8 frames, a quarter of the bytes).
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import json
import logging
import os
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from valor_data.errors import ValorError
from valor_data.train import audio, presampled, tars, text

log = logging.getLogger(__name__)

KNOWN = ("mp4", "flac", "json", "txt")
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class SampleSpec:
    """What one sample decodes to (from the model's shape, the frame count and resize mode of the
    training or the evaluation side)."""

    frames: int = 4
    image_size: int = 64
    audio_slices: int = 1
    slice_frames: int = 512
    max_text_len: int = 32
    audio_rate: int = audio.SAMPLE_RATE      # the filterbank's rate (FLAC is resampled to it)
    resize: str = "crop"                     # squash | crop (``video.resize_frame``)

    @classmethod
    def of(cls, model_cfg, frames: int | None = None, resize: str = "crop") -> SampleSpec:
        """The model's shape with ``frames`` per clip (None: the model's ``frames``)."""
        return cls(model_cfg.frames if frames is None else frames, model_cfg.image_size, model_cfg.audio_slices,
                   model_cfg.slice_frames, model_cfg.max_text_len, model_cfg.audio_rate, resize)


# -- which tars -----------------------------------------------------------------------------
def read_shard_list(path: str | Path) -> list[str]:
    """The tar paths of a wids-style ``<split>.shards.json`` (urls relative to its folder)."""
    path = Path(path)
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValorError(f"shard list not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise ValorError(f"{path}: not JSON: {exc}") from None
    if not isinstance(index, dict) or not isinstance(index.get("shardlist"), list):
        raise ValorError(f"{path}: not a wids shard list (no 'shardlist')")
    return [str((path.parent / entry["url"]).resolve()) for entry in index["shardlist"]]


def resolve_shards(root: str | Path, split: str, explicit: Iterable[str] = ()) -> list[str]:
    """Tar paths for ``split``: ``explicit`` tars/globs/shard lists if given, else
    ``root/shards/<split>.shards.json``. Every tar must exist."""
    urls: list[str] = []
    for item in explicit:
        if item.endswith(".json"):
            urls += read_shard_list(item)
        elif any(c in item for c in "*?["):
            urls += sorted(glob.glob(item))
        else:
            urls.append(item)
    if not explicit:
        listing = Path(root) / "shards" / f"{split}.shards.json"
        if not listing.is_file():
            raise ValorError(f"no shards for split {split!r}: {listing} is missing "
                             "(run build-shards, or pass --shards)")
        urls = read_shard_list(listing)
    missing = [u for u in urls if not Path(u).is_file()]
    if missing or not urls:
        raise ValorError(f"split {split!r}: " + (f"missing tar(s): {', '.join(missing[:3])}" if missing
                                                else "no tars"))
    return urls


# -- stages ---------------------------------------------------------------------------------
def shard_urls(urls: list[str], me: int, readers: int, seed: int, train: bool) -> Iterator[dict]:
    """This reader's shards: once in order (eval) or pass after pass, reshuffled (training).
    With fewer shards than readers every reader opens them all (``keep_share`` splits)."""
    for epoch in itertools.count() if train else range(1):
        order = list(urls)
        if train:
            random.Random(seed * 7919 + epoch).shuffle(order)
        mine = order[me::readers] if len(order) >= readers else order
        yield from ({"url": url} for url in mine)


def keep_share(samples: Iterator[dict], me: int, readers: int) -> Iterator[dict]:
    """Every ``readers``-th sample, starting at ``me``."""
    return (s for i, s in enumerate(samples) if i % readers == me)


def sample_targets(meta: dict, txt: bytes = b"") -> dict:
    """What a clip is trained to match: its captions (json, else the txt member) and its category."""
    captions = [c for c in meta.get("captions") or [] if c]
    captions = captions or [t for t in [txt.decode("utf-8").strip()] if t]
    return {"captions": captions, "category": meta.get("category_index"), "category_name": meta.get("category") or ""}


def decode_sample(sample: dict, spec: SampleSpec, rng: random.Random | None) -> dict:
    """Raw members -> frames, filterbank slices, captions and category (``rng`` None: deterministic,
    test-time)."""
    meta = parse_meta(sample["json"]) if "json" in sample else {}
    targets = sample_targets(meta, sample.get("txt", b""))
    captions, category = targets["captions"], targets["category"]
    if not captions:
        raise ValueError("no caption")
    return {
        "key": sample["__key__"],
        "shard": sample.get("__url__", ""),
        "frames": torch.from_numpy(presampled.frames(sample, spec, rng)),   # pre-sampled members, else mp4
        "fbank": presampled.fbank(sample, spec, rng),                        # and FLAC
        "caption": rng.choice(captions) if rng else captions[0],
        "captions": captions,
        "category": -1 if category is None else int(category),
        "category_name": targets["category_name"],
        "language": meta.get("language") or "",
    }


def parse_meta(raw: bytes) -> dict:
    """A clip's json member; ``ValueError`` saying what is wrong when it is not a JSON object."""
    try:
        meta = json.loads(raw)
    except (ValueError, RecursionError) as exc:        # (UnicodeDecodeError is a ValueError)
        raise ValueError(f"json member is not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"json member is a {type(meta).__name__}, not an object")
    return meta


def decode(samples: Iterator[dict], spec: SampleSpec, rng: random.Random | None) -> Iterator[dict]:
    """``decode_sample`` over a stream; clips that cannot be decoded are logged (clip and shard)
    and skipped."""
    for sample in samples:
        try:
            yield decode_sample(sample, spec, rng)
        except (KeyError, ValueError, TypeError, RuntimeError, OSError) as exc:   # av.error.*: OSError/ValueError
            why = f"no {exc.args[0]} member" if isinstance(exc, KeyError) else str(exc)
            log.warning("skipping clip %s of shard %s: %s", sample.get("__key__"),
                        Path(sample.get("__url__", "?")).name, why)


def collate(samples: list[dict], tokenizer, max_len: int) -> dict:
    ids, mask = text.encode(tokenizer, [s["caption"] for s in samples], max_len)
    return {
        "key": [s["key"] for s in samples],
        "shard": [s["shard"] for s in samples],
        "frames": torch.stack([s["frames"] for s in samples]),
        "fbank": torch.stack([s["fbank"] for s in samples]),
        "input_ids": ids,
        "attention_mask": mask,
        "captions": [s["captions"] for s in samples],
        "category": torch.tensor([s["category"] for s in samples]),
        "category_name": [s["category_name"] for s in samples],
        "language": [s["language"] for s in samples],
    }


def batches(samples: Iterator[dict], size: int, tokenizer, max_len: int, partial: bool) -> Iterator[dict]:
    buffer = []
    for sample in samples:
        buffer.append(sample)
        if len(buffer) == size:
            yield collate(buffer, tokenizer, max_len)
            buffer = []
    if buffer and partial:
        yield collate(buffer, tokenizer, max_len)


class ShardStream(IterableDataset):
    """The whole pipeline for one split; each DataLoader worker (and rank) reads its share."""

    def __init__(self, urls: list[str], spec: SampleSpec, tokenizer, batch_size: int, train: bool,
                 seed: int = 0, rank: int = 0, world: int = 1, shuffle_buffer: int = 500):
        super().__init__()
        self.urls, self.spec, self.tokenizer, self.batch_size = urls, spec, tokenizer, batch_size
        self.train, self.seed, self.rank, self.world = train, seed, rank, world
        self.shuffle_buffer = shuffle_buffer
        self.expected = tars.expected_samples(urls)      # nsamples per tar, from the shard lists

    def __iter__(self) -> Iterator[dict]:
        import webdataset as wds

        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        me, readers = self.rank * workers + worker, self.world * workers
        rng = random.Random(self.seed * 1_000_003 + me) if self.train else None
        stream = shard_urls(self.urls, me, readers, self.seed, self.train)
        stream = tars.shard_samples(stream, self.expected, _known)
        if len(self.urls) < readers:
            stream = keep_share(stream, me, readers)
        if self.train:
            stream = wds.shuffle(self.shuffle_buffer, min(self.shuffle_buffer, 100), rng=rng)(stream)
        stream = decode(stream, self.spec, rng)
        yield from batches(stream, self.batch_size, self.tokenizer, self.spec.max_text_len, partial=not self.train)


def _known(name: str) -> bool:
    ext = name.rsplit("/", 1)[-1].split(".", 1)[-1]
    return ext in KNOWN or presampled.is_member(ext)


def make_loader(stream: ShardStream, workers: int, pin_memory: bool = False, prefetch: int = 4) -> DataLoader:
    """A DataLoader over the stream (batches are made in the workers, ``prefetch`` each ahead)."""
    return DataLoader(stream, batch_size=None, num_workers=workers, pin_memory=pin_memory,
                      persistent_workers=False, prefetch_factor=prefetch if workers else None)


@contextlib.contextmanager
def cpu_threads_beside(workers: int, device: torch.device) -> Iterator[None]:
    """On CPU, leave one core per DataLoader worker: oversubscribed OpenMP threads spin and stall
    (on 2 cores with 2 workers, 2 threads cost ~5x the CPU time of 1)."""
    before = torch.get_num_threads()
    if device.type == "cpu" and workers:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        torch.set_num_threads(max(1, min(before, cores - workers)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def to_device(batch: dict, device: torch.device) -> dict[str, torch.Tensor]:
    """The model inputs of a batch on ``device``, frames CLIP-normalised."""
    frames = batch["frames"].to(device, non_blocking=True).float().div_(255.0)
    mean = torch.tensor(CLIP_MEAN, device=device).view(1, 1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=device).view(1, 1, 3, 1, 1)
    return {
        "frames": (frames - mean) / std,
        "fbank": batch["fbank"].to(device, non_blocking=True),
        "input_ids": batch["input_ids"].to(device, non_blocking=True),
        "attention_mask": batch["attention_mask"].to(device, non_blocking=True),
        "category": batch["category"].to(device, non_blocking=True),
    }


def read_targets(urls: list[str], limit: int = 0) -> dict[str, dict]:
    """Captions and category per clip (``sample_targets``) from the shards' json and txt members;
    media members are skipped over. ``limit``: stop after the tar where that many clips are read."""
    table: dict[str, dict] = {}
    expected = tars.expected_samples(urls)
    for url in urls:
        for key, raw in tars.text_members(url, expected.get(url)).items():
            try:
                found = sample_targets(parse_meta(raw["json"]) if "json" in raw else {}, raw.get("txt", b""))
            except (ValueError, TypeError, AttributeError) as exc:
                log.warning("clip %s of shard %s: %s; its captions are not used", key, Path(url).name, exc)
                continue
            if found["captions"] or found["category"] is not None:
                table[key] = found
        if limit and len(table) >= limit:
            break
    return table
