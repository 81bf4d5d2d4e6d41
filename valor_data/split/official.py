"""Official split membership: VALOR's (or any published) id files decide which clips a split holds.

VALOR publishes membership as files of VALOR ids (``<YTID>_<start>.000_<end>.000``), in three
forms, all read here:

- ``desc_{train,val,test}.json``: a list of ``{"video_id", "desc"}`` (the VALOR-32K annotation release);
- ``{train,val,test}_id.json`` / ``pretrain_ids.json``: a plain list of ids (what the official code's
  ``ids_path`` reads, ``TXH-mercury/VALOR`` ``data/data.py``);
- ``txt_mapper*.json``: an ``{id: [desc, ...]}`` map (the official code's ``txt``).

With official files a split holds exactly the listed clips that were fetched and kept by the
filter: a listed clip that is not in the manifest is *missing*, one an earlier stage dropped is
*rejected* with that stage's reason; neither is ever replaced by another clip. The split's own
rules (same-video and near-duplicate decontamination, within-pool duplicates, the stratified
draw) never remove an official member; where VALOR's files themselves put one video in two
splits, that is counted (``leaks``), not silently repaired.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from valor_data.errors import ValorError
from valor_data.ids import audioset_clip_id, parse_valor_id
from valor_data.split.inputs import ClipState, to_numpy

# file names of VALOR's releases -> the recipe split they define
VALOR_FILES = {
    "desc_train.json": "valor32k-train", "desc_val.json": "valor32k-val", "desc_test.json": "valor32k-test",
    "train_id.json": "valor32k-train", "val_id.json": "valor32k-val", "test_id.json": "valor32k-test",
    "pretrain_ids.json": "valor1m",
}
OFFICIAL_FILE = "splits_official.parquet"
NOT_IN_OFFICIAL = "not_in_official"
IN_SPLIT, MISSING, REJECTED = "in_split", "missing", "rejected"
OFFICIAL_SCHEMA = pa.schema([
    pa.field("split", pa.string(), nullable=False),
    pa.field("valor_id", pa.string(), nullable=False),
    pa.field("clip_id", pa.string(), nullable=False),
    pa.field("state", pa.string(), nullable=False),      # in_split | missing | rejected
    pa.field("reason", pa.string()),                     # why a rejected clip is in no split
    pa.field("file", pa.string(), nullable=False),
])


@dataclass
class Official:
    """The listed clips of every official split, in file order."""

    files: dict[str, list[str]]                                        # split -> files
    members: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)   # split -> (valor id, clip id, file)

    def split_of(self) -> dict[str, str]:
        return {clip: name for name, rows in self.members.items() for _, clip, _ in rows}


def discover(folder: str | os.PathLike) -> dict[str, list[str]]:
    """VALOR's annotation files found in ``folder`` by their published names (split -> files)."""
    root = Path(folder)
    if not root.is_dir():
        raise ValorError(f"{root}: not a folder of VALOR annotation files")
    found: dict[str, list[str]] = {}
    for name, split in VALOR_FILES.items():
        if (root / name).is_file():
            found.setdefault(split, []).append(str(root / name))
    if not found:
        raise ValorError(f"{root}: none of VALOR's annotation files ({', '.join(VALOR_FILES)}) is there")
    return found


