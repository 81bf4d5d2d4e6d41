"""Official split membership: VALOR's annotation files (written here in their published layouts)
decide exactly which clips VALOR-32K's parts and VALOR-1M hold."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from valor_data.errors import ValorError
from valor_data.ids import valor_id
from valor_data.shards.card import _membership
from valor_data.shards.verify import VerifyOptions, verify
from valor_data.split import SplitConfig, read_summary, run_split
from valor_data.table import CLIP_SCHEMA, clip_row, to_table, write_table
from valor_data.workdir import Workdir

SUBSETS = {"balanced_train": 40, "eval": 40, "unbalanced_train": 30}


def _video(subset: str, i: int) -> str:
    return f"{subset[:3]}{i:04d}xyz_"[:11]


def _rows() -> list[dict]:
    """Clips of three subsets; video ids are 11 characters like YouTube's."""
    return [clip_row(clip_id=f"{_video(subset, i)}_30000", source="audioset", subset=subset,
                     video_id=_video(subset, i), start_s=30.0, end_s=40.0, labels=[f"/m/0{i % 4}"])
            for subset, n in SUBSETS.items() for i in range(n)]


def _vid(subset: str, i: int) -> str:
    return valor_id(_video(subset, i), 30.0, 40.0)


@pytest.fixture()
def annotated(tmp_path):
    """A work dir (manifest, fetch and quality tables) and VALOR's files in their published layouts."""
    workdir = Workdir.create(tmp_path / "w")
    rows = _rows()
    write_table(to_table(rows, CLIP_SCHEMA), workdir.manifest)
    failed = {_vid("eval", 3).rsplit("_", 2)[0] + "_30000"}                       # fetch lost it
    rejected = {f"{_video('balanced_train', 5)}_30000"}                          # the filter rejected it
    pq.write_table(pa.table({"clip_id": [r["clip_id"] for r in rows],
                             "status": ["unavailable" if r["clip_id"] in failed else "ok" for r in rows]}),
                   workdir.path("fetch.parquet"))
    pq.write_table(pa.table({"clip_id": [r["clip_id"] for r in rows],
                             "verdict": ["reject" if r["clip_id"] in rejected else "keep" for r in rows],
                             "reasons": [["frozen"] if r["clip_id"] in rejected else [] for r in rows]}),
                   workdir.path("quality.parquet"))
    folder = tmp_path / "valor32k"
    folder.mkdir()
    # desc_*.json: the annotation release (a list of {video_id, desc}); a test clip absent from the manifest
    train = [_vid("balanced_train", i) for i in range(0, 30)]
    val = [_vid("balanced_train", i) for i in range(30, 36)]
    test = [_vid("eval", i) for i in range(0, 12)] + [valor_id("NotInManife", 0.0, 10.0)]
    for name, ids in (("desc_train.json", train), ("desc_val.json", val), ("desc_test.json", test)):
        (folder / name).write_text(json.dumps([{"video_id": v, "desc": f"caption of {v}"} for v in ids]))
    # pretrain_ids.json: what the official code's ids_path reads (a plain list)
    (folder / "pretrain_ids.json").write_text(json.dumps([_vid("unbalanced_train", i) for i in range(0, 20)]))
    return workdir, folder, {"valor32k-train": train, "valor32k-val": val, "valor32k-test": test}


def _split_sets(workdir: Workdir) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for row in pq.read_table(workdir.path("splits.parquet")).to_pylist():
        if row["split"]:
            out.setdefault(row["split"], set()).add(row["clip_id"])
    return out


