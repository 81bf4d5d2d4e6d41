"""The split stage: manifest + stage verdicts -> ``W/splits.parquet`` and ``W/splits.json``.

``splits.parquet`` holds one row per manifest clip, in manifest order: ``clip_id``,
``split`` (null when the clip is in no split) and ``reason`` (null exactly when
``split`` is set). Reasons, in the order they are tried: ``not_in_recipe``,
``fetch:<status>``, ``filter:<first reason>``, ``no_caption`` (with ``captions``), ``decontaminated:same_video``,
``decontaminated:near_duplicate``, ``duplicate``, ``not_selected``, ``not_in_official``.

With official files (``SplitConfig.official``) the listed clips of a split are its members:
the split's own rules never remove one, and the clips of that pool no file lists are
``not_in_official``. ``W/splits_official.parquet`` lists every listed clip as in its split,
missing from the manifest, or rejected (with the reason).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from valor_data.split.assign import stratified_assign
from valor_data.split.config import SplitConfig
from valor_data.split.inputs import (
    ClipState,
    apply_captions,
    apply_fetch,
    apply_quality,
    load_clips,
    optional_table,
)
from valor_data.split.labels import label_deviation
from valor_data.split.leaks import (
    DUPLICATE,
    NEAR_DUPLICATE,
    NOT_IN_RECIPE,
    SAME_VIDEO,
    Pool,
    drop_near_duplicates,
    drop_video_leaks,
    pool_index,
    recipe_pools,
)
from valor_data.split.official import (
    NOT_IN_OFFICIAL,
    OFFICIAL_FILE,
    load_official,
    membership_table,
    official_rows,
    reinstate,
    same_video_leaks,
    summarize,
)
from valor_data.table import write_table
from valor_data.workdir import Workdir, atomic_path

log = logging.getLogger(__name__)

SPLITS_FILE = "splits.parquet"
SUMMARY_FILE = "splits.json"
NOT_SELECTED = "not_selected"
SPLITS_SCHEMA = pa.schema([
    pa.field("clip_id", pa.string(), nullable=False),
    pa.field("split", pa.string()),
    pa.field("reason", pa.string()),
])


@dataclass
class SplitSummary:
    """What the split did; written to ``W/splits.json`` and read back by verify."""

    config: dict
    clips: int = 0
    counts: dict[str, int] = field(default_factory=dict)       # split -> clips
    targets: dict[str, int] = field(default_factory=dict)      # stratified part -> size it should have
    pool_kept: int = 0                                          # kept clips of the stratified pool
    reasons: dict[str, int] = field(default_factory=dict)      # reason -> clips in no split
    label_deviation: dict = field(default_factory=dict)
    decontaminated: list[dict] = field(default_factory=list)   # examples: clip, its pool, the clip it resembles
    official: dict = field(default_factory=dict)               # membership: official (per split) or drawn

    def lines(self) -> list[str]:
        out = [f"clips {self.clips:,}  in splits {sum(self.counts.values()):,}  "
               f"in none {sum(self.reasons.values()):,}"]
        for name, n in self.counts.items():
            target = f" (target {self.targets[name]:,})" if name in self.targets else ""
            out.append(f"  {name}: {n:,}{target}")
        out += [f"  dropped {reason}: {n:,}" for reason, n in sorted(self.reasons.items(), key=lambda x: -x[1])]
        out += [f"  decontaminated {d['clip_id']} ({d['pool']}): near-duplicate of {d['near']}"
                for d in self.decontaminated[:5]]
        for name, part in self.official.get("splits", {}).items():
            rejected = sum(part["rejected"].values())
            out.append(f"  official {name}: {part['in_split']:,} of {part['listed']:,} listed "
                       f"({part['missing']:,} missing, {rejected:,} rejected)")
        if self.official.get("leaks"):
            out.append(f"  official files share {self.official['leaks']:,} video(s) across splits (kept as published)")
        dev = self.label_deviation
        if dev.get("label"):
            out.append(f"label distribution: largest deviation {dev['max'] * 100:.2f} pp ({dev['label']} in "
                       f"{dev['part']}: {dev['part_share'] * 100:.2f}% vs {dev['pool_share'] * 100:.2f}% "
                       f"in the pool); mean {dev['mean'] * 100:.3f} pp")
        return out


def _assign(state: ClipState, pool_of: np.ndarray, pools: list[Pool], cfg: SplitConfig,
            summary: SplitSummary, official: np.ndarray) -> np.ndarray:
    """Each row's split (object array, None where the clip is in no split); official rows keep theirs."""
    split = np.where(state.kept & (official != None), official, None)   # noqa: E711 (object array)
    for i, pool in enumerate(pools):
        rows = np.flatnonzero(state.kept & (pool_of == i) & (official == None))   # noqa: E711
        if _is_official(pool, cfg):
            unlisted = np.zeros(len(state), dtype=bool)
            unlisted[rows] = True
            state.drop(unlisted, NOT_IN_OFFICIAL)
            continue
        if not pool.stratified:
            split[rows] = pool.name
            continue
        labels = pc.take(state.labels, rows)
        summary.pool_kept = len(rows)
        summary.targets = cfg.target_sizes(len(rows))
        parts = stratified_assign(pc.take(state.video_id, rows).to_pylist(), labels.to_pylist(), summary.targets,
                                  cfg.seed)
        split[rows] = parts
        unselected = np.zeros(len(state), dtype=bool)
        unselected[rows[[p is None for p in parts]]] = True
        state.drop(unselected, NOT_SELECTED)
        summary.label_deviation = label_deviation(labels, parts)
    return split


