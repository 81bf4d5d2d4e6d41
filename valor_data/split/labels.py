"""How far each part's label distribution is from its pool's (multi-label prevalence)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import NamedTuple

import pyarrow as pa
import pyarrow.compute as pc


class Deviation(NamedTuple):
    part: str
    label: str
    part_share: float     # share of the part's clips carrying the label
    pool_share: float     # share of all assigned clips carrying the label
    part_size: int

    @property
    def value(self) -> float:
        return abs(self.part_share - self.pool_share)


def deviations(labels: Sequence[Sequence[str] | None] | pa.Array, parts: Sequence[str | None] | pa.Array
               ) -> list[Deviation]:
    """One Deviation per (part, label) over the clips with a part (None: not assigned)."""
    labels = labels if isinstance(labels, (pa.Array, pa.ChunkedArray)) else pa.array(labels, pa.list_(pa.string()))
    parts = parts if isinstance(parts, (pa.Array, pa.ChunkedArray)) else pa.array(parts, pa.string())
    placed = pa.table({"labels": labels, "part": parts}).filter(pc.is_valid(parts))
    sizes = {r["values"]: r["counts"] for r in pc.value_counts(placed.column("part")).to_pylist()}
    flat = placed.column("labels").combine_chunks()
    pairs = pa.table({"part": pc.take(placed.column("part"), pc.list_parent_indices(flat)),
                      "label": pc.list_flatten(flat)})
    per_part = {(r["part"], r["label"]): r["count_all"]
                for r in pairs.group_by(["part", "label"]).aggregate([([], "count_all")]).to_pylist()}
    pool: Counter = Counter()
    for (_, label), n in per_part.items():
        pool[label] += n
    total = sum(sizes.values())
    return [Deviation(part, label, per_part.get((part, label), 0) / sizes[part], pool[label] / total, sizes[part])
            for part in sorted(sizes) for label in sorted(pool)]


def label_deviation(labels: Sequence[Sequence[str] | None], parts: Sequence[str | None]) -> dict:
    """The largest ``|share of a part's clips with label L - share of all assigned clips with L|``.

    Returns ``{"max", "label", "part", "part_share", "pool_share", "mean"}`` (``mean``
    averages every (part, label) pair); an empty pool gives zeros.
    """
    devs = deviations(labels, parts)
    if not devs:
        return {"max": 0.0, "label": None, "part": None, "part_share": 0.0, "pool_share": 0.0, "mean": 0.0}
    worst = max(devs, key=lambda d: (d.value, d.part, d.label))
    return {"max": worst.value, "label": worst.label, "part": worst.part, "part_share": worst.part_share,
            "pool_share": worst.pool_share, "mean": sum(d.value for d in devs) / len(devs)}


def allowed_deviation(tolerance: float, deviation: Deviation) -> float:
    """What verify accepts for one (part, label): the tolerance, widened to three binomial
    standard errors of the label's share in a part that small, plus one clip of rounding."""
    q, m = deviation.pool_share, max(deviation.part_size, 1)
    return max(tolerance, 3 * math.sqrt(q * (1 - q) / m)) + 1 / m
