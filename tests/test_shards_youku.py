"""The Youku-mPLUG recipe end to end on a small Chinese synthetic set: published splits, Chinese text."""

from __future__ import annotations

import json
import tarfile
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from test_shards_build import normalise

from valor_data.config import load_pipeline, load_section
from valor_data.manifest import build_youku
from valor_data.shards.build import build_shards
from valor_data.shards.config import ShardConfig
from valor_data.shards.verify import VerifyOptions, verify
from valor_data.split import SplitConfig, run_split
from valor_data.synth.corpus import SynthConfig, make_corpus
from valor_data.workdir import Workdir


def test_youku_published_splits_to_shards(tmp_path):
    corpus = tmp_path / "zh"
    make_corpus(corpus, SynthConfig(clips=14, lang="zh", source_seconds=(10, 10), seed=2, workers=2))
    workdir = Workdir.create(tmp_path / "w")
    build_youku(workdir, [(None, p) for p in sorted(corpus.glob("*.csv"))], "http://127.0.0.1:1")
    rows = pq.read_table(workdir.manifest).to_pylist()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda r: normalise(corpus / r["video_id"], None, None, workdir.media_path(r["clip_id"], "mp4"),
                                          workdir.media_path(r["clip_id"], "flac")), rows))
    pq.write_table(pa.table({"clip_id": [r["clip_id"] for r in rows], "status": ["ok"] * len(rows)}),
                   workdir.path("fetch.parquet"))
    pipeline = load_pipeline("pipelines/youku_mplug.yaml")
    summary = run_split(workdir, load_section(SplitConfig, pipeline, "split"))
    assert sum(summary.counts.values()) == len(rows) and summary.reasons == {}
    build_shards(workdir, load_section(ShardConfig, pipeline, "shards"), pipeline)
    out = workdir.path("shards")
    subsets = {r["subset"] for r in rows}
    for subset in subsets:
        doc = json.loads((out / f"{subset}.shards.json").read_text())
        with tarfile.open(out / doc["shardlist"][0]["url"]) as tar:
            texts = {m.name.split(".")[0]: tar.extractfile(m).read().decode("utf-8")
                     for m in tar.getmembers() if m.name.endswith(".txt")}
        captions = {r["clip_id"]: r["captions"][0] for r in rows if r["subset"] == subset}
        assert texts == captions and all("一个" in t for t in texts.values())   # byte for byte
    if "youku-captioning-test" in subsets:
        desc = json.loads((out / "desc_test.json").read_text(encoding="utf-8"))
        assert all(isinstance(d["desc"], list) and len(d["desc"]) == 2 for d in desc)
        ref = json.loads((out / "caption_ref_test.json").read_text(encoding="utf-8"))
        assert len(ref["annotations"]) == 2 * len(desc)
    card = (out / "README.md").read_text(encoding="utf-8")
    assert yaml.safe_load(card.split("---\n")[1])["language"] == ["zh"] and "Youku-mPLUG" in card
    chinese, english = card.split("\n## English\n")                  # the card in Chinese, then in English
    assert "## 中文说明" in chinese and "### 加载" in chinese and "版权" in chinese and "| 划分 |" in chinese
    assert "## Loading" in english and "## Licence" in english and "CSV's own file name" in english
    assert all(f"| {s} |" in chinese and f"| {s} |" in english for s in subsets)
    report = verify(workdir, VerifyOptions(full=True))
    assert report.ok, "\n".join(report.lines())
    assert "published" in next(c for c in report.checks if c.name == "label_distribution").note