def _is_official(pool: Pool, cfg: SplitConfig) -> bool:
    """Whether official files define this pool's split(s)."""
    names = cfg.parts if pool.stratified else [pool.name]
    return bool(cfg.official) and all(name in cfg.official for name in names)


def _value_counts(column: pa.ChunkedArray) -> dict[str, int]:
    return {r["values"]: r["counts"] for r in pc.value_counts(column.drop_null()).to_pylist()}


def run_split(workdir: Workdir, cfg: SplitConfig) -> SplitSummary:
    """Decide every manifest clip's split; write ``splits.parquet`` and ``splits.json``."""
    state = load_clips(workdir)
    pools = recipe_pools(cfg)
    pool_of = pool_index(state.subset, pools)
    official = load_official(cfg.official) if cfg.official else None
    listed = official_rows(state, official) if official else np.full(len(state), None, dtype=object)
    state.drop(pool_of < 0, NOT_IN_RECIPE)
    fetch = optional_table(workdir, "fetch.parquet", ["clip_id", "status"])
    if fetch is not None:
        apply_fetch(state, fetch)
    signatures = optional_table(workdir, "signatures.parquet", ["clip_id", "dup_group", "dup_keep"])
    quality = optional_table(workdir, "quality.parquet", ["clip_id", "verdict", "reasons"])
    if quality is not None:
        apply_quality(state, quality, pool_duplicates=signatures is not None)
    if cfg.captions:
        apply_captions(state, workdir, cfg.captions)
    drop_video_leaks(state, pool_of, pools)
    summary = SplitSummary(config=asdict(cfg), clips=len(state))
    if signatures is not None:
        summary.decontaminated = drop_near_duplicates(state, pool_of, pools, signatures, cfg.seed)[:20]
    if official is not None and reinstate(state, listed, {NOT_IN_RECIPE, SAME_VIDEO, NEAR_DUPLICATE, DUPLICATE}):
        dropped = set(pc.filter(state.clip_id, pa.array(~state.kept)).to_pylist())
        summary.decontaminated = [d for d in summary.decontaminated if d["clip_id"] in dropped]
    split = _assign(state, pool_of, pools, cfg, summary, listed)
    workdir.path(OFFICIAL_FILE).unlink(missing_ok=True)
    if official is not None:
        members = membership_table(state, official, split)
        write_table(members, workdir.path(OFFICIAL_FILE))
        summary.official = summarize(members, same_video_leaks(state, split))
    else:
        summary.official = {"membership": "published subsets" if cfg.mode == "published" else "drawn by seeded hash"}
    table = pa.table({"clip_id": state.clip_id, "split": pa.array(split, pa.string()),
                      "reason": pa.array(state.reason, pa.string())}, schema=SPLITS_SCHEMA)
    write_table(table, workdir.path(SPLITS_FILE))
    counts = _value_counts(table.column("split"))
    summary.counts = {name: counts.get(name, 0) for name in cfg.split_names}
    summary.reasons = dict(sorted(_value_counts(table.column("reason")).items()))
    with atomic_path(workdir.path(SUMMARY_FILE)) as tmp:
        tmp.write_text(json.dumps(asdict(summary), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    log.info("wrote %s: %s", workdir.path(SPLITS_FILE), summary.counts)
    return summary


def read_summary(workdir: Workdir) -> SplitSummary:
    """``W/splits.json`` as a SplitSummary."""
    data = json.loads(workdir.path(SUMMARY_FILE).read_text(encoding="utf-8"))
    return SplitSummary(**data)