def test_official_files_give_exactly_their_clips(annotated):
    from valor_data.split.official import discover

    workdir, folder, listed = annotated
    summary = run_split(workdir, SplitConfig(official=discover(folder)))
    sets = _split_sets(workdir)
    clip = {v: v.rsplit("_", 2)[0] + "_30000" for ids in listed.values() for v in ids}
    lost = {f"{_video('eval', 3)}_30000", f"{_video('balanced_train', 5)}_30000"}
    for name, ids in listed.items():
        want = {clip[v] for v in ids if not v.startswith("NotInManife")} - lost
        assert sets[name] == want, name                               # exactly, nothing drawn in to replace
    assert sets["valor1m"] == {f"{_video('unbalanced_train', i)}_30000" for i in range(20)}
    reasons = {r["clip_id"]: r["reason"] for r in pq.read_table(workdir.path("splits.parquet")).to_pylist()}
    assert reasons[f"{_video('eval', 20)}_30000"] == "not_in_official"
    assert reasons[f"{_video('unbalanced_train', 25)}_30000"] == "not_in_official"
    members = pq.read_table(workdir.path("splits_official.parquet")).to_pylist()
    state = {(m["split"], m["clip_id"]): (m["state"], m["reason"]) for m in members}
    assert state[("valor32k-test", "NotInManife_0")] == ("missing", None)
    assert state[("valor32k-test", f"{_video('eval', 3)}_30000")] == ("rejected", "fetch:unavailable")
    assert state[("valor32k-train", f"{_video('balanced_train', 5)}_30000")] == ("rejected", "filter:frozen")
    test = summary.official["splits"]["valor32k-test"]
    assert (test["listed"], test["in_split"], test["missing"], test["rejected"]) == \
        (13, 11, 1, {"fetch:unavailable": 1})
    assert read_summary(workdir).official == summary.official
    report = verify(workdir, VerifyOptions(splits_only=True))
    assert all(c.ok for c in report.checks), [(c.name, c.examples) for c in report.checks if not c.ok]
    assert "VALOR's official files, exactly" in _membership(summary.official)


def test_official_rules_never_remove_a_member_and_leaks_are_counted(annotated, tmp_path):
    """VALOR's own files put one video in train and test: both stay, the leak is counted, verify says so."""
    workdir, folder, listed = annotated
    rows = _rows() + [clip_row(clip_id=f"{_video('eval', 0)}_50000", source="audioset", subset="balanced_train",
                               video_id=_video("eval", 0), start_s=50.0, end_s=60.0, labels=["/m/01"])]
    write_table(to_table(rows, CLIP_SCHEMA), workdir.manifest)
    for name in ("fetch.parquet", "quality.parquet"):
        workdir.path(name).unlink()
    train = [*listed["valor32k-train"], valor_id(_video("eval", 0), 50.0, 60.0)]
    (folder / "desc_train.json").write_text(json.dumps([{"video_id": v, "desc": "x"} for v in train]))
    from valor_data.split.official import discover

    summary = run_split(workdir, SplitConfig(official=discover(folder)))
    sets = _split_sets(workdir)
    assert f"{_video('eval', 0)}_50000" in sets["valor32k-train"]
    assert f"{_video('eval', 0)}_30000" in sets["valor32k-test"]
    assert summary.official["leaks"] == 1
    checks = {c.name: c for c in verify(workdir, VerifyOptions(splits_only=True)).checks}
    assert checks["video_disjoint"].ok and "VALOR's own files" in checks["video_disjoint"].note


def test_without_official_files_the_pretraining_pool_is_decontaminated_and_the_card_says_drawn(annotated):
    workdir, _, _ = annotated
    summary = run_split(workdir, SplitConfig(parts={"valor32k-train": 50, "valor32k-val": 10, "valor32k-test": 10}))
    assert summary.official == {"membership": "drawn by seeded hash"}
    assert not workdir.path("splits_official.parquet").exists()
    assert "not comparable with the paper" in _membership(summary.official)


def test_config_refuses_partial_benchmark_files_and_a_clip_listed_twice(annotated, tmp_path):
    workdir, folder, _ = annotated
    with pytest.raises(ValueError, match="give every benchmark part's file"):
        SplitConfig(official={"valor32k-test": [str(folder / "desc_test.json")]})
    with pytest.raises(ValueError, match="not in this recipe"):
        SplitConfig(official={"valor32k-dev": [str(folder / "desc_test.json")]})
    cfg = SplitConfig(official={"valor32k-train": [str(folder / "desc_train.json")],
                                "valor32k-val": [str(folder / "desc_train.json")],
                                "valor32k-test": [str(folder / "desc_test.json")]})
    with pytest.raises(ValorError, match="desc_train.json .valor32k-train. and by .*desc_train.json .valor32k-val."):
        run_split(workdir, cfg)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"video_id": 7}]))
    with pytest.raises(ValorError, match="bad.json: item 0"):
        run_split(workdir, SplitConfig(official={"valor1m": [str(bad)]}))


def test_cli_valor_annotations_and_official(annotated):
    workdir, folder, _ = annotated
    out = subprocess.run([sys.executable, "-m", "valor_data.cli", "split", "-w", str(workdir.root),
                          "--valor-annotations", str(folder)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "official valor32k-test: 11 of 13 listed (1 missing, 1 rejected)" in out.stdout
    out = subprocess.run([sys.executable, "-m", "valor_data.cli", "split", "-w", str(workdir.root),
                          "--official", "valor32k-test"], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "expected SPLIT=FILE" in out.stderr
