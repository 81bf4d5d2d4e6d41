"""The fetch stage end to end on loopback: a synthetic AudioSet-style corpus (sources 30-60 s,
10 s segments, some ending early at the end of their video, file-level and content defects),
fetched through the real yt-dlp and ffmpeg code paths, with faults, a SIGKILL, Ray and a full disk."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import av
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from fetch_helpers import UNPACED

from valor_data.cli import main
from valor_data.distribute import stage_lock
from valor_data.errors import ValorError
from valor_data.fetch import FetchConfig, fetch_status, run_fetch
from valor_data.fetch.formats import select_formats
from valor_data.fetch.normalize import normalize
from valor_data.fetch.worker import fetch_clip, make_env
from valor_data.fetch.youtube import sources
from valor_data.synth.corpus import SynthConfig, make_corpus, read_truth
from valor_data.synth.server import Fault, LoopbackServer
from valor_data.table import read_table, write_table
from valor_data.workdir import Workdir

DATA = Path(__file__).parent / "data"
DEFECTS = {"zero_bytes": 1, "truncated": 1, "html_page": 1, "too_short": 1, "no_audio": 1}
FAST = dict(workers=2, threads=2, task_size=2, timeout_s=2.0, retries=2, backoff_s=0.05, backoff_max_s=0.2,
            rate_limit_wait_s=0.2, rate_limit_retries=3, youtube=UNPACED)
NO_BUDGET = ["--videos-per-hour", "10000000", "--min-gap", "0"]


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """13 synthetic AudioSet-style clips (balanced_train + eval) served on loopback."""
    folder = tmp_path_factory.mktemp("fetch-corpus")
    cfg = SynthConfig(clips=8, defects=DEFECTS, seed=3, source_seconds=(30, 60), short_fraction=0.25,
                      subsets={"balanced_train": 2, "eval": 1})
    make_corpus(folder, cfg)
    truth = {t["video_id"]: t for t in read_truth(folder)}
    clean = sorted(v for v, t in truth.items() if t["kind"] == "clean")
    assert any(truth[v]["end_s"] - truth[v]["start_s"] < 10 for v in clean), "want a segment cut short by the video end"
    (folder / "watch").mkdir()
    page = '<!DOCTYPE html><html><body><video controls src="/media/{}.mp4"></video></body></html>\n'
    (folder / "watch" / f"{clean[0]}.html").write_text(page.format(clean[0]))
    with LoopbackServer(folder) as server:
        yield {"folder": folder, "server": server, "truth": truth, "clean": clean}


@pytest.fixture()
def server(corpus):
    yield corpus["server"]
    corpus["server"].clear_faults()


@pytest.fixture(scope="session")
def fetched(corpus, tmp_path_factory):
    """``valor-data fetch audioset`` from an empty work dir (metadata from the loopback 'bucket')."""
    workdir = tmp_path_factory.mktemp("fetched")
    url = corpus["server"].url
    run_cli(["fetch", "audioset", "--subset", "balanced_train,eval", "-w", str(workdir), "--metadata-base-url", url,
          "--url-template", url + "/media/{video_id}.mp4", "--workers", "2", "--task-size", "3", "--no-progress",
          *NO_BUDGET])
    return Workdir(workdir)


def run_cli(args: list[str]) -> None:
    """``valor-data ARGS`` in this process; a non-zero exit fails the test."""
    try:
        main(args)
    except SystemExit as exc:
        assert exc.code in (0, None), f"valor-data {' '.join(args)} exited with {exc.code}"


def rows_by_video(workdir: Workdir) -> dict[str, dict]:
    manifest = {r["clip_id"]: r["video_id"] for r in read_table(workdir.manifest).to_pylist()}
    return {manifest[r["clip_id"]]: r for r in read_table(workdir.path("fetch.parquet")).to_pylist()}


def media_digests(workdir: Workdir) -> dict[str, str]:
    media = workdir.path("media")
    return {str(p.relative_to(media)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(media.rglob("*")) if p.is_file()}


def subset_workdir(tmp_path: Path, source: Workdir, video_ids: list[str]) -> Workdir:
    """A fresh work dir whose manifest holds only ``video_ids`` of ``source``'s manifest."""
    workdir = Workdir.create(tmp_path / "w")
    table = read_table(source.manifest)
    write_table(table.filter(pc.is_in(table.column("video_id"), value_set=pa.array(video_ids))),
                workdir.manifest)
    return workdir


