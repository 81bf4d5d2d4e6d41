"""Score the filter on a labelled synthetic corpus (``valor-data synth make``).

``stage_as_fetched`` makes a work dir look as if the fetch stage had delivered the corpus
(manifest from the corpus's AudioSet CSVs, each file linked at ``W/media/..``, a
``fetch.parquet`` saying ``ok``), so the filter runs the same code path as on real data.
``confusion`` compares ``quality.parquet`` with ``truth.jsonl``: per defect class, how
many clips were rejected for a reason that names that defect.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from valor_data.ids import audioset_clip_id
from valor_data.manifest import build_audioset
from valor_data.sources.audioset import subset_from_filename
from valor_data.synth.corpus import read_truth
from valor_data.table import write_table
from valor_data.workdir import Workdir

# the reasons that correctly name each synthetic defect
EXPECTED = {
    "zero_bytes": {"empty_file"}, "html_page": {"not_media"},
    "truncated": {"truncated", "unreadable", "no_frames"},
    "corrupt": {"decode_errors", "truncated", "unreadable", "no_frames"},
    "no_audio": {"no_audio"}, "no_video": {"no_video"}, "black": {"black"}, "frozen": {"static"},
    "uniform": {"uniform"}, "silent": {"silent"}, "clipped_audio": {"clipped_audio"},
    "low_resolution": {"low_resolution"}, "low_fps": {"low_fps"}, "low_bitrate": {"low_bitrate"},
    "too_short": {"too_short"}, "duplicate_reencoded": {"duplicate"}, "duplicate_rescaled": {"duplicate"},
}


def stage_as_fetched(corpus: str | os.PathLike, workdir: Workdir) -> dict[str, dict]:
    """Manifest + media + fetch.parquet for a synthetic corpus; returns truth by clip_id."""
    corpus = Path(corpus)
    csvs = {subset_from_filename(p): p for p in sorted(corpus.glob("*_segments.csv"))}
    build_audioset(workdir, csvs, corpus / "class_labels_indices.csv", corpus / "ontology.json")
    truth = {}
    for clip in read_truth(corpus):
        clip_id = audioset_clip_id(clip["video_id"], clip["start_s"])
        target = workdir.media_path(clip_id, "mp4")     # the bytes keep their real container
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            try:
                os.link(corpus / clip["file"], target)
            except OSError:
                shutil.copyfile(corpus / clip["file"], target)
        truth[clip_id] = clip
    fetched = pa.table({"clip_id": pa.array(sorted(truth), pa.string()),
                        "status": pa.array(["ok"] * len(truth), pa.string()),
                        "error": pa.array([None] * len(truth), pa.string())})
    write_table(fetched, workdir.path("fetch.parquet"))
    return truth


@dataclass
class ClassScore:
    clips: int = 0
    rejected: int = 0
    named: int = 0                   # rejected with a reason that names the defect
    reasons: Counter = field(default_factory=Counter)

    @property
    def recall(self) -> float:
        return self.named / self.clips if self.clips else 0.0


def confusion(quality: pa.Table, truth: dict[str, dict]) -> dict[str, ClassScore]:
    """Per truth class (``clean`` and each defect): clips, rejected, named, reasons seen."""
    scores: dict[str, ClassScore] = {}
    by_id = {row["clip_id"]: row for row in quality.select(["clip_id", "verdict", "reasons", "dup_of"]).to_pylist()}
    for clip_id, clip in truth.items():
        row = by_id.get(clip_id, {"verdict": "missing", "reasons": ["not in quality.parquet"], "dup_of": None})
        score = scores.setdefault(clip["kind"], ClassScore())
        score.clips += 1
        score.rejected += row["verdict"] != "keep"
        score.reasons.update(row["reasons"] or ["(kept)"])
        expected = EXPECTED.get(clip["kind"], set())
        if expected & set(row["reasons"] or ()) and _dup_points_home(clip, row, truth):
            score.named += 1
    return scores


def _dup_points_home(clip: dict, row: dict, truth: dict[str, dict]) -> bool:
    """A rejected duplicate must name its own original as the clip kept in its place."""
    if not clip.get("duplicate_of"):
        return True
    kept = truth.get(row.get("dup_of") or "")
    return kept is not None and kept["video_id"] == clip["duplicate_of"]


def confusion_lines(scores: dict[str, ClassScore]) -> list[str]:
    """A markdown table: class, clips, rejected, recall of the named reason, reasons seen."""
    lines = ["| class | clips | rejected | named (recall) | reasons (clips) |", "|---|---:|---:|---:|---|"]
    for kind in ["clean"] + sorted(k for k in scores if k != "clean"):
        if kind not in scores:
            continue
        s = scores[kind]
        named = f"{s.clips - s.rejected} kept" if kind == "clean" else f"{s.named} ({s.recall:.2f})"
        seen = ", ".join(f"{r} {n}" for r, n in s.reasons.most_common())
        lines.append(f"| {kind} | {s.clips} | {s.rejected} | {named} | {seen} |")
    return lines
