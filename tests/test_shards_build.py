"""build-shards on a small synthetic work dir: layout, members, reproducible bytes, resume.

The work dir is made without the fetch and filter stages: synthetic clips, an AudioSet
manifest built from the synth CSVs, media normalised with one ffmpeg call per clip, and
hand-written fetch/quality tables (two fetch failures, one filter reject). Other test
modules import ``built_workdir`` and ``copy_workdir`` from here.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from valor_data.manifest import build_audioset
from valor_data.media.ffmpeg import run_ffmpeg
from valor_data.shards.build import build_shards
from valor_data.shards.config import ShardConfig
from valor_data.shards.samples import JSON_FIELDS, MEMBERS
from valor_data.split import SplitConfig, run_split
from valor_data.synth.corpus import SynthConfig, make_corpus, read_truth
from valor_data.workdir import Workdir

PARTS = {"valor32k-train": 12, "valor32k-val": 4, "valor32k-test": 4}
SHARDS = ShardConfig(max_bytes=2_500_000, workers=2)
FAILED = 2            # clips whose fetch "failed"
_CACHE: dict[str, Path] = {}


def normalise(source: Path, start: float | None, end: float | None, mp4: Path, flac: Path) -> None:
    """What fetch will produce: [start, end] as H.264/AAC mp4 (short side <= 360) and 16 kHz mono flac."""
    mp4.parent.mkdir(parents=True, exist_ok=True)
    cut = ["-ss", start, "-to", end] if start is not None else []
    run_ffmpeg(["-y", *cut, "-i", source,
                "-map", "0:v", "-map", "0:a", "-vf", "scale=-2:'min(360,ih)'", "-c:v", "libx264",
                "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-threads", "1", mp4,
                "-map", "0:a", "-ac", "1", "-ar", "16000", "-c:a", "flac", flac])


def make_workdir(root: Path) -> Path:
    """A work dir holding manifest, media, fetch.parquet, quality.parquet, splits and shards."""
    corpus = root / "corpus"
    make_corpus(corpus, SynthConfig(clips=36, source_seconds=(10, 10), seed=5, workers=2,
                                    subsets={"unbalanced_train": 2, "balanced_train": 2, "eval": 1}))
    workdir = Workdir.create(root / "w")
    csvs = {s: corpus / f"{s}_segments.csv" for s in ("unbalanced_train", "balanced_train", "eval")}
    build_audioset(workdir, csvs, corpus / "class_labels_indices.csv", corpus / "ontology.json",
                   [corpus / "valor_captions.json"])
    files = {c["video_id"]: corpus / c["file"] for c in read_truth(corpus)}
    rows = pq.read_table(workdir.manifest).to_pylist()
    failed = {r["clip_id"] for r in rows[:FAILED]}
    fetched = [r for r in rows if r["clip_id"] not in failed]
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda r: normalise(files[r["video_id"]], r["start_s"], r["end_s"],
                                          workdir.media_path(r["clip_id"], "mp4"),
                                          workdir.media_path(r["clip_id"], "flac")), fetched))
    ids = [r["clip_id"] for r in rows]
    pq.write_table(pa.table({"clip_id": ids, "status": ["failed_permanent" if c in failed else "ok" for c in ids],
                             "error": ["HTTP 404" if c in failed else None for c in ids]}),
                   workdir.path("fetch.parquet"))
    kept = [r["clip_id"] for r in fetched]
    pq.write_table(pa.table({"clip_id": kept, "verdict": ["reject"] + ["keep"] * (len(kept) - 1),
                             "reasons": [["silent_audio"]] + [[]] * (len(kept) - 1),
                             "loudness_db": [-60.0] + [-20.5] * (len(kept) - 1),
                             "motion": [float("nan")] + [0.25] * (len(kept) - 1)}),
                   workdir.path("quality.parquet"))
    run_split(workdir, SplitConfig(parts=PARTS))
    build_shards(workdir, SHARDS)
    return workdir.root


@pytest.fixture(scope="session")
def built_workdir(tmp_path_factory) -> Path:
    """The built work dir (made once per test session; treat it as read-only)."""
    if "w" not in _CACHE:
        _CACHE["w"] = make_workdir(tmp_path_factory.mktemp("shards"))
    return _CACHE["w"]


def copy_workdir(src: Path, dst: Path) -> Workdir:
    """A private copy (media mtimes kept, so its shard plan still matches)."""
    shutil.copytree(src, dst, copy_function=shutil.copy2)
    return Workdir(dst.resolve())


def shard_hashes(root: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((root / "shards").glob("*.tar"))}


def test_layout_lists_and_index(built_workdir):
    out = built_workdir / "shards"
    splits = pq.read_table(built_workdir / "splits.parquet").to_pylist()
    per_split = {s: sorted(r["clip_id"] for r in splits if r["split"] == s) for s in ["valor1m", *PARTS]}
    index = pq.read_table(out / "index.parquet").to_pylist()
    sums = dict(line.split("  ")[::-1] for line in (out / "SHA256SUMS").read_text().splitlines())
    for split, keys in per_split.items():
        doc = json.loads((out / f"{split}.shards.json").read_text())
        assert doc["__kind__"] == "wids-shard-index-v1" and doc["name"] == split
        assert sum(s["nsamples"] for s in doc["shardlist"]) == len(keys) > 0
        for shard in doc["shardlist"]:
            data = (out / shard["url"]).read_bytes()
            assert shard["url"].startswith(f"{split}-") and len(data) == shard["filesize"]
            assert hashlib.sha256(data).hexdigest() == shard["sha256"] == sums[shard["url"]]
        assert sorted({r["key"] for r in index if r["split"] == split}) == keys
    assert len(json.loads((out / "valor1m.shards.json").read_text())["shardlist"]) > 1
    assert len(index) == len(MEMBERS) * sum(map(len, per_split.values()))
    # benchmark shards are in clip id order; pretraining shards are shuffled
    order = [r["key"] for r in index if r["member"] == "mp4"]
    test_keys = [k for k in order if k in per_split["valor32k-test"]]
    pretrain = [k for k in order if k in per_split["valor1m"]]
    assert test_keys == sorted(test_keys) and pretrain != sorted(pretrain)


def test_sample_json_and_txt(built_workdir):
    import tarfile

    manifest = {r["clip_id"]: r for r in pq.read_table(built_workdir / "manifest.parquet").to_pylist()}
    tar_path = sorted((built_workdir / "shards").glob("valor32k-test-*.tar"))[0]
    with tarfile.open(tar_path) as tar:
        members = tar.getmembers()
        assert [m.name.split(".", 1)[1] for m in members[:4]] == list(MEMBERS)
        assert {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) for m in members} == {(0, 0, 0, "", "", 0o644)}
        doc = json.loads(tar.extractfile(members[2]).read())
        text = tar.extractfile(members[3]).read().decode("utf-8")
    row = manifest[doc["clip_id"]]
    assert list(doc) == [*JSON_FIELDS, "split", "quality"]
    assert doc["split"] == "valor32k-test" and doc["valor_id"] == row["valor_id"]
    assert doc["labels"] == row["labels"] and doc["captions"] == row["captions"] and text == row["captions"][0]
    assert doc["quality"] == {"verdict": "keep", "reasons": [], "loudness_db": -20.5, "motion": 0.25}


def test_exports_and_card(built_workdir):
    out = built_workdir / "shards"
    manifest = {r["valor_id"]: r for r in pq.read_table(built_workdir / "manifest.parquet").to_pylist()}
    desc = json.loads((out / "desc_test.json").read_text())
    test_clips = [r for r in pq.read_table(built_workdir / "splits.parquet").to_pylist() if r["split"] == "valor32k-test"]
    assert len(desc) == len(test_clips) > 0
    assert all(manifest[d["video_id"]]["captions"] == [d["desc"]] for d in desc)
    ref = json.loads((out / "caption_ref_test.json").read_text())
    assert {a["image_id"] for a in ref["annotations"]} == {d["video_id"] for d in desc}
    assert {i["id"] for i in ref["images"]} == {d["video_id"] for d in desc}
    assert (out / "desc_train.json").exists() and not (out / "caption_ref_train.json").exists()
    text = (out / "README.md").read_text()
    front = yaml.safe_load(text.split("---\n")[1])
    configs = {c["config_name"]: c["data_files"][0] for c in front["configs"]}
    assert configs["valor32k-val"] == {"split": "validation", "path": "valor32k-val-*.tar"}
    assert configs["valor1m"]["split"] == "train" and front["language"] == ["en"]
    assert "CC BY 4.0" in text and "label_tolerance" in text and "| valor32k-test |" in text


def test_split_accounts_for_stage_failures(built_workdir):
    rows = pq.read_table(built_workdir / "splits.parquet").to_pylist()
    reasons = {r["reason"] for r in rows if r["reason"]}
    assert sum(r["reason"] == "fetch:failed_permanent" for r in rows) == FAILED
    assert sum(r["reason"] == "filter:silent_audio" for r in rows) == 1
    assert reasons <= {"fetch:failed_permanent", "filter:silent_audio", "not_selected"}
    assert all((r["split"] is None) != (r["reason"] is None) for r in rows)


def test_rebuild_gives_identical_bytes(built_workdir, tmp_path):
    workdir = copy_workdir(built_workdir, tmp_path / "w")
    shutil.rmtree(workdir.path("shards"))
    summary = build_shards(workdir, SHARDS)
    assert summary.skipped == 0 and summary.written == len(shard_hashes(built_workdir))
    assert shard_hashes(workdir.root) == shard_hashes(built_workdir)
    for name in ("index.parquet", "valor1m.shards.json", "README.md", "desc_test.json"):
        assert (workdir.path("shards", name)).read_bytes() == (built_workdir / "shards" / name).read_bytes()
    again = build_shards(workdir, SHARDS)
    assert again.written == 0 and again.skipped == summary.written


def test_killed_build_resumes_to_the_same_bytes(built_workdir, tmp_path):
    workdir = copy_workdir(built_workdir, tmp_path / "w")
    shutil.rmtree(workdir.path("shards"))
    cmd = [sys.executable, "-m", "valor_data.cli", "build-shards", "-w", str(workdir.root),
           "--max-bytes", str(SHARDS.max_bytes), "--workers", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while proc.poll() is None and not list(workdir.path("shards").glob("*.tar")) and time.monotonic() < deadline:
        time.sleep(0.01)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # a shard whose part record was lost must be rewritten, a stray temp file removed
    done = sorted(workdir.path("shards").glob("*.tar"))
    stray = workdir.path("shards", ".valor1m-000001.tar.abc.tmp")
    stray.write_bytes(b"half a shard")
    summary = build_shards(workdir, SHARDS)
    assert summary.written >= len(shard_hashes(built_workdir)) - len(done)
    assert shard_hashes(workdir.root) == shard_hashes(built_workdir)
    assert not stray.exists()


def test_stale_shards_are_removed_when_the_plan_shrinks(built_workdir, tmp_path):
    workdir = copy_workdir(built_workdir, tmp_path / "w")
    build_shards(workdir, ShardConfig(max_bytes=10**9))
    names = sorted(p.name for p in workdir.path("shards").glob("*.tar"))
    assert names == ["valor1m-000000.tar", "valor32k-test-000000.tar", "valor32k-train-000000.tar",
                     "valor32k-val-000000.tar"]
    index = pq.read_table(workdir.path("shards", "index.parquet"))
    assert set(index.column("shard").to_pylist()) == set(names)


def test_presampled_members_are_deterministic_verified_and_read(built_workdir, tmp_path):
    """``presampled_frames``: the extra members after each sample's four, byte-identical on a rebuild,
    accepted by verify-splits, and read by the trainer as the video path's frames (test time)."""
    import io
    import tarfile

    import numpy as np

    from valor_data.shards.checks import VerifyOptions
    from valor_data.shards.verify import verify
    from valor_data.train import data, presampled, video

    cfg = ShardConfig(max_bytes=SHARDS.max_bytes, workers=2, presampled_frames=3, presampled_segments=4,
                      presampled_size=64)
    built = []
    for name in ("a", "b"):
        workdir = copy_workdir(built_workdir, tmp_path / name)
        shutil.rmtree(workdir.path("shards"))
        build_shards(workdir, cfg)
        built.append(workdir)
    assert shard_hashes(built[0].root) == shard_hashes(built[1].root)
    assert build_shards(built[0], cfg).written == 0                      # resumes: the settings are fingerprinted
    assert build_shards(built[0], ShardConfig(max_bytes=SHARDS.max_bytes, workers=2)).skipped == 0
    assert shard_hashes(built[0].root) == shard_hashes(built_workdir)   # off again: the plain shards' bytes
    workdir = built[1]
    assert verify(workdir, VerifyOptions(sample=2)).ok
    index = pq.read_table(workdir.path("shards", "index.parquet")).to_pylist()
    plain = pq.read_table(built_workdir / "shards" / "index.parquet").to_pylist()
    exts = {row["member"] for row in index}
    assert exts == {*MEMBERS, presampled.FRAMES_EXT, presampled.fbank_ext(22050)}
    keys = {row["key"] for row in index}
    extra = sum(r["size"] for r in index) - sum(r["size"] for r in plain)
    print(f"pre-sampled members: {extra / len(keys):,.0f} extra bytes per sample")   # noqa: T201
    url = str(workdir.path("shards", index[0]["shard"]))
    spec = data.SampleSpec(frames=4, image_size=64, audio_slices=1, audio_rate=22050, resize="squash")
    with tarfile.open(url) as tar:
        sample = {m.name.split(".", 1)[1]: tar.extractfile(m).read() for m in tar if m.name.startswith(index[0]["key"])}
    from PIL import Image

    fast = presampled.frames(sample, spec, None)
    slow = video.decode_frames(sample["mp4"], 4, 64, None, "squash")      # presampled_resize's default
    for got, frame in zip(fast, slow, strict=True):       # the video path's frame, through JPEG q90
        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(frame.transpose(1, 2, 0))).save(buffer, "JPEG", quality=90)
        assert (np.asarray(Image.open(buffer).convert("RGB")).transpose(2, 0, 1) == got).all()
