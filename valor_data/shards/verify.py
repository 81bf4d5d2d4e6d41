"""``verify-splits``: prove a built dataset keeps its promises, check by check.

Table checks (``verify_tables``): every manifest clip accounted for once, no video in
two splits, no near-duplicate across splits, sizes as configured, label distribution
within tolerance. Shard checks (``verify_tars``, one sequential read of every tar):
shard samples match ``splits.parquet``, every sample has all members and they decode
(a seeded sample per split, or all with ``full``), and shard/member checksums match
the shard lists and ``index.parquet``. Each check passes or fails with counts and
examples; ``Report.ok`` is their conjunction. The shared types are in ``checks``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pyarrow.parquet as pq

from valor_data.errors import ValorError
from valor_data.shards import verify_tables, verify_tars
from valor_data.shards.checks import Check, Context, VerifyOptions
from valor_data.split import SPLITS_FILE, SplitConfig, read_summary
from valor_data.workdir import Workdir


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
    options = options or VerifyOptions()
    ctx = load_context(workdir)
    checks = verify_tables.run(ctx)
    if not options.splits_only:
        checks += verify_tars.run(ctx, options)
    return Report(checks)
