"""The split stage on hand-made clip tables and on the real AudioSet balanced + eval lists."""

from __future__ import annotations

import hashlib
import random
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from valor_data.config import load_pipeline, load_section
from valor_data.errors import ConfigError
from valor_data.manifest import build_audioset
from valor_data.shards.verify import VerifyOptions, verify
from valor_data.split import SplitConfig, read_summary, run_split
from valor_data.table import CLIP_SCHEMA, clip_row, to_table, write_table
from valor_data.workdir import Workdir

LABELS = [f"/m/0{c}" for c in "abcdefgh"]
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def ytid(rng: random.Random) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(11))


def audioset_rows(n: int, subset: str, seed: int, segments: int = 1) -> list[dict]:
    """``n`` videos of ``subset`` with ``segments`` clips each and skewed multi-labels."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        video = ytid(rng)
        labels = sorted({rng.choice(LABELS[:2])} | {rng.choice(LABELS) for _ in range(rng.randint(0, 2))})
        rows += [clip_row(clip_id=f"{video}_{s * 10000}", source="audioset", subset=subset, video_id=video,
                          start_s=s * 10.0, end_s=s * 10.0 + 10, labels=labels) for s in range(segments)]
    return rows


def workdir_with(tmp_path, rows: list[dict]) -> Workdir:
    workdir = Workdir.create(tmp_path / "w")
    write_table(to_table(rows, CLIP_SCHEMA), workdir.manifest)
    return workdir


def splits_of(workdir: Workdir) -> dict[str, dict]:
    return {r["clip_id"]: r for r in pq.read_table(workdir.path("splits.parquet")).to_pylist()}


def test_target_sizes_rule():
    cfg = SplitConfig()
    assert cfg.target_sizes(40_000) == {"valor32k-train": 25_000, "valor32k-val": 3_500, "valor32k-test": 3_500}
    assert cfg.target_sizes(32_000) == cfg.target_sizes(40_000)
    # 31,898 kept: val and test get floor(31,898 * 3,500 / 32,000) = 3,488, train the rest
    assert cfg.target_sizes(31_898) == {"valor32k-train": 24_922, "valor32k-val": 3_488, "valor32k-test": 3_488}
    assert cfg.target_sizes(0) == {"valor32k-train": 0, "valor32k-val": 0, "valor32k-test": 0}


def test_pipeline_sections_load():
    valor = load_section(SplitConfig, load_pipeline("pipelines/valor.yaml"), "split")
    youku = load_section(SplitConfig, load_pipeline("pipelines/youku_mplug.yaml"), "split")
    assert valor.split_names == ["valor1m", "valor32k-train", "valor32k-val", "valor32k-test"]
    assert youku.split_names[0] == "youku-pretrain" and "youku-retrieval-test" in youku.split_names
    with pytest.raises(ConfigError):
        load_section(SplitConfig, {"split": {"mode": "published"}}, "split")
    with pytest.raises(ConfigError):
        load_section(SplitConfig, {"split": {"benchmark_subsets": ["unbalanced_train"]}}, "split")


def test_grouped_stratified_exact_and_deterministic(tmp_path):
    rows = audioset_rows(300, "balanced_train", 1, segments=2) + audioset_rows(100, "eval", 2)
    rows += audioset_rows(50, "unbalanced_train", 3)
    cfg = SplitConfig(parts={"valor32k-train": 500, "valor32k-val": 100, "valor32k-test": 100})
    workdir = workdir_with(tmp_path, rows)
    summary = run_split(workdir, cfg)
    first = splits_of(workdir)
    assert summary.counts == {"valor1m": 50, "valor32k-train": 500, "valor32k-val": 100, "valor32k-test": 100}
    assert summary.targets == {"valor32k-train": 500, "valor32k-val": 100, "valor32k-test": 100}
    assert summary.reasons == {}
    by_video: dict[str, set] = {}
    for row in rows:
        by_video.setdefault(row["video_id"], set()).add(first[row["clip_id"]]["split"])
    assert all(len(s) == 1 for s in by_video.values())
    assert summary.label_deviation["label"] in LABELS
    assert verify(workdir, VerifyOptions(splits_only=True)).ok
    # row order does not matter; the seed does
    write_table(to_table(list(reversed(rows)), CLIP_SCHEMA), workdir.manifest)
    run_split(workdir, cfg)
    assert splits_of(workdir) == first
    run_split(workdir, SplitConfig(parts=cfg.parts, seed=1))
    moved = sum(splits_of(workdir)[c]["split"] != r["split"] for c, r in first.items())
    assert moved > 50


def test_losing_clips_moves_few_others(tmp_path):
    rows = audioset_rows(1200, "balanced_train", 4) + audioset_rows(400, "eval", 5)
    workdir = workdir_with(tmp_path, rows)
    run_split(workdir, SplitConfig())
    before = splits_of(workdir)
    lost = {r["clip_id"] for r in rows if int(hashlib.sha1(r["clip_id"].encode()).hexdigest(), 16) % 100 < 2}
    pq.write_table(pa.table({"clip_id": [r["clip_id"] for r in rows],
                             "status": ["unavailable" if r["clip_id"] in lost else "ok" for r in rows]}),
                   workdir.path("fetch.parquet"))
    run_split(workdir, SplitConfig())
    after = splits_of(workdir)
    moved = sum(after[c]["split"] != before[c]["split"] for c in before if c not in lost)
    assert all(after[c]["reason"] == "fetch:unavailable" for c in lost)
    assert moved <= 2 * len(lost), f"{moved} clips moved after losing {len(lost)}"


def test_more_clips_than_parts_are_not_selected(tmp_path):
    rows = audioset_rows(60, "balanced_train", 6)
    workdir = workdir_with(tmp_path, rows)
    summary = run_split(workdir, SplitConfig(parts={"valor32k-train": 30, "valor32k-val": 10, "valor32k-test": 10}))
    assert summary.counts["valor32k-train"] == 30 and summary.reasons == {"not_selected": 10}


def test_decontamination_and_duplicates(tmp_path):
    pretrain = audioset_rows(6, "unbalanced_train", 7)
    bench = audioset_rows(40, "balanced_train", 8)
    other = [clip_row(clip_id="x_1", source="urls", subset="urls", video_id="x")]
    same_video = dict(pretrain[5], clip_id=bench[0]["video_id"] + "_90000", video_id=bench[0]["video_id"],
                      start_s=90.0)
    workdir = workdir_with(tmp_path, pretrain + bench + other + [same_video])
    groups = [(pretrain[0], 1, True), (bench[1], 1, False),          # pretraining copy of a benchmark clip
              (pretrain[1], 2, False), (pretrain[2], 2, True),       # duplicates within pretraining
              (bench[2], 3, False), (bench[3], 3, True)]             # duplicates within the benchmark
    pq.write_table(pa.table({"clip_id": [r["clip_id"] for r, _, _ in groups], "dup_group": [g for _, g, _ in groups],
                             "dup_keep": [k for _, _, k in groups]}), workdir.path("signatures.parquet"))
    # the filter rejects every non-kept duplicate as "duplicate"; the split re-decides those per pool
    rejected = {r["clip_id"]: ["duplicate"] for r, _, keep in groups if not keep}
    rejected[bench[4]["clip_id"]] = ["silent_audio", "duplicate"]
    ids = [r["clip_id"] for r in pretrain + bench + [same_video]]
    pq.write_table(pa.table({"clip_id": ids, "verdict": ["reject" if c in rejected else "keep" for c in ids],
                             "reasons": [rejected.get(c, []) for c in ids]}), workdir.path("quality.parquet"))
    summary = run_split(workdir, SplitConfig(parts={"valor32k-train": 20, "valor32k-val": 5, "valor32k-test": 5}))
    result = splits_of(workdir)
    assert result[pretrain[0]["clip_id"]]["reason"] == "decontaminated:near_duplicate"
    assert result[bench[1]["clip_id"]]["split"].startswith("valor32k")
    assert result[pretrain[1]["clip_id"]]["reason"] == "duplicate" and result[pretrain[2]["clip_id"]]["split"]
    assert result[bench[2]["clip_id"]]["reason"] == "duplicate" and result[bench[3]["clip_id"]]["split"]
    assert result[bench[4]["clip_id"]]["reason"] == "filter:silent_audio"
    assert result[same_video["clip_id"]]["reason"] == "decontaminated:same_video"
    assert result["x_1"]["reason"] == "not_in_recipe"
    assert summary.decontaminated == [{"clip_id": pretrain[0]["clip_id"], "pool": "valor1m",
                                       "near": bench[1]["clip_id"]}]
    report = verify(workdir, VerifyOptions(splits_only=True))
    assert report.ok, "\n".join(report.lines())


def test_published_splits_keep_subsets(tmp_path):
    def youku(subset: str, file: str) -> dict:
        return clip_row(clip_id=f"{subset}_{file}".replace(".", "_"), source="youku", subset=subset,
                        video_id=file, captions=["一只猫"], language="zh")

    rows = [youku("youku-pretrain", f"p{i}.mp4") for i in range(5)]
    rows += [youku("youku-retrieval-train", "shared.mp4"), youku("youku-retrieval-test", "shared.mp4"),
             youku("youku-retrieval-train", "r1.mp4"), youku("youku-captioning-val", "c1.mp4"),
             youku("youku-pretrain", "c1.mp4")]
    workdir = workdir_with(tmp_path, rows)
    cfg = load_section(SplitConfig, load_pipeline("pipelines/youku_mplug.yaml"), "split")
    summary = run_split(workdir, cfg)
    result = splits_of(workdir)
    assert all(result[r["clip_id"]]["split"] in (None, r["subset"]) for r in rows)
    assert result["youku-retrieval-train_shared_mp4"]["reason"] == "decontaminated:same_video"
    assert result["youku-retrieval-test_shared_mp4"]["split"] == "youku-retrieval-test"
    assert result["youku-pretrain_c1_mp4"]["reason"] == "decontaminated:same_video"
    assert summary.counts["youku-pretrain"] == 5 and summary.label_deviation == {}
    assert verify(workdir, VerifyOptions(splits_only=True)).ok


def test_real_audioset_with_simulated_survival(shared_data, tmp_path):
    audioset = shared_data / "audioset"
    workdir = Workdir.create(tmp_path / "w")
    build_audioset(workdir, {s: audioset / f"{s}_segments.csv" for s in ("balanced_train", "eval")},
                   audioset / "class_labels_indices.csv", audioset / "ontology.json")
    ids = pq.read_table(workdir.manifest, columns=["clip_id"]).column(0).to_pylist()
    alive = [int(hashlib.sha256(c.encode()).hexdigest()[:8], 16) < 0.75 * 2**32 for c in ids]
    pq.write_table(pa.table({"clip_id": ids, "status": ["ok" if a else "unavailable" for a in alive]}),
                   workdir.path("fetch.parquet"))
    cmd = [sys.executable, "-m", "valor_data.cli", "split", "-w", str(workdir.root), "--pipeline",
           "pipelines/valor.yaml"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    summary = read_summary(workdir)
    kept = sum(alive)
    assert len(ids) == 42_531 and 31_000 < kept < 32_000
    val = kept * 3_500 // 32_000
    assert summary.counts == {"valor1m": 0, "valor32k-train": kept - 2 * val, "valor32k-val": val,
                              "valor32k-test": val}
    assert summary.reasons == {"fetch:unavailable": len(ids) - kept}
    deviation = summary.label_deviation
    assert 0 < deviation["max"] < 0.02 and deviation["label"].startswith("/")
    assert "largest deviation" in out and f"valor32k-val: {val:,}" in out
    report = verify(workdir, VerifyOptions(splits_only=True))
    assert report.ok, "\n".join(report.lines())
