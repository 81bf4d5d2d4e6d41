"""The filter stage end to end on a labelled synthetic corpus, run as if fetched.

200 clean clips of varied content, sizes and codecs (h264/mpeg4/vp9, aac/mp3/opus/vorbis,
mp4/mkv/webm) and 20 clips of each of the 17 defect classes. The corpus is made once per
module; the filter runs through ``run_filter`` (local process pool) exactly as the CLI does.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pytest

from valor_data.cli import main
from valor_data.curate import run
from valor_data.curate.analyze import MEASURE_SCHEMA, SIGNATURE_COLUMNS
from valor_data.curate.config import FilterConfig
from valor_data.synth import labelled
from valor_data.synth.corpus import SynthConfig, make_corpus, read_truth
from valor_data.synth.defects import DEFECTS
from valor_data.table import read_table, write_table
from valor_data.workdir import Workdir

pytestmark = pytest.mark.slow
CLEAN, PER_DEFECT = 200, 20
CONFIG = FilterConfig(timeout_s=600)        # generous: the test machine may be shared and slow


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("labelled")
    make_corpus(out, SynthConfig(clips=CLEAN, defects={d: PER_DEFECT for d in DEFECTS}, source_seconds=(5, 5),
                                 segment_seconds=5, formats="varied", short_fraction=0))
    return out


@pytest.fixture(scope="module")
def filtered(corpus, tmp_path_factory):
    workdir = Workdir.create(tmp_path_factory.mktemp("filtered"))
    truth = labelled.stage_as_fetched(corpus, workdir)
    summary = run.run_filter(workdir, CONFIG, workers=2)
    return workdir, truth, summary, read_table(workdir.path("quality.parquet"))


def test_every_defect_class_is_caught_and_no_clean_clip_is_rejected(filtered):
    _, truth, summary, quality = filtered
    assert summary.clips == CLEAN + PER_DEFECT * len(DEFECTS) == quality.num_rows
    scores = labelled.confusion(quality, truth)
    print("\n" + "\n".join(labelled.confusion_lines(scores)))        # the confusion table (pytest -s)
    assert scores["clean"].clips == CLEAN and scores["clean"].rejected == 0, scores["clean"].reasons
    for defect in DEFECTS:
        assert scores[defect].clips == PER_DEFECT
        assert scores[defect].recall >= 0.95, (defect, scores[defect].reasons)


def test_duplicate_groups_keep_the_original(filtered):
    workdir, truth, _, quality = filtered
    sigs = read_table(workdir.path("signatures.parquet"))
    assert sigs.schema.field("frame_hashes").type == pa.list_(pa.uint64())
    assert sigs.schema.field("dup_group").type == pa.int64() and sigs.schema.field("dup_keep").type == pa.bool_()
    rows = sigs.to_pylist()
    groups: dict[int, list[dict]] = {}
    for row in rows:
        if row["dup_group"] is None:
            assert row["dup_keep"] and row["dup_of"] is None
        else:
            groups.setdefault(row["dup_group"], []).append(row)
    for members in groups.values():
        kept = [m for m in members if m["dup_keep"]]
        assert len(kept) == 1
        assert truth[kept[0]["clip_id"]]["kind"] == "clean"          # the original, never a copy
        assert all(m["dup_of"] == kept[0]["clip_id"] for m in members if not m["dup_keep"])
    copies = {c for c, t in truth.items() if t["kind"].startswith("duplicate_")}
    assert {r["clip_id"] for r in rows if r["dup_of"]} == copies
    by_id = {r["clip_id"]: r for r in quality.to_pylist()}
    assert all(by_id[c]["verdict"] == "reject" and "duplicate" in by_id[c]["reasons"] for c in copies)


def test_quality_table_holds_every_metric_and_no_signature(filtered):
    _, _, _, quality = filtered
    metrics = [n for n in MEASURE_SCHEMA.names if n not in SIGNATURE_COLUMNS]
    assert quality.column_names == metrics + [*run.SOURCE_COLUMNS, "verdict", "reasons", "dup_group", "dup_of"]
    assert set(quality.column("status").to_pylist()) == {"ok"}
    for row in quality.to_pylist():
        assert row["verdict"] == ("reject" if row["reasons"] else "keep")


def test_rerun_measures_nothing_and_rejudges_with_new_thresholds(filtered):
    workdir, _, _, quality = filtered
    strict = run.run_filter(workdir, FilterConfig(timeout_s=600, min_motion=1e9), workers=2)
    assert strict.measured_now == 0
    judged = read_table(workdir.path("quality.parquet")).to_pylist()
    assert all("static" in r["reasons"] for r in judged
               if r["motion_score"] is not None and not {"black", "uniform", "truncated"} & set(r["reasons"]))
    again = run.run_filter(workdir, CONFIG, workers=2)
    assert again.measured_now == 0
    assert read_table(workdir.path("quality.parquet")).select(["clip_id", "verdict", "reasons"]).equals(
        quality.select(["clip_id", "verdict", "reasons"]))


def test_what_fetch_measured_of_the_source_is_judged_too(filtered, capsys):
    """A damaged or starved source comes out of fetch's re-encode looking clean; fetch.parquet's
    source columns keep the evidence, and judging them needs no media."""
    workdir, truth, _, quality = filtered
    path = workdir.path("fetch.parquet")
    plain = read_table(path)
    alone = {r["clip_id"] for r in quality.to_pylist() if r["dup_group"] is None}      # no group to re-rank
    damaged, starved = [c for c, t in sorted(truth.items()) if t["kind"] == "clean" and c in alone][:2]
    source = {damaged: (0.05, 3), starved: (0.001, 0)}
    ids = plain.column("clip_id").to_pylist()
    write_table(plain.append_column("source_bits_per_pixel", pa.array([source.get(c, (0.05, 0))[0] for c in ids]))
                .append_column("source_decode_errors", pa.array([source.get(c, (0.05, 0))[1] for c in ids],
                                                                pa.int32())), path)
    try:
        assert run.run_filter(workdir, CONFIG, workers=2).measured_now == 0
        judged = {r["clip_id"]: r for r in read_table(workdir.path("quality.parquet")).to_pylist()}
        assert judged[damaged]["reasons"] == ["decode_errors"] and judged[starved]["reasons"] == ["low_bitrate"]
        before = {r["clip_id"]: r["reasons"] for r in quality.to_pylist()}
        assert all(judged[c]["reasons"] == before[c] for c in before if c not in source)
        with pytest.raises(SystemExit):
            main(["filter", "-w", str(workdir.root), "--explain", starved])
        assert any("source_bits_per_pixel" in line and line.endswith("FAIL") for line in capsys.readouterr().out
                   .splitlines())
    finally:
        write_table(plain, path)
        run.run_filter(workdir, CONFIG, workers=2)


def test_explain_prints_metrics_against_thresholds(filtered, capsys):
    workdir, truth, _, _ = filtered
    frozen = next(c for c, t in sorted(truth.items()) if t["kind"] == "frozen")
    with pytest.raises(SystemExit) as done:
        main(["filter", "-w", str(workdir.root), "--explain", frozen])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{frozen}: reject (static)")
    assert any(line.strip().startswith("static") and line.endswith("FAIL") for line in out.splitlines())


def test_only_clips_fetched_ok_are_filtered(corpus, tmp_path):
    workdir = Workdir.create(tmp_path / "w")
    truth = labelled.stage_as_fetched(corpus, workdir)
    ids = sorted(truth)
    write_table(pa.table({"clip_id": ids, "status": ["ok" if i < 3 else "failed_permanent" for i in range(len(ids))],
                          "error": [None] * len(ids)}), workdir.path("fetch.parquet"))
    summary = run.run_filter(workdir, CONFIG, workers=1)
    assert summary.clips == summary.measured_now == 3
    assert read_table(workdir.path("quality.parquet")).column("clip_id").to_pylist() == ids[:3]


def test_a_folder_runs_on_ray_too(corpus, tmp_path):
    ray = pytest.importorskip("ray")
    folder = tmp_path / "folder"
    folder.mkdir()
    kinds = {"clean": "keep", "black": "black", "silent": "silent", "zero_bytes": "empty_file",
             "html_page": "not_media", "frozen": "static"}
    chosen = {}
    for clip in read_truth(corpus):
        if clip["kind"] in kinds and clip["kind"] not in chosen.values():
            name = f"{clip['kind']}{Path(clip['file']).suffix}"
            os.symlink(corpus / clip["file"], folder / name)
            chosen[name] = clip["kind"]
    workdir = Workdir.create(tmp_path / "w")
    try:
        summary = run.run_filter(workdir, CONFIG, media_dir=folder, distributor="ray", workers=2)
    finally:
        ray.shutdown()
    assert summary.clips == len(kinds)
    for row in read_table(workdir.path("quality.parquet")).to_pylist():
        expected = kinds[chosen[Path(row["path"]).name]]
        if expected == "keep":
            assert row["verdict"] == "keep", row
        else:
            assert expected in row["reasons"], row
