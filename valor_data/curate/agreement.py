"""Learned agreement thresholds of the filter: ``W/scores.parquet`` (``valor-data score``) into its judgement.

Two optional thresholds of ``FilterConfig``, each a number or ``{percentile: P}`` of the
corpus (the P-th percentile of the scored clips' values, linear interpolation):

- ``min_av_score`` on ``av_score`` (the clip's audio against its own frames): below it,
  ``av_mismatch``;
- ``min_caption_score`` on ``AGREEMENT_METRIC`` (its best caption's MGA text-audio+video
  similarity): below it, ``caption_mismatch``.

``learned_subsets`` limits both to some subsets (e.g. the pretraining pool: the benchmark the
model was trained on scores high on its own clips). Without ``scores.parquet`` the thresholds
cannot be applied: configuring one is an error. A clip without a score (not scored, failed,
no caption) is not judged by them.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from valor_data.curate.config import FilterConfig
from valor_data.errors import ConfigError, ValorError
from valor_data.table import read_table
from valor_data.workdir import Workdir

SCORES_FILE = "scores.parquet"
AV_METRIC = "av_score"
AGREEMENT_METRIC = "tav_max"
THRESHOLDS = {"min_av_score": AV_METRIC, "min_caption_score": AGREEMENT_METRIC}
SCORE_COLUMNS = (AV_METRIC, AGREEMENT_METRIC, "tav_first", "tv_max", "ta_max", "loglik_max")


def configured(config: FilterConfig) -> list[str]:
    return [name for name in THRESHOLDS if getattr(config, name) is not None]


def read_scores(workdir: Workdir, config: FilterConfig) -> pa.Table | None:
    """``W/scores.parquet`` (ok rows, the score columns), None when absent; an error when a
    threshold is configured without it."""
    path = workdir.path(SCORES_FILE)
    if not path.exists():
        if configured(config):
            raise ValorError(f"filter: {', '.join(configured(config))} set but {path} does not exist: "
                             "run valor-data score first (or remove the thresholds)")
        return None
    table = read_table(path, columns=["clip_id", "status", *SCORE_COLUMNS])
    return table.filter(pc.equal(table["status"], "ok")).drop_columns(["status"])


def percentile(values: list[float], p: float) -> float:
    """The ``p``-th percentile (0..100, linear interpolation) of finite ``values``."""
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not finite:
        raise ValorError("no clip has a score to take a percentile of")
    return float(np.percentile(np.asarray(finite, dtype=np.float64), p))


def bound(value, values: list[float], name: str) -> float | None:
    """A configured threshold as a number (``{percentile: P}`` resolved over ``values``)."""
    if value is None or isinstance(value, int | float) and not isinstance(value, bool):
        return None if value is None else float(value)
    if isinstance(value, dict) and set(value) == {"percentile"} and 0 <= float(value["percentile"]) <= 100:
        return percentile(values, float(value["percentile"]))
    raise ConfigError(f"filter: {name} must be a number or {{percentile: 0..100}}, not {value!r}")


def resolved(config: FilterConfig, scores: pa.Table | None) -> FilterConfig:
    """``config`` with percentile thresholds turned into numbers over the corpus's scores."""
    if scores is None:
        return config
    numbers = {name: bound(getattr(config, name), scores.column(metric).to_pylist(), name)
               for name, metric in THRESHOLDS.items()}
    return dataclasses.replace(config, **numbers)


def with_scores(measured: pa.Table, scores: pa.Table | None) -> pa.Table:
    """``measured`` plus the score columns of each clip (null where it has none)."""
    if scores is None:
        return measured
    at = pc.index_in(measured["clip_id"], scores["clip_id"].combine_chunks())
    for name in SCORE_COLUMNS:
        measured = measured.append_column(name, scores[name].take(at).cast(pa.float64()))
    return measured
