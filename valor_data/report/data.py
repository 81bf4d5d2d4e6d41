"""Everything a report shows, read once from a work dir (each table may be absent)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from valor_data.curate.config import FilterConfig
from valor_data.workdir import Workdir

log = logging.getLogger(__name__)

TABLES = ("manifest", "rejects", "fetch", "quality", "signatures", "splits", "scores")
_COLUMNS = {   # what the report needs of each table (the rest is never read)
    "manifest": ["clip_id", "subset", "labels", "label_names", "captions", "language"],
    "signatures": ["clip_id", "dup_group", "dup_keep"],
    "scores": ["clip_id", "status", "av_score", "tav_max", "tv_max", "ta_max", "loglik_max"],
}


@dataclass
class ReportData:
    """The work dir's tables as data frames, the trainer's logs and the validation verdict."""

    workdir: Workdir
    thresholds: FilterConfig = field(default_factory=FilterConfig)    # drawn on the quality metrics
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    train_logs: dict[str, list[dict]] = field(default_factory=dict)   # run name -> log.jsonl records
    validation: dict | None = None

    def table(self, name: str) -> pd.DataFrame | None:
        return self.tables.get(name)


def _read(path: Path, columns: list[str] | None) -> pd.DataFrame:
    present = set(pq.read_schema(path).names)
    wanted = [c for c in columns if c in present] if columns else None
    return pq.read_table(path, columns=wanted).to_pandas()


def _jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def load(workdir: Workdir, thresholds: FilterConfig | None = None) -> ReportData:
    """Read whatever stages have run; a missing table just leaves its figures out."""
    data = ReportData(workdir, thresholds or FilterConfig())
    for name in TABLES:
        path = workdir.path(f"{name}.parquet")
        if path.exists():
            data.tables[name] = _read(path, _COLUMNS.get(name))
    train = workdir.path("train")
    if train.is_dir():
        for log_file in sorted(train.glob("*/log.jsonl")):
            data.train_logs[log_file.parent.name] = _jsonl(log_file)
    validation = workdir.path("validation.json")
    if validation.exists():
        data.validation = json.loads(validation.read_text(encoding="utf-8"))
    log.info("report data: tables %s, %d train logs", sorted(data.tables), len(data.train_logs))
    return data
