"""``verify-splits``: prove a built dataset keeps its promises, check by check.

Table checks (``verify_tables``): every manifest clip accounted for once, no video in
two splits, no near-duplicate across splits, sizes as configured, label distribution
within tolerance. Shard checks (``verify_tars``, one sequential read of every tar):
shard samples match ``splits.parquet``, every sample has all members and they decode
(a seeded sample per split, or all with ``full``), and shard/member checksums match
the shard lists and ``index.parquet``. Each check passes or fails with counts and
examples; ``Report.ok`` is their conjunction.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import pyarrow.parquet as pq

from valor_data.errors import ValorError
from valor_data.split import SPLITS_FILE, SplitConfig, SplitSummary, read_summary
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


@dataclass
class Report:
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def as_dict(self) -> dict:
        return {"ok": self.ok, "checks": [asdict(c) for c in self.checks]}

    def lines(self) -> list[str]:
        out = []
        for c in self.checks:
            counts = ", ".join(f"{k} {v:,}" for k, v in c.counts.items())
            out.append(f"{'PASS' if c.ok else 'FAIL'} {c.name:<20} {c.description}" + (f" [{counts}]" if counts else ""))
            out += [f"     {c.note}"] * bool(c.note) + [f"     e.g. {e}" for e in c.examples]
        failed = sum(not c.ok for c in self.checks)
        out.append(f"verify-splits: {len(self.checks) - failed} passed, {failed} failed")
        return out


def load_context(workdir: Workdir) -> Context:
    for path in (workdir.manifest, workdir.path(SPLITS_FILE)):
        if not path.exists():
            raise ValorError(f"{path} does not exist: run the manifest and split stages first")
    summary = read_summary(workdir)
    return Context(workdir, SplitConfig(**summary.config), summary, pq.read_table(workdir.path(SPLITS_FILE)))


def verify(workdir: Workdir, options: VerifyOptions | None = None) -> Report:
    """Run every check on ``workdir`` and return the report."""
    from valor_data.shards import verify_tables, verify_tars

    options = options or VerifyOptions()
    ctx = load_context(workdir)
    checks = verify_tables.run(ctx)
    if not options.splits_only:
        checks += verify_tars.run(ctx, options)
    return Report(checks)
