"""The filter stage: measure clips on a local pool or Ray, judge them, group near-duplicates.

Inputs are either the fetched clips of a work dir (``manifest.parquet`` + ``fetch.parquet``,
media at ``W/media/..``) or every media file of a folder (``media_dir``, see ``folder``). Measuring is the
expensive part and is resumable: results land in ``W/quality/tasks/`` and a rerun measures
only clips without a result. Judging and grouping are cheap and always redone, so the
outputs always match the current thresholds:

    W/quality.parquet     one row per clip: metrics, verdict (keep|reject), reasons, dup_group, dup_of
                          (plus what fetch measured of the source: SOURCE_COLUMNS)
    W/signatures.parquet  clip_id, frame_hashes, frame_tiny, audio_fp, dup_group, dup_keep, dup_of
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from valor_data.curate import agreement, checks, duplicates
from valor_data.curate.analyze import MEASURE_SCHEMA, SIGNATURE_COLUMNS, measure_task
from valor_data.curate.config import FilterConfig
from valor_data.curate.folder import Skipped, folder_clips
from valor_data.distribute import plan, read_results, run_tasks, stage_lock
from valor_data.distribute.tasks import latest
from valor_data.errors import ValorError
from valor_data.table import read_table, write_table
from valor_data.workdir import Workdir

log = logging.getLogger(__name__)

STAGE = "quality"
# measured by fetch on the way in, before the re-encode hid them (fetch.parquet)
SOURCE_COLUMNS = {"source_bits_per_pixel": pa.float64(), "source_decode_errors": pa.int32()}


@dataclass
class FilterSummary:
    """What a filter run measured and decided."""

    clips: int = 0
    measured_now: int = 0
    verdicts: Counter = field(default_factory=Counter)
    reasons: Counter = field(default_factory=Counter)
    statuses: Counter = field(default_factory=Counter)
    dup_groups: int = 0
    seconds: float = 0.0
    skipped: Skipped = field(default_factory=Skipped)     # files of --media-dir that are not clips

    def lines(self) -> list[str]:
        out = [f"clips {self.clips:,}  measured now {self.measured_now:,}  keep {self.verdicts['keep']:,}  "
               f"reject {self.verdicts['reject']:,}  duplicate groups {self.dup_groups:,}  ({self.seconds:.1f} s)"]
        out += [f"  status {name}: {n:,}" for name, n in sorted(self.statuses.items()) if name != "ok"]
        if self.reasons:
            out.append(f"  {'reason':<17}{'family':<10}{'clips':>8}")
            out += [f"  {reason:<17}{checks.family(reason):<10}{n:>8,}" for reason, n in self.reasons.most_common()]
        return out + self.skipped.lines()


def fetched_clips(workdir: Workdir) -> pa.Table:
    """Clips the fetch stage delivered: clip_id, subset, media path, requested duration (end - start)."""
    fetch_path = workdir.path("fetch.parquet")
    if not workdir.manifest.exists() or not fetch_path.exists():
        raise ValorError(f"{workdir.root} has no manifest.parquet + fetch.parquet: run fetch first, "
                         "or filter a folder with --media-dir")
    fetched = read_table(fetch_path, columns=["clip_id", "status"])
    ok = fetched.filter(pc.equal(fetched["status"], "ok")).column("clip_id")
    manifest = read_table(workdir.manifest, columns=["clip_id", "subset", "start_s", "end_s"])
    manifest = manifest.filter(pc.is_in(manifest["clip_id"], ok.combine_chunks()))
    paths = [str(workdir.media_path(clip_id, "mp4")) for clip_id in manifest.column("clip_id").to_pylist()]
    return pa.table({"clip_id": manifest["clip_id"], "subset": manifest["subset"], "path": pa.array(paths),
                     "requested_s": pc.subtract(manifest["end_s"], manifest["start_s"])})


def _rows(table: pa.Table) -> Iterator[dict]:
    for batch in table.to_batches(max_chunksize=10_000):
        yield from batch.to_pylist()


def measured_ids(workdir: Workdir, redo: str | None = None) -> set[str]:
    """Clips with a final measurement (``redo``: "all" -> none, "failed" -> only status ok)."""
    table = read_results(workdir, STAGE, columns=["clip_id", "status"])
    if table is None or redo == "all":
        return set()
    table = latest(table)
    if redo == "failed":
        table = table.filter(pc.equal(table["status"], "ok"))
    return set(table.column("clip_id").to_pylist())


def run_filter(workdir: Workdir, config: FilterConfig, media_dir: str | os.PathLike | None = None,
               distributor: str = "local", workers: int = 0, ray_address: str | None = None,
               redo: str | None = None, limit: int | None = None) -> FilterSummary:
    """Measure what is not measured yet (``redo``: "all" | "failed"), then judge and group all."""
    started = time.monotonic()
    with stage_lock(workdir, STAGE):
        clips, skipped = folder_clips(media_dir) if media_dir is not None else (fetched_clips(workdir), Skipped())
        tasks = plan(_rows(clips), STAGE, workdir, measured_ids(workdir, redo), config.task_size, limit)
        measured = 0
        for result in run_tasks(measure_task, tasks, config, distributor, workers, ray_address):
            measured += result["clips"]
            log.info("task %d: %d clips %s (%d measured this run)", result["index"], result["clips"],
                     result["status"], measured)
        table = finalize(workdir, config, clips.column("clip_id"))
    summary = summarize(table)
    summary.measured_now, summary.seconds, summary.skipped = measured, time.monotonic() - started, skipped
    return summary


def finalize(workdir: Workdir, config: FilterConfig, wanted: pa.ChunkedArray | None = None) -> pa.Table:
    """Judge every measured clip, group duplicates, write quality.parquet and signatures.parquet."""
    measured = read_results(workdir, STAGE)
    if measured is None:
        measured = MEASURE_SCHEMA.empty_table()
    measured = latest(measured.cast(MEASURE_SCHEMA)) if measured.num_rows else measured
    if wanted is not None:
        measured = measured.filter(pc.is_in(measured["clip_id"], wanted.combine_chunks()))
    measured = with_source(workdir, measured.sort_by("clip_id"))
    scores = agreement.read_scores(workdir, config)
    measured = agreement.with_scores(measured, scores)
    config = agreement.resolved(config, scores)
    reasons = list(judge_all(measured, config))
    dups = _duplicates(measured, reasons, config)
    for i, dup in enumerate(dups):
        if dup["dup_of"] is not None:
            reasons[i] = reasons[i] + ["duplicate"]
    judged = {
        "verdict": pa.array(["reject" if r else "keep" for r in reasons], pa.string()),
        "reasons": pa.array(reasons, pa.list_(pa.string())),
        "dup_group": pa.array([d["dup_group"] for d in dups], pa.int64()),
        "dup_keep": pa.array([d["dup_keep"] for d in dups], pa.bool_()),
        "dup_of": pa.array([d["dup_of"] for d in dups], pa.string()),
    }
    quality = measured.drop_columns(list(SIGNATURE_COLUMNS))
    for name in ("verdict", "reasons", "dup_group", "dup_of"):
        quality = quality.append_column(name, judged[name])
    signatures = measured.select(["clip_id", *SIGNATURE_COLUMNS])
    for name in ("dup_group", "dup_keep", "dup_of"):
        signatures = signatures.append_column(name, judged[name])
    write_table(signatures, workdir.path("signatures.parquet"))
    write_table(quality, workdir.path("quality.parquet"))
    return quality


def with_source(workdir: Workdir, measured: pa.Table) -> pa.Table:
    """``measured`` plus fetch's ``SOURCE_COLUMNS`` for each clip (null where fetch did not record
    them: a folder of media, or a fetch.parquet written before they existed)."""
    path = workdir.path("fetch.parquet")
    present = set(pq.ParquetFile(path).schema_arrow.names) if path.exists() else set()
    wanted = [name for name in SOURCE_COLUMNS if name in present]
    source = read_table(path, columns=["clip_id", *wanted]) if wanted else None
    at = pc.index_in(measured["clip_id"], source["clip_id"].combine_chunks()) if source is not None else None
    for name, kind in SOURCE_COLUMNS.items():
        column = source[name].take(at) if name in wanted else pa.nulls(measured.num_rows, kind)
        measured = measured.append_column(name, column.cast(kind))
    return measured


_NOT_JUDGED = set(SIGNATURE_COLUMNS)


def judge_all(measured: pa.Table, config: FilterConfig, batch: int = 50_000) -> Iterable[list[str]]:
    """Reasons per row, judged a batch of rows at a time (bounded memory)."""
    columns = [name for name in measured.column_names if name not in _NOT_JUDGED]
    for chunk in measured.select(columns).to_batches(max_chunksize=batch):
        for row in chunk.to_pylist():
            yield checks.judge(row, config)


def _duplicates(measured: pa.Table, reasons: list[list[str]], config: FilterConfig) -> list[dict]:
    blank = {"dup_group": None, "dup_keep": True, "dup_of": None}
    if not config.duplicates or not measured.num_rows:
        return [dict(blank) for _ in range(measured.num_rows)]
    sigs = duplicates.Signatures.from_arrow(*(measured.column(c).combine_chunks() for c in SIGNATURE_COLUMNS),
                                            frames=config.frames)
    rank = measured.select(["clip_id", "has_audio", "short_side", "video_bitrate", "duration_s"]).to_pylist()
    for row, why in zip(rank, reasons, strict=True):
        row["quality_reasons"] = why
    return duplicates.group(rank, sigs, config)


def summarize(quality: pa.Table) -> FilterSummary:
    summary = FilterSummary(clips=quality.num_rows)
    summary.verdicts.update(quality.column("verdict").to_pylist())
    summary.statuses.update(quality.column("status").to_pylist())
    for reasons in quality.column("reasons").to_pylist():
        summary.reasons.update(reasons)
    groups = pc.drop_null(quality.column("dup_group"))
    summary.dup_groups = len(pc.unique(groups)) if len(groups) else 0
    return summary


def explain(workdir: Workdir, clip_id: str, config: FilterConfig) -> list[str]:
    """The metrics of one clip of ``W/quality.parquet`` against the current thresholds."""
    path = workdir.path("quality.parquet")
    if not path.exists():
        raise ValorError(f"{path} does not exist: run valor-data filter first")
    table = read_table(path)
    rows = table.filter(pc.equal(table["clip_id"], clip_id)).to_pylist()
    if not rows:
        raise ValorError(f"clip {clip_id!r} is not in {path}")
    return checks.explain(rows[0], agreement.resolved(config, agreement.read_scores(workdir, config)))