def read_ids(path: str | os.PathLike) -> list[str]:
    """The VALOR ids a file lists, in file order, each once (any of the three forms)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ValorError(f"{path}: cannot read official split ids: {exc}") from None
    if isinstance(data, dict):
        ids = list(data)
    elif isinstance(data, list):
        ids = []
        for i, item in enumerate(data):
            value = item.get("video_id") if isinstance(item, dict) else item
            if not isinstance(value, str):
                raise ValorError(f"{path}: item {i} is neither an id string nor an object with a 'video_id' string")
            ids.append(value)
    else:
        raise ValorError(f"{path}: expected a list of ids, a list of {{video_id, desc}} or an id -> captions map")
    return list(dict.fromkeys(ids))


def load_official(files: dict[str, list[str]]) -> Official:
    """Read every file; a clip listed by two splits is an error naming both files."""
    official = Official(files)
    owner: dict[str, tuple[str, str]] = {}
    for name, paths in files.items():
        rows = official.members.setdefault(name, [])
        for path in paths:
            for vid in read_ids(path):
                try:
                    ytid, start, _ = parse_valor_id(vid)
                except ValueError:
                    raise ValorError(f"{path}: {vid!r} is not a VALOR id (<YTID>_<start>_<end>)") from None
                clip = audioset_clip_id(ytid, start)
                if clip in owner and owner[clip][0] != name:
                    raise ValorError(f"{vid} is listed by {owner[clip][1]} ({owner[clip][0]}) and by {path} ({name})")
                if clip not in owner:
                    owner[clip] = (name, path)
                    rows.append((vid, clip, path))
    return official


def official_rows(state: ClipState, official: Official) -> np.ndarray:
    """Each manifest row's official split (object array, None where no file lists it)."""
    split_of = official.split_of()
    return np.array([split_of.get(c) for c in state.clip_id.to_pylist()], dtype=object)


def reinstate(state: ClipState, split: np.ndarray, rule_reasons: set[str]) -> int:
    """Keep again the official members that only the split's own rules dropped; return how many."""
    reasons = np.array([r in rule_reasons for r in state.reason], dtype=bool)
    back = (split != None) & ~state.kept & reasons   # noqa: E711 (object array)
    state.reason[back] = None
    state.kept |= back
    return int(back.sum())


def membership_table(state: ClipState, official: Official, split: np.ndarray) -> pa.Table:
    """One row per listed clip: in its split, missing from the manifest, or rejected (with the reason)."""
    row_of = {c: i for i, c in enumerate(state.clip_id.to_pylist())}
    out: dict[str, list] = {f.name: [] for f in OFFICIAL_SCHEMA}
    for name, rows in official.members.items():
        for vid, clip, path in rows:
            i = row_of.get(clip)
            kept = i is not None and bool(state.kept[i]) and split[i] == name
            out["split"].append(name)
            out["valor_id"].append(vid)
            out["clip_id"].append(clip)
            out["state"].append(MISSING if i is None else IN_SPLIT if kept else REJECTED)
            out["reason"].append(None if i is None or kept else state.reason[i])
            out["file"].append(path)
    return pa.table(out, schema=OFFICIAL_SCHEMA)


def summarize(table: pa.Table, leaks: int) -> dict:
    """Per split: listed, in the split, missing, rejected by reason; plus VALOR's own cross-split leaks."""
    splits: dict[str, dict] = {}
    for name in pc.unique(table.column("split")).to_pylist():
        part = table.filter(pc.equal(table.column("split"), name))
        states = {r["values"]: r["counts"] for r in pc.value_counts(part.column("state")).to_pylist()}
        rejected = part.filter(pc.equal(part.column("state"), REJECTED)).column("reason")
        splits[name] = {"listed": part.num_rows, "in_split": states.get(IN_SPLIT, 0),
                        "missing": states.get(MISSING, 0),
                        "rejected": {r["values"]: r["counts"] for r in pc.value_counts(rejected).to_pylist()}}
    return {"membership": "official", "splits": splits, "leaks": leaks}


def same_video_leaks(state: ClipState, split: np.ndarray) -> int:
    """Videos that VALOR's own files put in more than one split (among kept members)."""
    rows = np.flatnonzero(state.kept & (split != None))   # noqa: E711
    if not len(rows):
        return 0
    table = pa.table({"video": pc.take(state.video_id, rows), "split": pa.array(split[rows].tolist(), pa.string())})
    grouped = table.group_by("video").aggregate([("split", "count_distinct")])
    return int(to_numpy(pc.greater(grouped.column("split_count_distinct"), 1)).sum())
