"""Pools, and the rules that keep one video or one near-duplicate group in one split.

A pool is a set of manifest subsets whose kept clips share a fate: VALOR's pretraining
pool (``unbalanced_train`` -> ``valor1m``), its benchmark pool (``balanced_train`` +
``eval``, cut into VALOR-32K parts), or one published Youku-mPLUG subset. Pools are
ranked: benchmark test > val > train > pretraining. When a source video or a
near-duplicate group reaches two pools, the higher pool keeps it and the lower one
drops its clips (``decontaminated:same_video`` / ``decontaminated:near_duplicate``).
Within one pool a near-duplicate group keeps one clip (the filter's ``dup_keep`` pick,
else the lowest seeded hash) and drops the rest as ``duplicate``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from valor_data.split.config import SplitConfig
from valor_data.split.hashing import seeded_hash
from valor_data.split.inputs import ClipState, lookup, positions, to_numpy

SAME_VIDEO = "decontaminated:same_video"
NEAR_DUPLICATE = "decontaminated:near_duplicate"
DUPLICATE = "duplicate"
NOT_IN_RECIPE = "not_in_recipe"
_LEVEL = {"test": 3, "val": 2, "train": 1}


@dataclass(frozen=True)
class Pool:
    """Subsets whose kept clips share a fate; a higher ``priority`` wins a shared video."""

    name: str
    subsets: tuple[str, ...]
    priority: int
    stratified: bool = False


def recipe_pools(cfg: SplitConfig) -> list[Pool]:
    """The pools of a recipe, pretraining first."""
    if cfg.mode == "stratified":
        return [Pool(cfg.pretrain_split, tuple(cfg.pretrain_subsets), 0),
                Pool("benchmark", tuple(cfg.benchmark_subsets), 1, stratified=True)]
    pools = [Pool(s, (s,), -i) for i, s in enumerate(cfg.pretrain_subsets, 1)]
    for i, subset in enumerate(cfg.benchmark_subsets):
        level = _LEVEL.get(subset.rsplit("-", 1)[-1].rsplit("_", 1)[-1], 1)
        pools.append(Pool(subset, (subset,), level * 1000 - i))
    return pools


def pool_index(subset: pa.ChunkedArray, pools: list[Pool]) -> np.ndarray:
    """Each row's pool position (-1: its subset is not in the recipe)."""
    of_subset = {s: i for i, pool in enumerate(pools) for s in pool.subsets}
    encoded = subset.combine_chunks().dictionary_encode()
    mapping = np.array([of_subset.get(s, -1) for s in encoded.dictionary.to_pylist()] + [-1], dtype=np.int16)
    return mapping[to_numpy(encoded.indices, -1)]


def priorities(pool_of: np.ndarray, pools: list[Pool]) -> np.ndarray:
    """Each row's pool priority (rows outside the recipe get one below every pool)."""
    table = np.array([p.priority for p in pools] + [min(p.priority for p in pools) - 1], dtype=np.int64)
    return table[pool_of]


def drop_video_leaks(state: ClipState, pool_of: np.ndarray, pools: list[Pool]) -> int:
    """Drop clips whose source video also appears (in any state) in a higher pool."""
    prio = priorities(pool_of, pools)
    dropped = 0
    for level in sorted({p.priority for p in pools})[:-1]:
        higher = pc.unique(pc.filter(state.video_id, pa.array(prio > level)))
        mask = (prio == level) & to_numpy(pc.is_in(state.video_id, value_set=higher))
        dropped += state.drop(mask, SAME_VIDEO)
    return dropped


def drop_near_duplicates(state: ClipState, pool_of: np.ndarray, pools: list[Pool],
                         signatures: pa.Table, seed: int) -> list[dict]:
    """Apply the near-duplicate rules; return ``{clip_id, pool, near}`` for each decontaminated clip."""
    where = positions(state.clip_id, signatures)
    group = lookup(state.clip_id, signatures, "dup_group", where)
    rows = np.flatnonzero(to_numpy(pc.is_valid(group)) & state.kept & (pool_of >= 0))
    if not len(rows):
        return []
    keys = pc.take(state.clip_id, rows)
    frame = pd.DataFrame({
        "row": rows, "clip_id": keys.to_pylist(), "group": pc.take(group, rows).to_pylist(),
        "prio": priorities(pool_of, pools)[rows],
        "pick": to_numpy(pc.fill_null(pc.take(lookup(state.clip_id, signatures, "dup_keep", where), rows), False))})
    frame["top"] = frame.groupby("group")["prio"].transform("max")
    lower = frame[frame.prio < frame.top]
    winners = frame[frame.prio == frame.top].drop_duplicates("group").set_index("group")["clip_id"]
    state.reason[lower.row.to_numpy()] = NEAR_DUPLICATE
    state.kept[lower.row.to_numpy()] = False
    same = frame[frame.prio == frame.top].copy()
    same["hash"] = [seeded_hash(c, seed) for c in same.clip_id]
    same = same.sort_values(["group", "pick", "hash"], ascending=[True, False, True])
    extra = np.zeros(len(state), dtype=bool)
    extra[same[same.duplicated("group")].row.to_numpy()] = True
    state.drop(extra, DUPLICATE)
    pool_name = {i: p.name for i, p in enumerate(pools)}
    return [{"clip_id": c, "pool": pool_name[int(pool_of[r])], "near": winners[g]}
            for r, c, g in zip(lower.row, lower.clip_id, lower.group, strict=True)]
