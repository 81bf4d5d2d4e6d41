"""The filter on inputs that broke it: streams that appear late, a folder of mixed files.

- Late streams: FLV creates a stream when its first packet comes, so the 32-byte quick
  probe of a healthy FLV saw only its audio and PyAV then raised IndexError in demux (a
  logged traceback, the clip rejected as ``analysis_error``). A stream missing from the
  quick probe now takes libav's default probe, and one that appears after that a deep probe.
- ``--media-dir``: files were chosen by extension (``.dv``, ``.mxf`` and files without one
  were silently skipped); now by what FFmpeg can demux, and the skips are reported.
"""

from __future__ import annotations

import functools
import logging
import shutil
from pathlib import Path

import av
import pytest

from valor_data.curate import checks, run
from valor_data.curate.analyze import analyze_clip
from valor_data.curate.config import FilterConfig
from valor_data.curate.folder import folder_clips
from valor_data.media.ffmpeg import run_ffmpeg
from valor_data.table import read_table
from valor_data.workdir import Workdir

CONFIG = FilterConfig(timeout_s=120)


@functools.lru_cache(maxsize=1)
def _flv_audio() -> list[str]:
    """MP3 in FLV as the issue met it when this ffmpeg has libmp3lame, else FLV's own ADPCM."""
    encoders = run_ffmpeg(["-encoders"], timeout=30).stdout.decode()
    return ["-c:a", "libmp3lame"] if " libmp3lame " in encoders else ["-c:a", "adpcm_swf"]


def _flv(out: Path, seconds: float, audio_delay_s: float = 0.0) -> Path:
    delay = ["-itsoffset", str(audio_delay_s)] if audio_delay_s else []
    run_ffmpeg(["-y", "-f", "lavfi", "-i", f"testsrc2=s=320x240:r=25:d={seconds}",
                *delay, "-f", "lavfi", "-i", f"sine=f=440:r=44100:d={seconds - audio_delay_s}",
                "-map", "0:v", "-map", "1:a", "-c:v", "flv1", *_flv_audio(), str(out)], timeout=120)
    return out


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("late")
    files = {"flv": _flv(folder / "healthy.flv", 10.0)}
    # audio only from 8 s on, and a header that declares video only: past libav's default
    # 5 s of probing, the audio stream is first seen while reading
    late = bytearray(_flv(folder / "late_audio.flv", 14.0, audio_delay_s=8.0).read_bytes())
    assert late[:3] == b"FLV"
    late[4] = 0x01                       # type flags: video only
    files["very_late"] = folder / "very_late.flv"
    files["very_late"].write_bytes(bytes(late))
    return files


def _no_tracebacks(caplog) -> None:
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    assert "Traceback" not in caplog.text


def test_a_healthy_flv_is_read_whole_and_kept(media, caplog):
    with av.open(str(media["flv"]), options={"probesize": "32", "analyzeduration": "0"}) as quick:
        assert not quick.streams.video           # the premise: the quick probe misses the video
    caplog.set_level(logging.INFO)
    row = analyze_clip("flv", media["flv"], 10.0, CONFIG)
    assert row["status"] == "ok", row["error"]
    assert row["has_video"] and row["has_audio"] and row["decode_errors"] == 0, row["detail"]
    assert row["duration_s"] == pytest.approx(10.0, abs=0.2)
    assert row["sampled_frames"] == CONFIG.frames
    assert checks.judge(row, CONFIG) == []
    _no_tracebacks(caplog)


def test_a_stream_past_the_default_probe_takes_a_deep_probe(media, caplog):
    with av.open(str(media["very_late"])) as default:
        assert not default.streams.audio          # the premise: libav's defaults miss the audio too
    caplog.set_level(logging.INFO)
    row = analyze_clip("late", media["very_late"], 14.0, CONFIG)
    assert row["status"] == "ok", row["error"]
    assert row["has_video"] and row["has_audio"] and row["decode_errors"] == 0, row["detail"]
    assert row["duration_s"] == pytest.approx(14.0, abs=0.2)
    assert row["audio_s"] == pytest.approx(6.0, abs=0.3)
    _no_tracebacks(caplog)


def test_an_analysis_failure_is_a_row_and_one_log_line(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    folder = tmp_path / "a_folder.mp4"        # not a file: nothing in libav or Python can read it
    folder.mkdir()
    row = analyze_clip("dir", folder, None, CONFIG)
    assert row["status"] == "error" and row["error"], row
    assert any("a_folder.mp4" in r.getMessage() for r in caplog.records)
    _no_tracebacks(caplog)


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory, media) -> Path:
    folder = tmp_path_factory.mktemp("mixed")
    run_ffmpeg(["-y", "-f", "lavfi", "-i", "testsrc2=s=720x576:r=25:d=1", "-f", "lavfi", "-i",
                "sine=f=440:r=48000:d=1", "-c:v", "dvvideo", "-pix_fmt", "yuv420p", "-c:a", "pcm_s16le",
                "-ac", "2", "-f", "dv", str(folder / "tape.dv")], timeout=120)
    run_ffmpeg(["-y", "-f", "lavfi", "-i", "testsrc2=s=320x240:r=25:d=2", "-f", "lavfi", "-i",
                "sine=f=440:r=48000:d=2", "-c:v", "mpeg2video", "-c:a", "pcm_s16le", str(folder / "broadcast.mxf")],
               timeout=120)
    shutil.copyfile(media["flv"], folder / "recording")                  # no extension at all
    shutil.copyfile(media["flv"], folder / "capture.bin")
    run_ffmpeg(["-y", "-f", "lavfi", "-i", "testsrc2=s=64x48", "-frames:v", "1", str(folder / "cover.jpg")],
               timeout=60)
    (folder / "notes.txt").write_text("shot on a phone\n", encoding="utf-8")
    (folder / "subs.srt").write_text("1\n00:00:00,000 --> 00:00:01,000\nhello\n", encoding="utf-8")
    (folder / "download.part").write_bytes(b"")
    (folder / "random.dat").write_bytes(bytes(range(256)) * 64)
    return folder


def test_a_folder_is_read_by_content_and_the_skips_are_named(mixed_folder):
    clips, skipped = folder_clips(mixed_folder)
    assert sorted(Path(p).name for p in clips.column("path").to_pylist()) == [
        "broadcast.mxf", "capture.bin", "recording", "tape.dv"]
    assert dict(skipped.counts) == {"still image": 1, "text": 2, "empty file": 1,
                                    "no container FFmpeg can demux": 1}
    assert skipped.examples["text"] == ["notes.txt", "subs.srt"]
    text = "\n".join(skipped.lines())
    assert "skipped 5 files" in text and "random.dat" in text and "cover.jpg" in text


def test_the_filter_measures_what_it_found_and_says_what_it_skipped(mixed_folder, tmp_path):
    workdir = Workdir.create(tmp_path / "w")
    summary = run.run_filter(workdir, CONFIG, media_dir=mixed_folder, workers=1)
    assert summary.clips == 4 and sum(summary.skipped.counts.values()) == 5
    assert any("skipped 5 files" in line for line in summary.lines())
    rows = {Path(r["path"]).name: r for r in read_table(workdir.path("quality.parquet")).to_pylist()}
    assert {r["status"] for r in rows.values()} == {"ok"}
    for name in ("tape.dv", "broadcast.mxf", "recording"):
        assert rows[name]["has_video"] and rows[name]["has_audio"] and rows[name]["decode_errors"] == 0, rows[name]