def expected_seconds(truth: dict) -> float:
    return min(truth["end_s"], truth["source_seconds"]) - truth["start_s"]


def first_frame(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return next(container.decode(video=0)).to_ndarray(format="gray").astype(np.int16)


def test_fetch_audioset_from_nothing_classifies_every_clip(corpus, fetched):
    rows = rows_by_video(fetched)
    assert set(rows) == set(corpus["truth"])      # every clip of both subsets has exactly one row
    expected_status = {"clean": "ok", "too_short": "ok", "no_audio": "ok", "zero_bytes": "failed_permanent",
                       "html_page": "failed_permanent", "truncated": "failed_permanent"}
    expected_class = {"zero_bytes": "EmptyFile", "html_page": "HtmlPage", "truncated": "ShortOutput"}
    for video_id, truth in corpus["truth"].items():
        row = rows[video_id]
        assert row["status"] == expected_status[truth["kind"]], (truth["kind"], row)
        if truth["kind"] in expected_class:
            assert row["error_class"] == expected_class[truth["kind"]] and row["error"], row
            assert not fetched.media_path(row["clip_id"], "mp4").exists()
        else:
            assert row["method"] == "cut" and row["formats"] == "mp4" and row["attempts"] == 1
    assert (fetched.path("raw", "audioset", "eval_segments.csv")).exists()   # the metadata was downloaded


def test_outputs_have_the_requested_duration_format_and_audio_rate(corpus, fetched):
    rows = rows_by_video(fetched)
    checked = 0
    for video_id, truth in corpus["truth"].items():
        row = rows[video_id]
        if row["status"] != "ok":
            continue
        want = expected_seconds(truth)
        with av.open(str(fetched.media_path(row["clip_id"], "mp4"))) as mp4:
            video = mp4.streams.video[0]
            frame = 1.0 / float(video.average_rate)
            assert video.codec_context.name == "h264" and video.codec_context.pix_fmt == "yuv420p"
            width, height = video.codec_context.width, video.codec_context.height
            assert min(width, height) <= 360 and width % 2 == 0 and height % 2 == 0
            assert abs(mp4.duration / 1e6 - want) <= frame, (truth, mp4.duration)
            assert abs(row["duration_s"] - want) <= frame
            has_audio = bool(mp4.streams.audio)
            assert has_audio == (truth["kind"] != "no_audio") == row["has_audio"]
            if has_audio:
                assert mp4.streams.audio[0].codec_context.name == "aac"
        flac_path = fetched.media_path(row["clip_id"], "flac")
        assert flac_path.exists() == has_audio
        if has_audio:
            with av.open(str(flac_path)) as flac:
                stream = flac.streams.audio[0]
                assert (stream.codec_context.sample_rate, stream.codec_context.channels) == (16000, 1)
                assert abs(float(stream.duration * stream.time_base) - want) <= frame
        checked += 1
    short = [t for t in corpus["truth"].values() if t["kind"] in ("clean", "too_short") and expected_seconds(t) < 10]
    assert checked == 10 and len(short) >= 2     # incl. segments ending early and the too-short source
    assert not [p for p in fetched.path("media").rglob("*") if p.name.startswith(".")]   # no temp left


def test_status_command_and_rerun_is_a_no_op(fetched, capsys):
    run_cli(["fetch", "--status", str(fetched.root)])
    out = capsys.readouterr().out
    assert "finished" in out and "clips with a result: 13 of 13" in out
    assert [line for line in out.splitlines() if "failed_permanent" in line][0].split()[-1] == "3"
    before = media_digests(fetched)
    summary = run_fetch(fetched, FetchConfig(**FAST), progress=False)
    assert summary.planned == 0 and media_digests(fetched) == before


def test_a_second_fetch_is_refused_while_one_runs(fetched):
    with stage_lock(fetched, "fetch"):
        with pytest.raises(ValorError, match="already using"):
            run_fetch(fetched, FetchConfig(**FAST), progress=False)


def test_faults_on_the_ytdlp_path_end_in_the_right_status(corpus, fetched, server, tmp_path):
    clean = corpus["clean"]
    workdir = subset_workdir(tmp_path, fetched, clean)
    faults = {  # video id -> (fault, times); the first request is yt-dlp's, the second ffmpeg's
        clean[0]: (Fault("status", code=429, retry_after=1), 2),
        clean[1]: (Fault("status", code=500), 2),
        clean[2]: (Fault("status", code=404), None),
        clean[3]: (Fault("stall", seconds=5), 2),
        clean[4]: (Fault("truncate", fraction=0.3), 2),
        clean[5]: (Fault("reset"), 2),
        clean[6]: (Fault("status", code=500), None),
        clean[7]: (Fault("status", code=429, retry_after=0.2), None),
    }
    for video_id, (fault, times) in faults.items():
        server.add_fault(f"/media/{video_id}.mp4", fault, times)
    started = time.time()
    run_fetch(workdir, FetchConfig(**FAST), progress=False)
    rows = rows_by_video(workdir)
    got = {v: (rows[v]["status"], rows[v]["error_class"], rows[v]["attempts"]) for v in clean}
    assert got[clean[0]][:2] == got[clean[1]][:2] == ("ok", None)
    assert got[clean[0]][2] >= 3 and got[clean[1]][2] >= 3     # two faults each, then success
    assert got[clean[2]] == ("failed_permanent", "HTTP404", 1)
    assert got[clean[3]][0] == got[clean[4]][0] == got[clean[5]][0] == "ok"
    assert got[clean[6]] == ("failed_transient", "HTTP500", 3)
    assert got[clean[7]] == ("rate_limited", "HTTP429", 4)
    pause = json.loads(workdir.path("fetch", "backoff.json").read_text())
    assert pause["until"] >= started + 1.0          # Retry-After was shared through the back-off file
    for video_id in (clean[0], clean[3], clean[4], clean[5]):
        assert abs(rows[video_id]["duration_s"] - expected_seconds(corpus["truth"][video_id])) < 0.05

    server.clear_faults()
    summary = run_fetch(workdir, FetchConfig(**FAST), retry_failed=True, progress=False)
    assert summary.planned == 2 and summary.run == {"ok": 2}    # only the transient and rate-limited clips
    rows = rows_by_video(workdir)
    assert rows[clean[2]]["status"] == "failed_permanent" and rows[clean[6]]["status"] == "ok"


def test_faults_on_the_http_path_end_in_the_right_status(corpus, server, tmp_path):
    truth, clean, url = corpus["truth"], corpus["clean"], corpus["server"].url
    zero = next(v for v, t in truth.items() if t["kind"] == "zero_bytes")
    cut = clean[:5]                        # segments cut straight from the URL
    whole = [clean[7], zero, clean[6]]     # whole files: downloaded (Range resume), then normalised
    lines = ["url,caption,start,end,id"]
    lines += [f"{url}/media/{v}.mp4,a clip,{truth[v]['start_s']},{truth[v]['end_s']},{v}" for v in cut]
    lines += [f"{url}/media/{v}.mp4,a file,,,{v}" for v in whole]
    local = corpus["folder"] / "media" / f"{clean[5]}.mp4"
    lines.append(f"{local.as_uri()},a local file,{truth[clean[5]]['start_s']},{truth[clean[5]]['end_s']},local")
    (tmp_path / "list.csv").write_text("\n".join(lines) + "\n")
    workdir = Workdir.create(tmp_path / "w")
    server.add_fault(f"/media/{cut[0]}.mp4", Fault("status", code=429, retry_after=0.5), 2)
    server.add_fault(f"/media/{cut[1]}.mp4", Fault("status", code=404), None)
    server.add_fault(f"/media/{cut[2]}.mp4", Fault("status", code=500), 1)
    server.add_fault(f"/media/{cut[3]}.mp4", Fault("stall", seconds=5), 1)
    server.add_fault(f"/media/{cut[4]}.mp4", Fault("reset"), 1)
    server.add_fault(f"/media/{clean[7]}.mp4", Fault("truncate", fraction=0.4), 1)
    server.add_fault(f"/media/{clean[6]}.mp4", Fault("html"), None)
    run_cli(["fetch", "urls", str(tmp_path / "list.csv"), "-w", str(workdir.root), "--workers", "2", "--threads", "2",
          "--task-size", "2", "--no-progress"])
    rows = {r["video_id"]: r for r in read_table(workdir.manifest).to_pylist()}
    results = {r["clip_id"]: r for r in read_table(workdir.path("fetch.parquet")).to_pylist()}
    got = {v: results[rows[v]["clip_id"]] for v in cut + whole}
    assert [got[v]["status"] for v in cut] == ["ok", "failed_permanent", "ok", "ok", "ok"]
    assert got[cut[0]]["attempts"] >= 2 and got[cut[1]]["error_class"] == "HTTP404"
    assert (got[clean[7]]["status"], got[clean[7]]["method"]) == ("ok", "download")
    assert abs(got[clean[7]]["duration_s"] - truth[clean[7]]["source_seconds"]) < 0.05
    assert (got[zero]["status"], got[zero]["error_class"]) == ("failed_permanent", "EmptyFile")
    assert (got[clean[6]]["status"], got[clean[6]]["error_class"]) == ("failed_permanent", "HtmlPage")
    refused = results[rows["local"]["clip_id"]]          # file:// URLs are off unless enabled
    assert (refused["status"], refused["error_class"]) == ("failed_permanent", "FileUrlRefused")
    enabled = fetch_clip(rows["local"], make_env(workdir, FetchConfig(allow_file_urls=True)))
    assert (enabled["status"], enabled["method"]) == ("ok", "file")
    assert workdir.media_path(rows["local"]["clip_id"], "flac").exists()
    resumed = [r for m, p, r in server.requests if p == f"/media/{clean[7]}.mp4" and r]
    assert resumed and resumed[-1].startswith("bytes=") and resumed[-1] != "bytes=0-"   # Range resume
    assert not any(workdir.path("fetch", "downloads").iterdir())


def test_ytdlp_section_download_when_the_stream_cannot_be_cut(corpus, fetched, server, tmp_path):
    video_id = corpus["clean"][0]
    workdir = subset_workdir(tmp_path, fetched, [video_id])
    table = read_table(workdir.manifest)
    page = f"{corpus['server'].url}/watch/{video_id}.html"     # yt-dlp finds the media URL in the page
    write_table(table.set_column(table.schema.get_field_index("url"), "url",
                                 pa.array([page])), workdir.manifest)
    server.add_fault(f"/media/{video_id}.mp4", Fault("status", code=403), times=2)   # ffmpeg's read + diagnosis
    run_fetch(workdir, FetchConfig(**FAST), progress=False)
    row = rows_by_video(workdir)[video_id]
    assert (row["status"], row["method"], row["attempts"]) == ("ok", "section", 1)
    assert abs(row["duration_s"] - expected_seconds(corpus["truth"][video_id])) < 0.05
    mine = first_frame(workdir.media_path(row["clip_id"], "mp4"))
    reference = first_frame(fetched.media_path(row["clip_id"], "mp4"))
    assert np.abs(mine - reference).mean() < 1.0     # the same first frame as the one-pass cut
    warned = json.loads(workdir.path("fetch", "progress.json").read_text())["warnings"]   # from the worker process
    assert warned.get("Falling back on generic information extractor", 0) >= 1
    assert any(line.endswith("Falling back on generic information extractor") for line in fetch_status(workdir))


def test_two_stream_cut_of_youtube_shaped_formats(corpus, fetched, tmp_path):
    """A video-only and an audio-only DASH-like stream, cut together in one ffmpeg pass."""
    from valor_data.media.ffmpeg import run_ffmpeg

    video_id = corpus["clean"][1]
    truth = corpus["truth"][video_id]
    dash = corpus["folder"] / "dash"
    dash.mkdir(exist_ok=True)
    source = corpus["folder"] / "media" / f"{video_id}.mp4"
    run_ffmpeg(["-y", "-i", str(source), "-map", "0:v", "-c", "copy", str(dash / f"{video_id}.video.mp4")])
    run_ffmpeg(["-y", "-i", str(source), "-map", "0:a", "-c", "copy", str(dash / f"{video_id}.m4a")])
    info = json.loads((DATA / "ytdlp_youtube_landscape.json").read_text())
    for fmt in info["formats"]:
        if fmt["format_id"] == "134":
            fmt["url"] = f"{corpus['server'].url}/dash/{video_id}.video.mp4"
        elif fmt["format_id"] == "140":
            fmt["url"] = f"{corpus['server'].url}/dash/{video_id}.m4a"
    cfg = FetchConfig(**FAST)
    selection = select_formats(info, cfg.youtube, cfg.max_short_side)
    assert selection.ids == "134+140"
    mp4, flac = tmp_path / "x.mp4", tmp_path / "x.flac"
    done = normalize(sources(selection, cfg), truth["start_s"], truth["end_s"], mp4, flac, cfg)
    assert done.has_video and done.has_audio and abs(done.duration_s - expected_seconds(truth)) < 0.05
    clip_id = next(r["clip_id"] for r in read_table(fetched.manifest).to_pylist() if r["video_id"] == video_id)
    assert np.abs(first_frame(mp4) - first_frame(fetched.media_path(clip_id, "mp4"))).mean() < 1.0


def test_sigkill_mid_run_then_resume_equals_an_uninterrupted_run(corpus, fetched, tmp_path):
    workdir = Workdir.create(tmp_path / "w")
    shutil.copyfile(fetched.manifest, workdir.manifest)
    args = ["fetch", "audioset", "-w", str(workdir.root), "--workers", "2", "--threads", "1", "--task-size", "2",
            "--no-progress", *NO_BUDGET]
    log = open(tmp_path / "killed.log", "wb")
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from valor_data.cli import main; main(sys.argv[1:])",
                             *args], stdout=log, stderr=subprocess.STDOUT)
    tasks = workdir.path("fetch", "tasks")
    deadline = time.monotonic() + 300
    while not (tasks.is_dir() and any(tasks.glob("task-*.parquet"))) and proc.poll() is None:
        assert time.monotonic() < deadline, "no task finished"
        time.sleep(0.05)
    in_flight = fetch_status(workdir)       # what `valor-data fetch --status W` prints meanwhile
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    log.close()
    done_at_kill = len(list(tasks.glob("task-*.parquet")))
    assert 0 < done_at_kill < 7, (tmp_path / "killed.log").read_text()   # killed mid-run (13 clips, tasks of 2)
    assert in_flight[0].endswith(": running") and "of 13 clips" in in_flight[1] and "clips/s" in in_flight[1]
    assert fetch_status(workdir)[0].endswith(": interrupted")

    run_cli(args)                         # resume: lock is free, stale temps are cleaned
    tables = [pq.read_table(p) for p in sorted(tasks.glob("task-*.parquet"))]
    ids = [c for t in tables for c in t.column("clip_id").to_pylist()]
    assert len(ids) == len(set(ids)) == 13             # no clip lost, none twice
    keep = ["clip_id", "status", "error_class", "duration_s", "has_audio", "has_video", "width", "height", "bytes"]
    mine = sorted(read_table(workdir.path("fetch.parquet"), keep).to_pylist(), key=lambda r: r["clip_id"])
    reference = sorted(read_table(fetched.path("fetch.parquet"), keep).to_pylist(), key=lambda r: r["clip_id"])
    assert mine == reference
    assert media_digests(workdir) == media_digests(fetched)   # same files, byte for byte, no temp left


