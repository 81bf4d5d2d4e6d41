"""Youku-mPLUG end to end on a Chinese synthetic set, every stage real.

The published CSV layout (``pretrain.csv``, ``classification_*.csv`` with some empty labels and
some labels given as indices, ``retrieval_*.csv``, ``captioning_*.csv`` whose val/test captions
are list literals; file names in Chinese with spaces; titles with spaces, quotes, an emoji) plus
a ``sha256`` column, served from loopback with one file corrupted on the mirror, goes through
``valor-data fetch youku``, filter, split, build-shards, verify-splits and ``train --validate``
with ``pipelines/youku_mplug.yaml``. The clips are small (192x144, 10 fps, 11 s) and the
category is the clip's sound, so a classification head can learn it.
"""

from __future__ import annotations

import ast
import csv
import json
import logging
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from valor_data.cli import main
from valor_data.config import load_pipeline, load_section
from valor_data.curate.config import FilterConfig
from valor_data.curate.run import run_filter
from valor_data.shards.build import build_shards
from valor_data.shards.config import ShardConfig
from valor_data.shards.verify import VerifyOptions, verify
from valor_data.sources.youku import CATEGORIES
from valor_data.split import SplitConfig, run_split
from valor_data.synth.corpus import YOUKU_CATEGORY, SynthConfig, make_corpus
from valor_data.synth.server import LoopbackServer
from valor_data.workdir import Workdir

pytestmark = pytest.mark.slow
log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = ROOT / "pipelines" / "youku_mplug.yaml"
SHARES = {"pretrain": 1.0, "classification_train": 14.0, "classification_val": 0.5, "classification_test": 5.0,
          "retrieval_train": 0.5, "retrieval_test": 0.5, "captioning_train": 0.5, "captioning_val": 0.5,
          "captioning_test": 0.5}
DEFECTS = {"duplicate_reencoded": 1, "frozen": 1, "too_short": 1}
TRAIN = {"model": {"max_text_len": 32}, "steps": 60, "batch_size": 32, "lr": 0.001, "warmup_steps": 6,
         "workers": 2, "log_every": 10, "caption_samples": 8, "beam_size": 1}


def _cli(args: list[str]) -> int:
    try:
        main(args)
    except SystemExit as exc:
        return exc.code or 0
    return 0


@pytest.fixture(scope="module")
def youku(tmp_path_factory):
    """The corpus, served, fetched, filtered, split and sharded; times per stage."""
    root = tmp_path_factory.mktemp("youku-e2e")
    times, started = {}, time.monotonic()
    clips = make_corpus(root / "mirror", SynthConfig(clips=190, defects=DEFECTS, lang="zh", source_seconds=(11, 11),
                                                     size=(192, 144), fps=10.0, subsets=SHARES, checksums="sha256",
                                                     seed=3, workers=2))
    times["synth"] = time.monotonic() - started
    corrupted = next(c for c in clips if c.kind == "clean" and c.subset == "pretrain")
    with open(root / "mirror" / corrupted.file, "ab") as fh:     # the mirror's copy is not what the CSV hashed
        fh.write(b"\0" * 64)
    pipeline = load_pipeline(PIPELINE)
    workdir = Workdir.create(root / "w")
    csvs = sorted(str(p) for p in (root / "mirror").glob("*.csv"))
    with LoopbackServer(root / "mirror") as server:
        code = _cli(["fetch", "youku", *csvs, "--base-url", server.url, "-w", str(workdir.root),
                     "--pipeline", str(PIPELINE), "--no-progress"])
    assert code == 0
    times["fetch"] = time.monotonic() - started - sum(times.values())
    filtered = run_filter(workdir, load_section(FilterConfig, pipeline, "filter"))
    times["filter"] = time.monotonic() - started - sum(times.values())
    split = run_split(workdir, load_section(SplitConfig, pipeline, "split"))
    built = build_shards(workdir, load_section(ShardConfig, pipeline, "shards"), pipeline)
    times["split+shards"] = time.monotonic() - started - sum(times.values())
    report = verify(workdir, VerifyOptions(full=True))
    times["verify"] = time.monotonic() - started - sum(times.values())
    log.warning("youku e2e stage seconds: %s", {k: round(v, 1) for k, v in times.items()})
    return {"root": root, "workdir": workdir, "clips": clips, "corrupted": corrupted, "filtered": filtered,
            "split": split, "built": built, "report": report, "pipeline": pipeline, "csvs": csvs}


