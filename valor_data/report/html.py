"""``valor-data report``: one self-contained HTML page (figures embedded) plus the PNGs."""

from __future__ import annotations

import base64
import html
import io
import logging
from pathlib import Path

import matplotlib.pyplot as plt
from tqdm import tqdm

from valor_data.curate.config import FilterConfig
from valor_data.report import contact, figures, scores
from valor_data.report.data import ReportData, load
from valor_data.workdir import Workdir, atomic_path

log = logging.getLogger(__name__)

STYLE = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;color:#222}
h1{font-size:1.6em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
img{max-width:100%;display:block}.missing{color:#888;font-style:italic}
table{border-collapse:collapse}td,th{padding:2px 10px;border-bottom:1px solid #eee;text-align:right}"""


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def _counts(data: ReportData) -> list[tuple[str, int]]:
    rows = [(f"{name}.parquet rows", len(table)) for name, table in data.tables.items()]
    if (splits := data.table("splits")) is not None:
        rows += [(f"split {k}", int(v)) for k, v in splits["split"].value_counts().sort_index().items()]
    return rows


def build_report(workdir: Workdir, thresholds: FilterConfig | None = None) -> Path:
    """Write ``W/report/index.html`` and ``W/report/<figure>.png``; return the HTML path."""
    data = load(workdir, thresholds)
    out = workdir.path("report")
    out.mkdir(parents=True, exist_ok=True)
    sections = []
    made = [*figures.FIGURES, ("contact", "Sampled frames per split", contact.contact_sheet)]
    if data.table("scores") is not None:      # learned curation is optional: its figures only when it ran
        made += [("scores", "Learned scores (valor-data score) and thresholds", scores.score_histograms),
                 ("lowest", "Lowest-scoring clips: what the learned thresholds cut", scores.lowest_sheet)]
    for name, title, make in tqdm(made, desc="report", unit="figure", leave=False):
        fig = make(data)
        if fig is None:
            sections.append(f"<h2>{html.escape(title)}</h2><p class=missing>not available: "
                            "the stage it describes has not run</p>")
            continue
        png = _png(fig)
        with atomic_path(out / f"{name}.png") as tmp:
            tmp.write_bytes(png)
        encoded = base64.b64encode(png).decode("ascii")
        sections.append(f"<h2>{html.escape(title)}</h2>"
                        f'<img id="fig-{name}" alt="{html.escape(title)}" src="data:image/png;base64,{encoded}">')
    counts = "".join(f"<tr><th>{html.escape(k)}</th><td>{v:,}</td></tr>" for k, v in _counts(data))
    page = (f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>valor-data report</title>"
            f"<style>{STYLE}</style></head><body><h1>valor-data report: {html.escape(str(workdir.root))}</h1>"
            f"<table>{counts}</table>{''.join(sections)}</body></html>\n")
    target = out / "index.html"
    with atomic_path(target) as tmp:
        tmp.write_text(page, encoding="utf-8")
    log.info("report written to %s", target)
    return target
