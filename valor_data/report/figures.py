"""The report's figures: each function takes the report data and returns a Figure, or None.

None means the stage the figure is about has not run; the page says so instead of
showing an empty plot.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the headless backend)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from valor_data.report.data import ReportData  # noqa: E402

BENCHMARK_ORDER = ("valor32k-train", "valor32k-val", "valor32k-test")


def _figure(width: float = 7.0, height: float = 3.6) -> tuple[Figure, plt.Axes]:
    fig, ax = plt.subplots(figsize=(width, height), dpi=100)
    return fig, ax


def _barh(ax: plt.Axes, counts: Counter | pd.Series, title: str, top: int = 15) -> None:
    items = Counter(dict(counts)).most_common(top)[::-1]
    ax.barh([str(k) for k, _ in items], [v for _, v in items], color="#4a78b0")
    for i, (_, value) in enumerate(items):
        ax.text(value, i, f" {value:,}", va="center", fontsize=8)
    ax.set_title(title)
    ax.set_xlabel("clips")


def _numeric(table: pd.DataFrame, column: str) -> pd.Series:
    """A column as numbers without gaps (empty when the table lacks it)."""
    if column not in table:
        return pd.Series(dtype=float)
    return pd.to_numeric(table[column], errors="coerce").dropna()


def funnel(data: ReportData) -> Figure | None:
    """Clips at each stage: manifest -> fetched -> kept -> each split."""
    manifest = data.table("manifest")
    if manifest is None:
        return None
    steps = [("manifest", len(manifest))]
    rejects = data.table("rejects")
    if rejects is not None:
        steps.insert(0, ("metadata rows", len(manifest) + len(rejects)))
    fetch = data.table("fetch")
    if fetch is not None:
        steps.append(("fetched", int((fetch["status"] == "ok").sum())))
    quality = data.table("quality")
    if quality is not None:
        steps.append(("kept by filter", int((quality["verdict"] == "keep").sum())))
    splits = data.table("splits")
    if splits is not None:
        steps += [(f"split {name}", int(n)) for name, n in splits["split"].value_counts().sort_index().items()]
    fig, ax = _figure(7, 0.45 * len(steps) + 1.2)
    labels, values = zip(*steps[::-1], strict=True)
    ax.barh(labels, values, color="#3c8d5a")
    for i, value in enumerate(values):
        ax.text(value, i, f" {value:,}", va="center", fontsize=8)
    ax.set_title("From manifest to splits")
    ax.set_xlabel("clips")
    return fig


def rejection_reasons(data: ReportData) -> Figure | None:
    """Why clips were dropped: manifest rejects, fetch failures, filter reasons, split reasons."""
    counts: Counter = Counter()
    if (rejects := data.table("rejects")) is not None:
        counts.update(f"manifest: {r}" for r in rejects["reason"])
    if (fetch := data.table("fetch")) is not None:
        counts.update(f"fetch: {s}" for s in fetch["status"] if s != "ok")
    if (quality := data.table("quality")) is not None:
        counts.update(f"filter: {r}" for reasons in quality["reasons"] for r in reasons)
    if (splits := data.table("splits")) is not None and "reason" in splits:
        counts.update(f"split: {r}" for r in splits["reason"].dropna()
                      if not r.startswith(("fetch:", "filter:")))
    if not counts:
        return None
    fig, ax = _figure(7, 0.3 * min(len(counts), 20) + 1.4)
    _barh(ax, counts, "Rejection reasons (a filter clip may have several)", top=20)
    return fig


def fetch_outcomes(data: ReportData) -> Figure | None:
    """Fetch statuses and error classes."""
    fetch = data.table("fetch")
    if fetch is None:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4), dpi=100)
    _barh(left, fetch["status"].value_counts(), "Fetch outcome")
    errors = fetch["error_class"].dropna() if "error_class" in fetch else pd.Series(dtype=str)
    if len(errors):
        _barh(right, errors.value_counts(), "Error classes")
    else:
        right.text(0.5, 0.5, "no errors", ha="center", va="center")
        right.set_axis_off()
    fig.tight_layout()
    return fig


def media_histograms(data: ReportData) -> Figure | None:
    """Duration, short side, fps and video bitrate of the clips the filter measured."""
    quality = data.table("quality")
    if quality is None:
        return None
    panels = [("duration_s", "duration (s)"), ("short_side", "short side (px)"), ("fps", "frames per second"),
              ("video_bitrate", "video bitrate (kbit/s)")]
    fig, axes = plt.subplots(1, 4, figsize=(12, 3), dpi=100)
    for ax, (column, label) in zip(axes, panels, strict=True):
        values = _numeric(quality, column)
        if column == "video_bitrate":
            values = values / 1000
        ax.hist(values, bins=30, color="#8a5ab0")
        ax.set_title(label, fontsize=10)
    fig.tight_layout()
    return fig


# metric column -> (threshold field of FilterConfig, label)
QUALITY_METRICS = [
    ("black_fraction", "max_black_fraction", "black frames (fraction)"),
    ("uniform_fraction", "max_uniform_fraction", "uniform frames (fraction)"),
    ("motion_score", "min_motion", "motion score"),
    ("bits_per_pixel", "min_bits_per_pixel", "bits per pixel"),
    ("silent_fraction", "max_silent_fraction", "silent windows (fraction)"),
    ("clipped_fraction", "max_clipped_fraction", "clipped samples (fraction)"),
]


def quality_metrics(data: ReportData) -> Figure | None:
    """Each quality metric's distribution with the threshold that rejects drawn on it."""
    quality = data.table("quality")
    if quality is None:
        return None
    thresholds = data.thresholds
    fig, axes = plt.subplots(2, 3, figsize=(11, 5.5), dpi=100)
    for ax, (column, field, label) in zip(axes.flat, QUALITY_METRICS, strict=True):
        ax.hist(_numeric(quality, column), bins=40, color="#b07a3c")
        ax.axvline(getattr(thresholds, field), color="#c0392b", linestyle="--", label=f"{field}")
        ax.set_title(label, fontsize=10)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def label_distribution(data: ReportData, top: int = 15) -> Figure | None:
    """Share of clips per label in each benchmark split (the most common labels)."""
    manifest, splits = data.table("manifest"), data.table("splits")
    if manifest is None or splits is None:
        return None
    joined = splits.dropna(subset=["split"]).merge(manifest[["clip_id", "label_names"]], on="clip_id")
    present = [s for s in BENCHMARK_ORDER if s in set(joined["split"])] or sorted(set(joined["split"]))[:4]
    if not present:
        return None
    shares = {}
    for split in present:
        part = joined[joined["split"] == split]
        counts = Counter(n for names in part["label_names"] for n in names)
        shares[split] = {k: v / max(len(part), 1) for k, v in counts.items()}
    overall = Counter()
    for share in shares.values():
        overall.update(share)
    labels = [k for k, _ in overall.most_common(top)]
    if not labels:
        return None
    fig, ax = _figure(10, 3.8)
    width = 0.8 / len(present)
    x = np.arange(len(labels))
    for i, split in enumerate(present):
        ax.bar(x + i * width, [shares[split].get(k, 0) for k in labels], width, label=split)
    ax.set_xticks(x + 0.4 - width / 2, [k[:18] for k in labels], rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("share of clips")
    ax.set_title("Label distribution per split")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def caption_lengths(data: ReportData) -> Figure | None:
    """Caption length in words (characters for Chinese)."""
    manifest = data.table("manifest")
    if manifest is None:
        return None
    lengths = [len(c) if lang == "zh" else len(c.split())
               for caps, lang in zip(manifest["captions"], manifest["language"], strict=True) for c in caps]
    if not lengths:
        return None
    fig, ax = _figure(6, 3)
    ax.hist(lengths, bins=min(40, max(5, len(set(lengths)))), color="#2d7f8f")
    ax.set_title(f"Caption length ({len(lengths):,} captions)")
    ax.set_xlabel("words (characters for Chinese)")
    return fig


def duplicate_groups(data: ReportData) -> Figure | None:
    """How big the near-duplicate groups are."""
    signatures = data.table("signatures")
    if signatures is None or signatures["dup_group"].isna().all():
        return None
    sizes = signatures["dup_group"].dropna().value_counts()
    fig, ax = _figure(6, 3)
    counts = sizes.value_counts().sort_index()
    ax.bar(counts.index.astype(str), counts.values, color="#7f2d5a")
    ax.set_title(f"{len(sizes):,} near-duplicate groups ({int(sizes.sum() - len(sizes)):,} copies dropped)")
    ax.set_xlabel("clips in the group")
    ax.set_ylabel("groups")
    return fig


def training_curves(data: ReportData) -> Figure | None:
    """Loss per step of every training run."""
    if not data.train_logs:
        return None
    fig, ax = _figure(7, 3.4)
    for name, records in sorted(data.train_logs.items()):
        steps = [r["step"] for r in records if "loss" in r]
        ax.plot(steps, [r["loss"] for r in records if "loss" in r], marker=".", label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (1.5 MGA + MGC)")
    ax.set_title("Training loss")
    ax.legend(fontsize=8)
    return fig


def validation_metrics(data: ReportData) -> Figure | None:
    """Text-to-clip recall of the trained model and of the control with deranged captions, against chance."""
    validation = data.validation
    if not validation or not validation.get("metrics"):
        return None
    trained = validation["metrics"]["retrieval"]
    control = (validation.get("controls") or {}).get("captions", {})
    chance = validation["metrics"]["chance"]
    bars = [(group, k) for group in sorted(trained) for k in ("r1", "r5", "r10")]
    fig, ax = _figure(9, 3.6)
    x = np.arange(len(bars))
    ax.bar(x - 0.2, [trained[g][k] for g, k in bars], 0.4, label="trained", color="#3c8d5a")
    ax.bar(x + 0.2, [control.get(g, {}).get(k, 0.0) for g, k in bars], 0.4, label="captions deranged",
           color="#999999")
    for i, (_, k) in enumerate(bars):
        ax.hlines(chance[k], i - 0.45, i + 0.45, colors="#c0392b", linestyles="--",
                  label="chance" if i == 0 else None)
    ax.set_xticks(x, [f"t2{g} {k.upper()}" for g, k in bars], rotation=45, ha="right", fontsize=8)
    verdict = "PASSED" if validation.get("passed") else "FAILED"
    ax.set_title(f"Validation on {validation.get('eval_split')}: {verdict}")
    ax.set_ylabel("recall")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


FIGURES: list[tuple[str, str, Callable[[ReportData], Figure | None]]] = [
    ("funnel", "Funnel", funnel),
    ("rejections", "Rejection reasons", rejection_reasons),
    ("fetch", "Fetch outcomes", fetch_outcomes),
    ("media", "Clip duration, resolution, frame rate and bitrate", media_histograms),
    ("quality", "Quality metrics and thresholds", quality_metrics),
    ("labels", "Label distribution per split", label_distribution),
    ("captions", "Caption lengths", caption_lengths),
    ("duplicates", "Near-duplicate groups", duplicate_groups),
    ("training", "Training loss", training_curves),
    ("validation", "Validation metrics against chance", validation_metrics),
]
