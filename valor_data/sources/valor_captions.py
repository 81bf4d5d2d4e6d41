"""VALOR's released captions, joined onto AudioSet clips through ``valor_id``.

Accepted forms: ``desc_{train,val,test}.json`` (a list of ``{"video_id", "desc"}``)
and the mapper form ``{id: [desc, ...]}``. Ids are VALOR ids
(``<YTID>_<start>.000_<end>.000``), parsed from the right.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field

import pyarrow as pa

from valor_data.errors import ManifestError
from valor_data.ids import audioset_clip_id, parse_valor_id
from valor_data.sources.reading import load_json_file


@dataclass
class CaptionJoin:
    """The outcome of joining caption files onto a clip table."""

    table: pa.Table
    matched: int = 0
    unmatched: list[str] = field(default_factory=list)   # caption ids with no clip
    malformed: list[str] = field(default_factory=list)   # ids that are not VALOR ids


def read_caption_file(path: str | os.PathLike) -> dict[str, list[str]]:
    """One caption file (either form) as ``{valor_id: [captions]}``; a caption that is not a string
    (null, a number, an object) is an error naming the file and item, never the text "None"."""
    data = load_json_file(path, "captions")
    captions: dict[str, list[str]] = defaultdict(list)
    if isinstance(data, list):
        for i, item in enumerate(data):
            if not isinstance(item, dict) or "video_id" not in item or "desc" not in item:
                raise ManifestError(f"{path}: item {i} is not {{'video_id', 'desc'}}")
            captions[str(item["video_id"])].extend(_descs(item["desc"], path, i))
    elif isinstance(data, dict):
        for key, descs in data.items():
            captions[str(key)].extend(_descs(descs, path, key))
    else:
        raise ManifestError(f"{path}: expected a list of {{video_id, desc}} or an id -> captions map")
    return dict(captions)


def _descs(value, path, item) -> list[str]:
    descs = value if isinstance(value, list) else [value]
    for j, desc in enumerate(descs):
        if not isinstance(desc, str):
            raise ManifestError(f"{path}: item {item!r}: caption {j} is "
                                f"{'null' if desc is None else type(desc).__name__}, not a string")
    return descs


def join_captions(table: pa.Table, paths: list[str | os.PathLike]) -> CaptionJoin:
    """Attach captions to clips whose (YTID, start) matches a caption id."""
    by_clip: dict[str, list[str]] = defaultdict(list)
    caption_id: dict[str, str] = {}
    result = CaptionJoin(table)
    for path in paths:
        for vid, descs in read_caption_file(path).items():
            try:
                ytid, start, _ = parse_valor_id(vid)
            except ValueError:
                result.malformed.append(vid)
                continue
            clip_id = audioset_clip_id(ytid, start)
            by_clip[clip_id].extend(descs)
            caption_id[clip_id] = vid
    clip_ids = table.column("clip_id").to_pylist()
    present = set(clip_ids)
    result.unmatched = sorted(caption_id[c] for c in by_clip if c not in present)
    result.matched = len(by_clip) - len(result.unmatched)
    captions = [by_clip[c] if c in by_clip else old or []
                for c, old in zip(clip_ids, table.column("captions").to_pylist(), strict=True)]
    languages = ["en" if c in by_clip else lang
                 for c, lang in zip(clip_ids, table.column("language").to_pylist(), strict=True)]
    idx = table.schema.get_field_index
    table = table.set_column(idx("captions"), "captions", pa.array(captions, pa.list_(pa.string())))
    result.table = table.set_column(idx("language"), "language", pa.array(languages, pa.string()))
    return result
