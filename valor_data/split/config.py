"""The ``split:`` section of a pipeline YAML."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MODES = ("stratified", "published")
SPLIT_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def _default_parts() -> dict[str, int]:
    return {"valor32k-train": 25_000, "valor32k-val": 3_500, "valor32k-test": 3_500}


@dataclass
class SplitConfig:
    """How kept clips become splits.

    ``stratified`` (VALOR): every kept clip of ``pretrain_subsets`` goes to
    ``pretrain_split``; kept clips of ``benchmark_subsets`` are pooled and cut into
    ``parts`` (name -> size; the first part is the largest and takes the remainder).
    ``published`` (Youku-mPLUG): a clip's split is its manifest ``subset``.
    ``official`` (split name -> id files, e.g. VALOR's ``desc_test.json``): those splits hold
    exactly the listed clips that survived fetch and filter (``valor_data/split/official.py``);
    the benchmark parts are official all together or not at all.
    """

    mode: str = "stratified"
    seed: int = 0
    pretrain_subsets: list[str] = field(default_factory=lambda: ["unbalanced_train"])
    pretrain_split: str = "valor1m"
    benchmark_subsets: list[str] = field(default_factory=lambda: ["balanced_train", "eval"])
    parts: dict[str, int] = field(default_factory=_default_parts)
    label_tolerance: float = 0.02     # verify: allowed |class share in a part - in the pool| (widened for small parts)
    official: dict[str, list[str]] = field(default_factory=dict)   # split -> VALOR id files (exact membership)
    captions: str | None = None       # human | pseudo | both: clips without such a caption -> ``no_caption``
                                      # (pseudo: ``W/pseudo_captions.parquet``); None: captions not required

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {self.mode!r}")
        overlap = set(self.pretrain_subsets) & set(self.benchmark_subsets)
        if overlap:
            raise ValueError(f"subsets both pretraining and benchmark: {sorted(overlap)}")
        if self.mode == "published" and self.parts:
            raise ValueError("published mode keeps the subsets as splits: leave 'parts' empty")
        if self.mode == "stratified" and not self.parts:
            raise ValueError("stratified mode needs 'parts' (split name -> size)")
        if any(not isinstance(n, int) or n < 0 for n in self.parts.values()):
            raise ValueError(f"part sizes must be non-negative integers: {self.parts}")
        for name in [*self.split_names, *self.pretrain_subsets, *self.benchmark_subsets]:
            if not SPLIT_NAME_RE.match(name):
                raise ValueError(f"not a usable split or subset name: {name!r}")
        if self.captions not in (None, "human", "pseudo", "both"):
            raise ValueError(f"captions must be human, pseudo or both, not {self.captions!r}")
        if not 0 < self.label_tolerance <= 1:
            raise ValueError("label_tolerance must be in (0, 1]")
        self.official = {k: [v] if isinstance(v, str) else list(v) for k, v in (self.official or {}).items()}
        if self.official and self.mode != "stratified":
            raise ValueError("official files are for the stratified (VALOR) recipe; published mode keeps subsets")
        unknown = sorted(set(self.official) - set(self.split_names))
        if unknown:
            raise ValueError(f"official files for split(s) not in this recipe: {unknown} (splits: {self.split_names})")
        listed = set(self.official) & set(self.parts)
        if listed and listed != set(self.parts):
            raise ValueError(f"official files cover {sorted(listed)} but not {sorted(set(self.parts) - listed)}: "
                             "give every benchmark part's file, or none")

    @property
    def split_names(self) -> list[str]:
        """Every split this recipe can produce, pretraining first."""
        if self.mode == "published":
            return [*self.pretrain_subsets, *self.benchmark_subsets]
        return [self.pretrain_split, *self.parts]

    @property
    def pretrain_splits(self) -> list[str]:
        return list(self.pretrain_subsets) if self.mode == "published" else [self.pretrain_split]

    def target_sizes(self, kept: int) -> dict[str, int]:
        """Part sizes for ``kept`` pool clips (stratified mode).

        With at least ``sum(parts)`` clips the configured sizes hold (the rest is not
        selected). With fewer, every part but the first gets ``floor(kept * size / total)``
        and the first part takes the remainder, so all kept clips are used.
        """
        total = sum(self.parts.values())
        if kept >= total:
            return dict(self.parts)
        names = list(self.parts)
        sizes = {name: kept * self.parts[name] // total for name in names[1:]}
        return {names[0]: kept - sum(sizes.values()), **sizes}
