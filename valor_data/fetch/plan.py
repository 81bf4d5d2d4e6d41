"""What a fetch run would do, before it runs: clips left by kind, the identities and their
budgets, how long the YouTube clips take at those budgets (``valor-data fetch --plan``), and
the concurrency the budgets call for.

YouTube rows (resolved with yt-dlp: ``source == "audioset"`` or a YouTube host) are paced by
the identities' budgets; other rows (http, file) are not. A run whose rows left are all YouTube
and that was given no ``workers`` gets ``pacing.in_flight``'s workers: enough threads to keep
every budget busy, no more (48 threads at 250 videos/hour would only wait in the pacer).
"""

from __future__ import annotations

import dataclasses
import os

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from valor_data.fetch.config import FetchConfig
from valor_data.fetch.identity import specs
from valor_data.fetch.pacing import budget, in_flight
from valor_data.fetch.worker import YOUTUBE_HOSTS
from valor_data.workdir import Workdir

_HOST = r"^[A-Za-z][A-Za-z0-9+.-]*://(?:[^@/?#]*@)?(?P<host>[^/:?#]*)"


def left(manifest: os.PathLike, done: set[str], limit: int | None) -> tuple[int, int]:
    """(YouTube rows, other rows) of the manifest not in ``done`` (the first ``limit`` of them)."""
    table = pq.read_table(manifest, columns=[c for c in ("clip_id", "source", "url")
                                             if c in pq.ParquetFile(manifest).schema_arrow.names])
    if done:
        table = table.filter(pc.invert(pc.is_in(table.column("clip_id"), value_set=pa.array(list(done), pa.string()))))
    if limit is not None:
        table = table.slice(0, limit)
    youtube = pa.array([False] * table.num_rows)
    if "source" in table.column_names:
        youtube = pc.fill_null(pc.equal(table.column("source"), "audioset"), False)
    if "url" in table.column_names:
        host = pc.utf8_lower(pc.struct_field(pc.extract_regex(table.column("url"), _HOST), "host"))
        youtube = pc.or_(youtube, pc.fill_null(pc.is_in(host, value_set=pa.array(YOUTUBE_HOSTS)), False))
    count = pc.sum(youtube).as_py() or 0
    return count, table.num_rows - count


def sized(cfg: FetchConfig, youtube: int, other: int) -> FetchConfig:
    """``cfg`` with the workers the budgets call for, when it names none and every row left is YouTube."""
    if cfg.workers or not youtube or other:
        return cfg
    workers, _ = in_flight([budget(s, cfg.youtube) for s in specs(cfg.youtube)], cfg)
    return dataclasses.replace(cfg, workers=workers)


def lines(workdir: Workdir, cfg: FetchConfig, done: set[str], limit: int | None, total: int) -> list[str]:
    """The plan, as printed by ``valor-data fetch --plan``."""
    youtube, other = left(workdir.manifest, done, limit)
    budgets = [(s, budget(s, cfg.youtube)) for s in specs(cfg.youtube)]
    out = [f"fetch plan for {workdir.root}: {youtube + other:,} clips to fetch of {total:,} in the manifest",
           f"  YouTube (yt-dlp, paced): {youtube:,}", f"  other (http, file; not paced): {other:,}",
           f"identities ({len(budgets)}):"]
    for spec, rate in budgets:
        out.append(f"  {spec.name:<12} {rate.per_hour:>8,.0f}/h, >= {rate.interval_s:.1f} s apart; "
                   f"cookies: {'yes' if spec.cookies_file else 'no'}; proxy: {spec.proxy or 'none'}"
                   + (f"; source address: {spec.source_address}" if spec.source_address else ""))
    per_hour = sum(rate.per_hour for _, rate in budgets)
    rates = {round(rate.per_hour) for _, rate in budgets}
    at = (f"{rates.pop():,}/h x {len(budgets)} identit{'y' if len(budgets) == 1 else 'ies'}" if len(rates) == 1
          else f"{per_hour:,.0f}/h over {len(budgets)} identities")
    out.append(f"YouTube: {youtube:,} clips at {at}: {youtube / per_hour:,.1f} h")
    run = sized(cfg, youtube, other)
    how = "from the budgets" if run.workers != cfg.workers else "as configured" if cfg.workers else "one per CPU"
    out.append(f"concurrency: {run.workers or os.cpu_count() or 1} workers x {run.threads} threads ({how})")
    return out
