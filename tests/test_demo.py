"""``valor-data demo --preset small``: the whole job offline, as ``make demo`` runs it, at test size.

The corpus is AudioSet-shaped (official CSV layout, ontology, VALOR captions) with one clip of
each of six defects; the real stages run on it from loopback: manifest, fetch (yt-dlp and one
ffmpeg cut), filter, split, build-shards, verify-splits, train --validate, report.
"""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from valor_data.cli import main
from valor_data.config import load_pipeline
from valor_data.demo import DEFAULT_PIPELINE, DemoConfig, load_demo_config, scaled_pipeline
from valor_data.errors import ConfigError

pytestmark = pytest.mark.slow

STAGES = ["corpus", "manifest", "fetch", "filter", "split", "build-shards", "verify-splits", "train --validate",
          "report"]


def _demo(workdir, *flags: str) -> int:
    try:
        main(["demo", str(workdir), "--preset", "small", *flags])
    except SystemExit as exc:
        return exc.code or 0
    return 0


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("demo") / "w"
    code = _demo(workdir)
    sums = (workdir / "shards" / "SHA256SUMS").read_bytes()
    return workdir, code, sums


def test_demo_runs_every_stage_and_records_it(demo, capsys):
    workdir, code, _ = demo
    assert code == 0
    summary = json.loads((workdir / "demo.json").read_text(encoding="utf-8"))
    assert summary["ok"] and summary["verified"]
    assert [s["name"] for s in summary["stages"]] == STAGES
    assert all(s["lines"] and s["wall_s"] >= 0 for s in summary["stages"])
    validation = json.loads((workdir / "validation.json").read_text(encoding="utf-8"))
    assert summary["validation_passed"] == validation["passed"]          # run and reported (not required here)
    assert validation["train_split"] == "valor32k-train" and validation["eval_split"] == "valor32k-test"


def test_every_clip_ends_in_one_state_with_its_defect_caught(demo):
    workdir, _, _ = demo
    truth = {c["video_id"]: c for c in map(json.loads, (workdir / "corpus" / "truth.jsonl").read_text().splitlines())}
    manifest = {r["clip_id"]: r for r in pq.read_table(workdir / "manifest.parquet").to_pylist()}
    assert {r["video_id"] for r in manifest.values()} == set(truth)
    assert all(r["captions"] and r["labels"] for r in manifest.values())     # VALOR captions and ontology labels
    fetched = {r["clip_id"]: r for r in pq.read_table(workdir / "fetch.parquet").to_pylist()}
    quality = {r["clip_id"]: r for r in pq.read_table(workdir / "quality.parquet").to_pylist()}
    splits = {r["clip_id"]: r for r in pq.read_table(workdir / "splits.parquet").to_pylist()}
    assert set(fetched) == set(splits) == set(manifest)
    duplicated = {c["duplicate_of"] for c in truth.values() if c["duplicate_of"]}
    for clip_id, row in manifest.items():
        truth_of = truth[row["video_id"]]
        kind = truth_of["kind"]
        if kind in ("zero_bytes", "html_page"):                        # broken downloads stop at fetch
            assert fetched[clip_id]["status"] == "failed_permanent" and clip_id not in quality, kind
            assert splits[clip_id]["split"] is None
            continue
        if kind == "corrupt" and fetched[clip_id]["status"] == "failed_permanent":   # damage that cuts it short
            continue
        assert fetched[clip_id]["status"] == "ok", (kind, fetched[clip_id]["error"])
        verdict = quality[clip_id]
        if kind == "corrupt":                           # re-encoded clean-looking: fetch kept the evidence
            assert fetched[clip_id]["source_decode_errors"] > 0
            assert verdict["verdict"] == "reject" and "decode_errors" in verdict["reasons"]
        elif kind == "low_bitrate":                     # re-encoded at CRF 23: only the source's bitrate tells
            assert verdict["verdict"] == "reject" and verdict["reasons"] == ["low_bitrate"]
            assert verdict["source_bits_per_pixel"] < 0.005
        elif kind == "black":
            assert verdict["verdict"] == "reject" and "black" in verdict["reasons"]
        elif kind == "duplicate_reencoded":            # the pair is one group; one of the two is kept
            original = quality[next(c for c, r in manifest.items() if r["video_id"] == truth_of["duplicate_of"])]
            assert verdict["dup_group"] is not None and verdict["dup_group"] == original["dup_group"]
            assert sorted(["duplicate" in verdict["reasons"], "duplicate" in original["reasons"]]) == [False, True]
        else:                                           # clean; an original may give way to its copy
            allowed = ([], ["duplicate"]) if truth_of["video_id"] in duplicated else ([],)
            assert verdict["reasons"] in allowed, (kind, verdict["reasons"])
    kinds = {c["kind"] for c in truth.values()}
    assert kinds == {"clean", "zero_bytes", "html_page", "corrupt", "low_bitrate", "black", "duplicate_reencoded"}


def test_shards_splits_and_report_are_there(demo):
    workdir, _, _ = demo
    splits = {r["split"] for r in pq.read_table(workdir / "splits.parquet").to_pylist() if r["split"]}
    assert splits == {"valor1m", "valor32k-train", "valor32k-val", "valor32k-test"}
    for split in splits:
        listing = json.loads((workdir / "shards" / f"{split}.shards.json").read_text())
        assert listing["shardlist"] and all((workdir / "shards" / s["url"]).is_file() for s in listing["shardlist"])
    assert (workdir / "shards" / "README.md").is_file() and (workdir / "shards" / "desc_test.json").is_file()
    page = (workdir / "report" / "index.html").read_text(encoding="utf-8")
    for name in ("funnel", "rejections", "fetch", "media", "quality", "labels", "captions", "duplicates",
                 "training", "validation", "contact"):
        assert (workdir / "report" / f"{name}.png").stat().st_size > 1000, name
        assert f'id="fig-{name}"' in page
    assert "not available" not in page                  # every stage ran, so every figure is drawn


def test_a_rerun_resumes_to_identical_shards_and_other_settings_are_refused(demo, capsys):
    workdir, _, sums = demo
    assert _demo(workdir) == 0
    assert (workdir / "shards" / "SHA256SUMS").read_bytes() == sums
    assert "using the existing" in capsys.readouterr().out          # the manifest was not rebuilt
    with pytest.raises(ConfigError, match="other settings"):
        from valor_data.demo import run_demo
        from valor_data.workdir import Workdir

        spec = load_pipeline(DEFAULT_PIPELINE)
        run_demo(Workdir.create(workdir), load_demo_config(spec, "small", {"clips": 41}), spec, echo=lambda _: None)


def test_demo_config_scales_the_pipeline():
    spec = load_pipeline(DEFAULT_PIPELINE)
    full = load_demo_config(spec)
    assert full.clips == 300 and sum(full.defects.values()) == round(300 * 0.1 / 0.9)
    small = load_demo_config(spec, "small", {"seed": 4, "clips": None})
    assert small.seed == 4 and small.clips == 40 and small.defects == {k: 1 for k in small.defect_kinds}
    scaled = scaled_pipeline(spec, small)
    assert scaled["split"]["parts"]["valor32k-test"] == 6 and scaled["train"]["steps"] == 6
    assert spec["train"]["steps"] == 150                 # the pipeline itself is untouched
    with pytest.raises(ValueError):
        DemoConfig(defect_share=1.0)
    with pytest.raises(ConfigError):
        load_demo_config(spec, "huge")
