"""Measuring one clip: geometry, letterbox crop, requested duration, and the per-clip deadline."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from valor_data.curate import checks
from valor_data.curate.analyze import MEASURE_SCHEMA, analyze_clip, deadline
from valor_data.curate.config import FilterConfig
from valor_data.media.ffmpeg import run_ffmpeg

CONFIG = FilterConfig(timeout_s=300)


def _clip(out: Path, video_filter: str, seconds: float = 3.0) -> Path:
    run_ffmpeg(["-y", "-f", "lavfi", "-i", f"testsrc2=s=320x180:r=25:d={seconds}",
                "-f", "lavfi", "-i", f"anoisesrc=a=0.2:r=16000:d={seconds}", "-vf", video_filter,
                "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac",
                "-movflags", "+faststart", str(out)], timeout=120)
    return out


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    return {"letterbox": _clip(folder / "letterbox.mp4", "pad=320:240:0:30:black"),
            "pillarbox": _clip(folder / "pillarbox.mp4", "scale=240:180,pad=320:180:40:0:black")}


def test_letterbox_and_pillarbox_are_measured_as_crops(clips):
    row = analyze_clip("lb", clips["letterbox"], 3.0, CONFIG)
    assert (row["width"], row["height"]) == (320, 240)
    assert 26 <= row["crop_top"] <= 30 and 26 <= row["crop_bottom"] <= 30
    assert row["crop_left"] == row["crop_right"] == 0
    assert row["border_fraction"] == pytest.approx(0.25, abs=0.04)
    assert checks.judge(row, CONFIG) == []                            # measured, not rejected by default
    assert checks.judge(row, FilterConfig(max_border_fraction=0.2)) == ["letterbox"]
    row = analyze_clip("pb", clips["pillarbox"], 3.0, CONFIG)
    assert 34 <= row["crop_left"] <= 40 and 34 <= row["crop_right"] <= 40 and row["crop_top"] == 0


def test_a_row_has_every_measured_column(clips):
    row = analyze_clip("lb", clips["letterbox"], 3.0, CONFIG)
    assert set(row) <= set(MEASURE_SCHEMA.names)
    assert row["status"] == "ok" and row["decode_errors"] == 0 and row["sampled_frames"] == 8
    assert row["duration_s"] == pytest.approx(3.0, abs=0.1) and row["fps"] == pytest.approx(25, abs=1)
    assert len(row["frame_hashes"]) == 8 and len(row["frame_tiny"]) == 8 * 64 and len(row["audio_fp"]) > 20


def test_requested_duration_is_judged(clips):
    row = analyze_clip("lb", clips["letterbox"], 10.0, CONFIG)     # the manifest asked for 10 s
    assert checks.judge(row, CONFIG) == ["too_short"]


def test_a_file_that_never_ends_times_out(tmp_path, clips):
    """A pipe that sends a header and stalls: the per-clip deadline stops the blocked read."""
    fifo = tmp_path / "stalled.mp4"
    os.mkfifo(fifo)
    head = clips["letterbox"].read_bytes()[:4096]
    release = threading.Event()

    def writer():
        with open(fifo, "wb") as fh:
            fh.write(head)
            fh.flush()
            release.wait(60)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    started = time.monotonic()
    try:
        row = analyze_clip("stalled", fifo, None, FilterConfig(timeout_s=1.0))
    finally:
        release.set()
        thread.join()
    assert row["status"] == "timeout" and time.monotonic() - started < 30
    assert checks.judge(row, CONFIG) == ["timeout"]


def test_the_deadline_interrupts_python_code_and_leaves_no_signal_behind():
    with deadline(0.2) as expired:
        with pytest.raises(Exception, match="no result within"):
            while True:
                time.sleep(0.01)
    assert expired.is_set()
    with deadline(5) as expired:
        pass
    time.sleep(0.1)
    assert not expired.is_set()


def test_missing_media_is_a_row(tmp_path):
    row = analyze_clip("gone", tmp_path / "gone.mp4", 10.0, CONFIG)
    assert row["status"] == "missing" and checks.judge(row, CONFIG) == ["missing_media"]
