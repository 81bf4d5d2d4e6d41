"""The learned scores (``W/scores.parquet``) as pictures: their histograms with the filter's
thresholds, and a contact sheet of the lowest-scoring clips (a frame and the waveform each), so
that a person can see what the thresholds cut."""

from __future__ import annotations

import logging

import numpy as np
from matplotlib.figure import Figure

from valor_data.curate.agreement import THRESHOLDS, bound
from valor_data.errors import ConfigError, ValorError
from valor_data.report.contact import middle_frame
from valor_data.report.data import ReportData

log = logging.getLogger(__name__)

METRICS = {"av_score": "audio-video correspondence", "tav_max": "best caption vs audio+video (MGA)",
           "tv_max": "best caption vs video", "ta_max": "best caption vs audio",
           "loglik_max": "best caption's MGC log-likelihood / token"}
LOWEST = {"av_score": "lowest audio-video correspondence", "tav_max": "lowest caption agreement"}


def _threshold(data: ReportData, metric: str, values: list[float]) -> float | None:
    name = next((n for n, m in THRESHOLDS.items() if m == metric), None)
    try:
        return bound(getattr(data.thresholds, name), values, name) if name else None
    except (ConfigError, ValorError) as exc:
        log.info("no %s line: %s", metric, exc)
        return None


def score_histograms(data: ReportData) -> Figure | None:
    """One histogram per score over the scored clips, the filter's threshold drawn where set."""
    scores = data.table("scores")
    if scores is None:
        return None
    scores = scores[scores["status"] == "ok"]
    present = [m for m in METRICS if m in scores and scores[m].notna().any()]
    if not present:
        return None
    fig = Figure(figsize=(3.2 * len(present), 2.6), dpi=100)
    for ax, metric in zip(fig.subplots(1, len(present), squeeze=False)[0], present, strict=True):
        values = [float(v) for v in scores[metric].dropna()]
        ax.hist(values, bins=30, color="#4c72b0")
        line = _threshold(data, metric, values)
        if line is not None:
            ax.axvline(line, color="#c44e52", linestyle="--", label=f"threshold {line:.3g}")
            ax.legend(fontsize=6)
        ax.set_title(f"{metric}\n{METRICS[metric]}", fontsize=7)
        ax.tick_params(labelsize=6)
    fig.tight_layout()
    return fig


def _waveform(path) -> np.ndarray | None:
    try:
        import soundfile

        wave, _ = soundfile.read(str(path), dtype="float32", always_2d=True)
        return wave.mean(1)
    except (OSError, RuntimeError, ValueError) as exc:       # soundfile.LibsndfileError is a RuntimeError
        log.info("no waveform from %s: %s", path, exc)
        return None


def lowest_sheet(data: ReportData, per_row: int = 6) -> Figure | None:
    """For each of ``LOWEST``: its ``per_row`` lowest-scoring clips, a frame above the waveform."""
    scores = data.table("scores")
    if scores is None:
        return None
    rows = [(metric, scores[scores[metric].notna()].sort_values([metric, "clip_id"]).head(per_row))
            for metric in LOWEST if metric in scores]
    rows = [(metric, part) for metric, part in rows if len(part)]
    if not rows:
        return None
    fig = Figure(figsize=(2.2 * per_row, 3.4 * len(rows)), dpi=100)
    axes = fig.subplots(2 * len(rows), per_row, squeeze=False, gridspec_kw={"height_ratios": [3, 1] * len(rows)})
    for r, (metric, part) in enumerate(rows):
        for c in range(per_row):
            picture, sound = axes[2 * r][c], axes[2 * r + 1][c]
            picture.set_axis_off()
            sound.set_axis_off()
            if c >= len(part):
                continue
            clip_id, value = part["clip_id"].iloc[c], float(part[metric].iloc[c])
            frame = middle_frame(data.workdir.media_path(clip_id, "mp4"))
            if frame is not None:
                picture.imshow(frame)
            picture.set_title(f"{clip_id[:22]}\n{metric} {value:.3g}", fontsize=6)
            wave = _waveform(data.workdir.media_path(clip_id, "flac"))
            if wave is not None:
                sound.plot(wave, linewidth=0.3, color="#333333")
        axes[2 * r][0].text(-0.1, 0.5, LOWEST[metric], transform=axes[2 * r][0].transAxes, rotation=90,
                            ha="right", va="center", fontsize=7)
    fig.tight_layout()
    return fig