def _csv_texts(csvs: list[str]) -> dict[tuple[str, str], list[str]]:
    """(subset, file) -> the captions as the CSV cell holds them (a list literal read as a list)."""
    out = {}
    for path in csvs:
        stem = Path(path).stem
        with open(path, encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh):
                file = row.get("video_id:FILE") or row["clip_name:FILE"]
                cell = row.get("title") or row.get("caption") or row.get("golden_caption") or ""
                listed = stem.startswith("captioning") and not stem.endswith("train")
                out["youku-" + stem.replace("_", "-"), file] = ast.literal_eval(cell) if listed else [cell]
    return out


def test_fetch_keeps_the_csv_file_names_and_checks_checksums(youku):
    workdir, clips = youku["workdir"], youku["clips"]
    manifest = {r["clip_id"]: r for r in pq.read_table(workdir.manifest).to_pylist()}
    assert {r["video_id"] for r in manifest.values()} == {c.file for c in clips if not c.label_blank}
    assert all(" " in r["video_id"] and "片段" in r["video_id"] for r in manifest.values())
    assert all(r["start_s"] is None and r["end_s"] is None and r["checksum"].startswith("sha256:")
               for r in manifest.values())
    rejects = pq.read_table(workdir.rejects).to_pylist()
    assert len(rejects) == sum(c.label_blank for c in clips) > 0 and {r["reason"] for r in rejects} == {"no_label"}
    for row in manifest.values():
        if row["category"] is not None:
            assert CATEGORIES[row["category_index"]] == row["category"]
    fetched = {r["clip_id"]: r for r in pq.read_table(workdir.path("fetch.parquet")).to_pylist()}
    assert set(fetched) == set(manifest)
    bad = next(k for k, r in manifest.items() if r["video_id"] == youku["corrupted"].file)
    assert (fetched[bad]["status"], fetched[bad]["error_class"]) == ("failed_permanent", "ChecksumMismatch")
    assert all(r["status"] == "ok" and r["method"] == "download" for k, r in fetched.items() if k != bad)


def test_filter_removes_static_duplicate_and_too_short_clips(youku):
    workdir, clips = youku["workdir"], youku["clips"]
    kind = {c.file: c.kind for c in clips}
    video = {r["clip_id"]: r["video_id"] for r in pq.read_table(workdir.manifest).to_pylist()}
    quality = {video[r["clip_id"]]: r for r in pq.read_table(workdir.path("quality.parquet")).to_pylist()}
    expected = {"frozen": "static", "duplicate_reencoded": "duplicate", "too_short": "too_short"}
    for file, row in quality.items():
        if kind[file] in expected:
            assert row["verdict"] == "reject" and expected[kind[file]] in row["reasons"], (file, row["reasons"])
        else:
            assert row["verdict"] == "keep", (file, row["reasons"])
    cfg = load_section(FilterConfig, youku["pipeline"], "filter")
    assert (cfg.min_duration_s, cfg.max_duration_s, cfg.duplicates, cfg.min_motion) == (10.0, 120.0, True, 5.0)
    assert not cfg.needs_audio("youku-classification-test") and cfg.needs_audio("youku-pretrain")


def test_published_splits_shards_and_card(youku):
    workdir, report = youku["workdir"], youku["report"]
    assert report.ok, "\n".join(report.lines())
    splits = pq.read_table(workdir.path("splits.parquet")).to_pylist()
    manifest = {r["clip_id"]: r for r in pq.read_table(workdir.manifest).to_pylist()}
    assert all(r["split"] == manifest[r["clip_id"]]["subset"] for r in splits if r["split"])
    assert {r["split"] for r in splits if r["split"]} == {"youku-" + s.replace("_", "-") for s in SHARES}
    out = workdir.path("shards")
    import webdataset as wds

    doc = json.loads((out / "youku-classification-test.shards.json").read_text())
    samples = list(wds.WebDataset([str(out / s["url"]) for s in doc["shardlist"]], shardshuffle=False))
    assert samples and all(set(s) >= {"__key__", "mp4", "flac", "json", "txt"} for s in samples)
    for sample in samples:
        meta = json.loads(sample["json"])
        assert meta["category"] == YOUKU_CATEGORY[_sound(youku["clips"], meta["video_id"])]
        assert CATEGORIES.index(meta["category"]) == meta["category_index"] and meta["language"] == "zh"
    card = (out / "README.md").read_text(encoding="utf-8")
    front = yaml.safe_load(card.split("---\n")[1])
    assert {c["config_name"] for c in front["configs"]} == {r["split"] for r in splits if r["split"]}
    assert "## 中文说明" in card and "## English" in card