def test_ray_distributor_writes_to_an_fsspec_media_url(corpus, fetched, tmp_path):
    ray = pytest.importorskip("ray")
    workdir = subset_workdir(tmp_path, fetched, corpus["clean"][:4])
    bucket = tmp_path / "bucket"
    cfg = FetchConfig(**{**FAST, "media_url": f"file://{bucket}"})
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        summary = run_fetch(workdir, cfg, distributor="ray", progress=False)
    finally:
        ray.shutdown()
    assert summary.run == {"ok": 4}
    for row in read_table(workdir.path("fetch.parquet")).to_pylist():
        fan = fetched.media_path(row["clip_id"], "mp4").parent.name
        for ext in ("mp4", "flac"):
            ours = bucket / fan / f"{row['clip_id']}.{ext}"
            assert ours.read_bytes() == fetched.media_path(row["clip_id"], ext).read_bytes()
    assert not list(bucket.rglob(".*")) and not workdir.path("media").exists()


_FULL_DISK = """
import subprocess, sys
from pathlib import Path
from urllib.parse import quote
from valor_data.fetch import DiskFullError, FetchConfig, run_fetch
from valor_data.workdir import Workdir
if __name__ == "__main__":
    workdir = Workdir(Path(sys.argv[1]))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(workdir.path("media"))], check=True)
    try:
        run_fetch(workdir, FetchConfig(workers=1, threads=2, task_size=2, timeout_s=5,
                                       youtube={"videos_per_hour": 1e7, "min_gap_s": 0}), progress=False)
        print("finished")
    except DiskFullError as exc:
        print("DiskFullError:", exc)
"""


