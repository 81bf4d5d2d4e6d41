"""A contact sheet: the middle frame of a few clips per split, captioned."""

from __future__ import annotations

import logging

import av
import numpy as np
from matplotlib.figure import Figure

from valor_data.report.data import ReportData

log = logging.getLogger(__name__)


def middle_frame(path) -> np.ndarray | None:
    """The frame nearest the middle of the clip as RGB, or None when it cannot be read."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            if container.duration:
                container.seek(container.duration // 2, backward=True)
            for frame in container.decode(stream):
                return frame.to_ndarray(format="rgb24")
    except (av.FFmpegError, IndexError, OSError) as exc:
        log.info("no frame from %s: %s", path, exc)
    return None


def contact_sheet(data: ReportData, per_split: int = 6) -> Figure | None:
    """Rows of splits, columns of sampled clips (the same clips on every run)."""
    splits, manifest = data.table("splits"), data.table("manifest")
    if splits is None or manifest is None:
        return None
    captions = dict(zip(manifest["clip_id"], manifest["captions"], strict=True))
    rows = []
    for split, part in sorted(splits.dropna(subset=["split"]).groupby("split")):
        ids = sorted(part["clip_id"])[:: max(1, len(part) // per_split)][:per_split]
        rows.append((split, ids))
    if not rows:
        return None
    fig = Figure(figsize=(2.2 * per_split, 2.0 * len(rows)), dpi=100)
    axes = fig.subplots(len(rows), per_split, squeeze=False)
    for r, (split, ids) in enumerate(rows):
        for c in range(per_split):
            ax = axes[r][c]
            ax.set_axis_off()
            if c >= len(ids):
                continue
            frame = middle_frame(data.workdir.media_path(ids[c], "mp4"))
            if frame is not None:
                ax.imshow(frame)
            caption = (list(captions.get(ids[c], [])) or [ids[c]])[0]
            ax.set_title(caption[:34] + ("…" if len(caption) > 34 else ""), fontsize=6)
        axes[r][0].text(-0.1, 0.5, split, transform=axes[r][0].transAxes, rotation=90, ha="right",
                        va="center", fontsize=8)
    fig.tight_layout()
    return fig
