"""What goes into a sample: its members' sources and the metadata JSON / caption text.

A sample is ``{key}.mp4``, ``{key}.flac``, ``{key}.json``, ``{key}.txt`` in that
order (``MEMBERS``); the key is the clip id. The JSON holds the clip's manifest fields,
its split and the filter's metrics (``quality``); the text is the first caption. With
``shards.presampled_frames`` set, ``{key}.jpgs`` and ``{key}.fbank_<settings>.npy`` follow
(``presampled_members``: the trainer's pre-sampled frames and filterbank).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from valor_data.split.hashing import seeded_order
from valor_data.workdir import Workdir

MEMBERS = ("mp4", "flac", "json", "txt")
JSON_FIELDS = ("clip_id", "valor_id", "source", "subset", "video_id", "url", "start_s", "end_s", "labels",
               "label_names", "captions", "caption_source", "language", "category", "category_index")


@dataclass(frozen=True)
class Sample:
    """One sample ready to write: media paths and the two small members' bytes."""

    key: str
    split: str
    mp4: Path
    flac: Path
    json: bytes
    txt: bytes

    def names(self) -> list[str]:
        return [f"{self.key}.{ext}" for ext in MEMBERS]


def _clean(value):
    """JSON-safe: NaN/inf floats become null (strict JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def sample_json(row: dict, split: str, quality: dict | None) -> bytes:
    """The ``{key}.json`` member (fixed field order, UTF-8, no NaN)."""
    doc = {name: row.get(name) for name in JSON_FIELDS}
    doc["split"] = split
    doc["quality"] = quality or {}
    return json.dumps(_clean(doc), ensure_ascii=False, allow_nan=False).encode("utf-8")


def sample_txt(row: dict) -> bytes:
    """The ``{key}.txt`` member: the first caption (empty when the clip has none)."""
    captions = row.get("captions") or []
    return (captions[0] if captions else "").encode("utf-8")


class SampleSource:
    """Builds Samples of one work dir from the manifest, quality table and media."""

    def __init__(self, workdir: Workdir, captions: str = "human"):
        from valor_data.curate.captions import kept_captions

        self.workdir, self.captions = workdir, captions      # human | pseudo | both (``curate.pseudo.choose``)
        self.pseudo = kept_captions(workdir) if captions != "human" else {}
        self.manifest = pq.read_table(workdir.manifest)
        quality = workdir.path("quality.parquet")
        self.quality = pq.read_table(quality) if quality.exists() else None

    def locate(self, keys: list[str]) -> tuple[pa.Array, pa.Array | None]:
        """Row positions of ``keys`` in the manifest and the quality table (null: no row)."""
        keys_array = pa.array(keys, pa.string())
        where = [pc.index_in(keys_array, value_set=t.column("clip_id").combine_chunks()) if t is not None else None
                 for t in (self.manifest, self.quality)]
        missing = where[0].null_count
        if missing:
            first = keys[where[0].to_pylist().index(None)]
            raise KeyError(f"{missing} split clip(s) are not in the manifest, e.g. {first}")
        return where[0], where[1]

    def samples(self, keys: list[str], split: str, manifest_pos: pa.Array,
                quality_pos: pa.Array | None) -> Iterator[Sample]:
        """Samples for ``keys`` (all in ``split``) given their positions from ``locate``."""
        rows = self.manifest.take(manifest_pos).to_pylist()
        quality = [None] * len(keys)
        if quality_pos is not None:
            found = self.quality.take(pc.drop_null(quality_pos)).to_pylist()
            it = iter({k: v for k, v in q.items() if k != "clip_id"} for q in found)
            quality = [next(it) if valid else None for valid in pc.is_valid(quality_pos).to_pylist()]
        from valor_data.curate.captions import choose

        for key, row, metrics in zip(keys, rows, quality, strict=True):
            row["captions"], row["caption_source"] = choose(row.get("captions"), self.pseudo.get(key), self.captions)
            mp4 = self.workdir.media_path(key, "mp4")     # checks the id; the flac sits beside it
            yield Sample(key, split, mp4, mp4.with_suffix(".flac"), sample_json(row, split, metrics), sample_txt(row))


def presampled_members(sample: Sample, settings: dict) -> list[tuple[str, bytes]]:
    """The pre-sampled frames and filterbank members of ``sample`` (``ShardConfig.presampled``)."""
    from valor_data.train import presampled

    frames = presampled.frames_member(sample.mp4.read_bytes(), settings["segments"], settings["frames"],
                                      settings["size"], settings["quality"], settings["resize"])
    fbank = presampled.fbank_member(sample.flac.read_bytes(), settings["audio_rate"])
    return [(f"{sample.key}.{presampled.FRAMES_EXT}", frames),
            (f"{sample.key}.{presampled.fbank_ext(settings['audio_rate'])}", fbank)]


def is_presampled(ext: str) -> bool:
    """Whether a member extension is one of the optional pre-sampled members."""
    from valor_data.train import presampled

    return presampled.is_member(ext)


def presampled_fingerprint(settings: dict | None) -> str:
    """What the pre-sampled members depend on beyond the media (empty when off)."""
    if settings is None:
        return ""
    from valor_data.train import presampled

    return json.dumps({**settings, "fbank": presampled.fbank_ext(settings["audio_rate"])}, sort_keys=True)


def split_order(keys: list[str], shuffle: bool, seed: int) -> list[str]:
    """Pretraining shards: a seeded shuffle of the keys; benchmark shards: sorted keys."""
    return seeded_order(keys, seed) if shuffle else sorted(keys)
