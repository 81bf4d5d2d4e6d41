"""The types every verify-splits check shares: a check's outcome, the options, the context."""

from __future__ import annotations

from dataclasses import dataclass, field

from valor_data.split import SplitConfig, SplitSummary
from valor_data.workdir import Workdir

MAX_EXAMPLES = 5


@dataclass
class Check:
    """One check's outcome."""

    name: str
    description: str
    ok: bool = True
    counts: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)
    note: str = ""

    def fail(self, example: str) -> None:
        """Record a failure (the first few are kept as examples)."""
        self.ok = False
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(example)


@dataclass
class VerifyOptions:
    full: bool = False          # decode every sample, not a seeded sample of each split
    sample: int = 16            # samples decoded per split when not ``full``
    splits_only: bool = False   # table checks only (no shards built yet)
    workers: int = 2


@dataclass
class Context:
    """Everything the checks read, loaded once."""

    workdir: Workdir
    cfg: SplitConfig
    summary: SplitSummary
    splits: object              # pa.Table: clip_id, split, reason, subset, video_id
