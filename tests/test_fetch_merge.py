"""Many machines: ``fetch --partition i/N`` in separate work dirs, ``valor-data merge`` into one,
conflicts, and yt-dlp download archives; real yt-dlp (generic extractor) and ffmpeg on loopback."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from valor_data.cli import main
from valor_data.distribute import collect, stage_lock
from valor_data.errors import ValorError
from valor_data.fetch.archive import read_archive
from valor_data.fetch.merge import merge_workdirs
from valor_data.fetch.scope import Partition
from valor_data.synth.corpus import SynthConfig, make_corpus, read_truth
from valor_data.synth.server import LoopbackServer
from valor_data.table import read_table, write_table
from valor_data.workdir import Workdir

KEEP = ["clip_id", "status", "error_class", "bytes", "duration_s", "has_audio", "has_video", "width", "height"]


def run_cli(args: list[str]) -> None:
    try:
        main(args)
    except SystemExit as exc:
        assert exc.code in (0, None), f"valor-data {' '.join(args)} exited with {exc.code}"


def fetch(workdir: Path, manifest: Path, *extra: str) -> None:
    run_cli(["fetch", "audioset", "-w", str(workdir), "--manifest", str(manifest), "--workers", "1",
             "--task-size", "3", "--no-progress", "--pipeline", str(unpaced(workdir.parent)), *extra])


def unpaced(folder: Path) -> Path:
    """A pipeline without YouTube's budgets (loopback has none to respect)."""
    path = folder / "unpaced.yaml"
    path.write_text("fetch:\n  youtube: {videos_per_hour: 1.0e+7, min_gap_s: 0}\n")
    return path


def results(workdir: Workdir) -> list[dict]:
    return sorted(read_table(workdir.path("fetch.parquet"), KEEP).to_pylist(), key=lambda r: r["clip_id"])