def _sound(clips, file: str) -> str:
    return next(c.content["sound"] for c in clips if c.file == file)


def _hugging_face(urls: list[str]):
    """The shards through ``datasets``' webdataset reader (media as raw bytes: no torchcodec here)."""
    from datasets import Value, load_dataset

    features = load_dataset("webdataset", data_files={"train": urls}, split="train", streaming=True).features
    features.update(mp4=Value("binary"), flac=Value("binary"))
    return load_dataset("webdataset", data_files={"train": urls}, split="train", streaming=True, features=features)


def test_text_is_byte_exact_from_csv_to_shard_to_hugging_face(youku):
    import webdataset as wds

    workdir, texts = youku["workdir"], _csv_texts(youku["csvs"])
    out = workdir.path("shards")
    seen = 0
    for listing in sorted(out.glob("*.shards.json")):
        urls = [str(out / s["url"]) for s in json.loads(listing.read_text())["shardlist"]]
        if not urls:                                   # a split whose every clip was filtered out
            continue
        members = {s["__key__"]: s["txt"] for s in wds.WebDataset(urls, shardshuffle=False)}
        for row in _hugging_face(urls):
            meta = row["json"]
            published = texts[meta["subset"], meta["video_id"]]            # the CSV cell, read as published
            assert members[row["__key__"]] == published[0].encode("utf-8"), meta["video_id"]   # the .txt bytes
            assert row["txt"].encode("utf-8") == published[0].encode("utf-8")              # what HF yields
            assert meta["captions"] == published                        # every caption (val/test: the list)
            assert row["mp4"][4:8] == b"ftyp" and row["flac"][:4] == b"fLaC"
            seen += 1
    assert seen == sum(youku["split"].counts.values()) > 150
    assert any(t[0] != t[0].strip() for t in texts.values()) and any("🎬" in t[0] for t in texts.values())


def test_train_validate_learns_the_categories_and_the_control_does_not(youku, tmp_path):
    pipeline = dict(youku["pipeline"])
    pipeline["train"] = {**pipeline["train"], **TRAIN}
    path = tmp_path / "youku.yaml"
    path.write_text(yaml.safe_dump(pipeline, allow_unicode=True), encoding="utf-8")
    workdir = youku["workdir"]
    started = time.monotonic()
    code = _cli(["train", "--validate", str(workdir.root), "--pipeline", str(path)])
    log.warning("youku e2e train --validate: %.1f s", time.monotonic() - started)
    report = json.loads(workdir.path("validation.json").read_text(encoding="utf-8"))
    cls, control = report["metrics"]["classification"], report["controls"]["captions"]["classification"]
    log.warning("youku validation: %s", json.dumps(
        {"top1": cls["top1"], "top5": cls["top5"], "chance": cls["chance"], "control_top1": control["top1"],
         "t2av": report["metrics"]["retrieval"]["tav"], "av2t": report["metrics"]["retrieval_c2t"]["tav"],
         "control_t2av": report["controls"]["captions"]["tav"], "reasons": report["reasons"]}, ensure_ascii=False))
    assert report["train_split"] == "youku-classification-train" and report["eval_split"] == "youku-classification-test"
    assert cls["classes"] == len(set(YOUKU_CATEGORY.values())) and cls["unseen"] == 0
    assert cls["top1"] >= 2.5 * cls["chance"]["top1"], report["reasons"]
    assert control["top1"] <= 2.0 * cls["chance"]["top1"], report["reasons"]
    assert set(report["metrics"]["retrieval_c2t"]) == {"tv", "ta", "tav"}
    # the verdict as a whole: this corpus's ~38 test clips are too few for its 1e-3 error rates (it says
    # so itself); what it must get right here is the exit code it reports
    assert (code == 0) == report["passed"], report["reasons"]
    beyond = [r for r in report["reasons"] if "R@10" in r and "deranged" not in r]
    assert len(beyond) == 4 and all(r.startswith("pass:") for r in beyond), beyond   # t2v, t2a, t2av, v2a