def _can_mount_tmpfs() -> bool:
    if not shutil.which("unshare") or not shutil.which("mount"):
        return False
    probe = subprocess.run(["unshare", "-Urm", "mount", "-t", "tmpfs", "tmpfs", "/mnt"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs unprivileged user+mount namespaces for a tiny tmpfs")
def test_full_disk_stops_the_run_and_marks_no_clip_failed(corpus, fetched, tmp_path):
    workdir = subset_workdir(tmp_path, fetched, corpus["clean"][:4])
    workdir.path("media").mkdir()
    (tmp_path / "full.py").write_text(_FULL_DISK)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(["unshare", "-Urm", sys.executable, str(tmp_path / "full.py"), str(workdir.root)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.stdout.startswith("DiskFullError: no space left on the device"), proc.stdout + proc.stderr
    assert len(proc.stdout.strip().splitlines()) == 1
    tasks = workdir.path("fetch", "tasks")
    assert not list(tasks.glob("*.parquet"))       # no clip fits in 200 kB: nothing recorded, nothing failed
    assert json.loads(workdir.path("fetch", "progress.json").read_text())["state"] == "stopped"
    summary = run_fetch(workdir, FetchConfig(**FAST), progress=False)   # space again: the rerun completes
    assert summary.run == {"ok": 4}
    assert fetch_status(workdir)[0].endswith("finished")


DECODABLE_DAMAGE = {"decord__corrupted", "mediabunny__no-initial-keyframe"}   # broken packets, usable output


def test_real_media_files_over_http(shared_data, tmp_path):
    """The 30 real files of shared/data/media (10 broken): 3 s cut over http from each."""
    media = shared_data / "media"
    notes = {line.split("\t")[0]: line.split("\t")[2] for line in
             (media / "NOTES.tsv").read_text().splitlines()[1:] if line.strip()}
    with LoopbackServer(media) as server:
        lines = ["url,caption,start,end,id"] + [f"{server.url}/{name},x,0,3,{Path(name).stem}" for name in notes]
        (tmp_path / "list.csv").write_text("\n".join(lines) + "\n")
        workdir = Workdir.create(tmp_path / "w")
        run_cli(["fetch", "urls", str(tmp_path / "list.csv"), "-w", str(workdir.root), "--workers", "2",
              "--task-size", "4", "--no-progress"])
    names = {r["clip_id"]: r["video_id"] for r in read_table(workdir.manifest).to_pylist()}
    rows = {names[r["clip_id"]]: r for r in read_table(workdir.path("fetch.parquet")).to_pylist()}
    broken = {Path(n).stem for n, tags in notes.items() if "broken" in tags} - DECODABLE_DAMAGE
    assert len(rows) == 30 and len(broken) == 8
    assert {n for n, r in rows.items() if r["status"] != "ok"} == broken
    assert all(rows[n]["status"] == "failed_permanent" and rows[n]["error"] for n in broken)
    for name, row in rows.items():
        if row["status"] == "ok":
            assert row["has_video"] or row["has_audio"], name
            long_last_frame = "vfr" in notes[next(n for n in notes if Path(n).stem == name)]
            assert row["duration_s"] <= 3.0 + 1 / 24 or long_last_frame, name
            assert row["width"] is None or (min(row["width"], row["height"]) <= 360 and row["width"] % 2 == 0)
    assert rows["mediabunny__rotate-buck-bunny"]["height"] > rows["mediabunny__rotate-buck-bunny"]["width"]


def test_fetch_youku_whole_files_with_chinese_names(tmp_path):
    """Youku-mPLUG layout: whole files named in Chinese (with a space) downloaded over http."""
    folder = tmp_path / "youku"
    make_corpus(folder, SynthConfig(clips=4, defects={"html_page": 1}, seed=2, source_seconds=(5, 7), lang="zh",
                                    subsets={"pretrain": 1.0, "classification_train": 1.0}))
    truth = {t["file"]: t for t in read_truth(folder)}
    assert any(" " in name and not name.isascii() for name in truth)
    workdir = tmp_path / "w"
    with LoopbackServer(folder) as server:
        run_cli(["fetch", "youku", *map(str, sorted(folder.glob("*.csv"))), "--base-url", server.url, "-w",
                 str(workdir), "--workers", "1", "--no-progress"])
    workdir = Workdir(workdir)
    urls = {r["clip_id"]: r["url"] for r in read_table(workdir.manifest).to_pylist()}
    for row in read_table(workdir.path("fetch.parquet")).to_pylist():
        clip = next(t for f, t in truth.items() if urls[row["clip_id"]].endswith(quote(f)))
        if clip["kind"] == "html_page":
            assert (row["status"], row["error_class"]) == ("failed_permanent", "HtmlPage")
            continue
        assert (row["status"], row["method"]) == ("ok", "download"), row
        assert abs(row["duration_s"] - clip["source_seconds"]) < 0.05
        assert workdir.media_path(row["clip_id"], "flac").exists()