def media_digests(workdir: Workdir) -> dict[str, str]:
    media = workdir.path("media")
    return {str(p.relative_to(media)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(media.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """6 clips of 5 synthetic videos (one video has two clips, one serves an HTML page), fetched
    once whole and once as 3 partitions in 3 work dirs."""
    root = tmp_path_factory.mktemp("merge")
    make_corpus(root / "corpus", SynthConfig(clips=4, defects={"html_page": 1}, seed=11, source_seconds=(6, 8),
                                             segment_seconds=2, short_fraction=0.0, size=(192, 144)))
    with LoopbackServer(root / "corpus") as server:
        seed = root / "seed"
        run_cli(["fetch", "audioset", "--subset", "balanced_train", "-w", str(seed), "--metadata-base-url",
                 server.url, "--url-template", server.url + "/media/{video_id}.mp4", "--limit", "0", "--no-progress",
                 "--pipeline", str(unpaced(root))])
        table = read_table(Workdir(seed).manifest)
        first = table.slice(0, 1).to_pylist()[0]
        twin = {**first, "clip_id": f"{first['video_id']}_500", "start_s": 0.5, "end_s": 1.5}
        manifest = root / "manifest.parquet"
        write_table(pa.concat_tables([table, pa.Table.from_pylist([twin], schema=table.schema)]), manifest)
        fetch(root / "whole", manifest)
        parts = []
        for i in range(3):
            fetch(root / f"part{i}", manifest, "--partition", f"{i}/3")
            parts.append(Workdir(root / f"part{i}"))
    truth = {t["video_id"]: t for t in read_truth(root / "corpus")}
    return {"root": root, "manifest": manifest, "whole": Workdir(root / "whole"), "parts": parts, "truth": truth,
            "twin": twin}


def test_partitions_split_the_manifest_by_video(runs):
    seen: dict[str, int] = {}
    manifest = {r["clip_id"]: r["video_id"] for r in read_table(runs["manifest"]).to_pylist()}
    for i, part in enumerate(runs["parts"]):
        for row in results(part):
            assert row["clip_id"] not in seen                  # disjoint
            seen[row["clip_id"]] = i
            assert Partition(i, 3).holds(manifest[row["clip_id"]])
    assert set(seen) == set(manifest) and len(manifest) == 6   # together: every clip, once
    twin = runs["twin"]
    assert seen[twin["clip_id"]] == seen[next(c for c, v in manifest.items()
                                              if v == twin["video_id"] and c != twin["clip_id"])]
    assert len(set(seen.values())) > 1                         # the videos really spread out


def test_three_partitions_merged_equal_one_whole_run(runs, tmp_path):
    merged = Workdir.create(tmp_path / "merged")
    run_cli(["merge", *(str(p.root) for p in runs["parts"]), "-w", str(merged.root)])
    whole = results(runs["whole"])
    assert results(merged) == whole
    assert {r["status"] for r in whole} == {"ok", "failed_permanent"}
    assert media_digests(merged) == media_digests(runs["whole"])
    assert merged.manifest.read_bytes() == runs["manifest"].read_bytes()
    report = json.loads(merged.path("fetch", "merge.json").read_text())
    assert report["conflicts"] == [] and report["linked"] == 2 * sum(r["status"] == "ok" for r in whole)

    again = merge_workdirs(runs["parts"], merged)             # exactly once: a rerun writes nothing
    assert (sum(again.written.values()), again.unchanged, again.linked) == (0, 6, 0)
    assert len(list(merged.path("fetch", "tasks").glob("*.parquet"))) == 1
    rerun_fetch = Workdir(merged.root)                         # W is a fetch work dir: nothing left to fetch
    run_cli(["fetch", "audioset", "-w", str(rerun_fetch.root), "--no-progress"])
    assert len(list(merged.path("fetch", "tasks").glob("*.parquet"))) == 1


def _copy(workdir: Workdir, target: Path) -> Workdir:
    shutil.copytree(workdir.root, target)
    return Workdir(target)


def _set_row(workdir: Workdir, clip_id: str, **changes) -> None:
    """Append a task table holding a changed row for ``clip_id`` (the latest row wins)."""
    tasks = sorted(workdir.path("fetch", "tasks").glob("task-*.parquet"))
    table = read_table(tasks[0]).combine_chunks()
    for other in tasks:
        t = read_table(other)
        if clip_id in t.column("clip_id").to_pylist():
            table = t
    row = next(r for r in table.to_pylist() if r["clip_id"] == clip_id)
    index = int(tasks[-1].stem.split("-")[1]) + 1
    write_table(pa.Table.from_pylist([{**row, **changes}], schema=table.schema),
                workdir.path("fetch", "tasks", f"task-{index:06d}.parquet"))
    collect(workdir, "fetch")


def test_conflicts_are_listed_and_resolved(runs, tmp_path):
    whole = runs["whole"]
    ok = [r["clip_id"] for r in results(whole) if r["status"] == "ok"]
    other = _copy(whole, tmp_path / "other")
    flipped = other.media_path(ok[0], "mp4")                   # same size, different bytes
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0xFF
    flipped.unlink()                                           # (a hard link would change both copies)
    flipped.write_bytes(bytes(data))
    _set_row(whole_copy := _copy(whole, tmp_path / "first"), ok[1], status="failed_transient",
             error_class="Timeout", error="x", bytes=0)
    whole_copy.media_path(ok[1], "mp4").unlink()
    whole_copy.media_path(ok[2], "flac").unlink()              # an ok row whose media are incomplete
    merged = Workdir.create(tmp_path / "merged")
    report = merge_workdirs([whole_copy, other], merged, link=False)
    kinds = {(c.clip_id, c.kind) for c in report.conflicts}
    assert kinds == {(ok[0], "bytes"), (ok[1], "status"), (ok[2], "media")}, report.lines()
    rows = {r["clip_id"]: r for r in results(merged)}
    assert all(rows[c]["status"] == "ok" for c in ok[:3])      # ok wins; the complete copy is used
    assert merged.media_path(ok[0], "mp4").read_bytes() == whole.media_path(ok[0], "mp4").read_bytes()
    assert report.copied == 2 * len(ok) and report.linked == 0

    alone = Workdir.create(tmp_path / "alone")                 # the incomplete copy on its own
    report = merge_workdirs([whole_copy], alone)
    row = next(r for r in read_table(alone.path("fetch.parquet")).to_pylist() if r["clip_id"] == ok[2])
    assert (row["status"], row["error_class"]) == ("failed_transient", "MediaMissing")
    assert not alone.media_path(ok[2], "mp4").exists()


def test_merge_refuses_work_dirs_of_different_manifests(runs, tmp_path):
    other = _copy(runs["parts"][0], tmp_path / "other")
    table = read_table(other.manifest)
    write_table(table.filter(pc.invert(pc.equal(table.column("clip_id"), runs["twin"]["clip_id"]))), other.manifest)
    with pytest.raises(ValorError, match="the manifests differ.*is in one only"):
        merge_workdirs([runs["parts"][1], other], Workdir.create(tmp_path / "m"))
    with pytest.raises(ValorError, match="distinct"):
        merge_workdirs([runs["parts"][1], runs["parts"][1]], Workdir.create(tmp_path / "m"))
    with stage_lock(other, "fetch"), pytest.raises(ValorError, match="a fetch is running in"):
        merge_workdirs([runs["parts"][1], other], Workdir.create(tmp_path / "m"))


def test_download_archive_export_and_skip(runs, tmp_path):
    whole = runs["whole"]
    archive = tmp_path / "archive.txt"
    run_cli(["fetch", "audioset", "-w", str(whole.root), "--no-progress", "--archive-export", str(archive)])
    lines = archive.read_text().splitlines()
    ok_videos = {v for v, t in runs["truth"].items() if t["kind"] != "html_page"}
    assert lines == sorted(f"youtube {v}" for v in ok_videos)   # yt-dlp's format; the failed video left out
    assert read_archive(archive) == ok_videos

    archive.write_text(archive.read_text() + "generic other\nnot an archive line at all\n")
    fresh = tmp_path / "fresh"
    run_cli(["fetch", "audioset", "-w", str(fresh), "--manifest", str(runs["manifest"]), "--workers", "1",
             "--no-progress", "--skip-archive", str(archive), "--pipeline", str(unpaced(tmp_path))])
    fetched = read_table(Workdir(fresh).path("fetch.parquet")).to_pylist()
    failed_video = next(v for v, t in runs["truth"].items() if t["kind"] == "html_page")
    manifest = {r["clip_id"]: r["video_id"] for r in read_table(runs["manifest"]).to_pylist()}
    assert [manifest[r["clip_id"]] for r in fetched] == [failed_video]   # only the video not in the archive
