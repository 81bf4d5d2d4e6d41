"""The YouTube path of ``fetch_clip`` on stored player results of YouTube's 2026 shape: yt-dlp's
own extractor plumbing and format selection (``tests/ytdlp_stored.py``), streams and the cut on a
loopback server with a real ffmpeg. ``available_at`` in the future is waited for, a storyboard-only
result (what a session without a JS runtime gets) is a block and not a loss, and the configured
player clients are tried in turn."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from ytdlp_stored import (
    N_CHALLENGE_FAILED,
    StoredYoutubeIE,
    dash_formats,
    stored_extractor,
    storyboards,
    youtube_info,
)

from valor_data.fetch import youtube
from valor_data.fetch.config import FetchConfig, YouTubeConfig
from valor_data.fetch.outcome import FetchFailure
from valor_data.fetch.worker import fetch_clip, make_env
from valor_data.media.ffmpeg import run_ffmpeg
from valor_data.synth.server import Fault, LoopbackServer
from valor_data.workdir import Workdir

SOURCE_S, START, END = 12.0, 2.0, 7.0
FAST = dict(workers=1, threads=1, timeout_s=5.0, retries=0, backoff_s=0.05, backoff_max_s=0.1)


@pytest.fixture(scope="module")
def streams(tmp_path_factory):
    """A video-only MP4 and an audio-only M4A (YouTube's 134 + 140 pair) served on loopback."""
    folder = tmp_path_factory.mktemp("stored-youtube")
    (folder / "dash").mkdir()
    run_ffmpeg(["-y", "-f", "lavfi", "-i", f"testsrc2=size=640x360:rate=25:duration={SOURCE_S}", "-c:v", "libx264",
                "-preset", "ultrafast", "-g", "25", "-pix_fmt", "yuv420p", str(folder / "dash" / "v.mp4")])
    run_ffmpeg(["-y", "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=44100:duration={SOURCE_S}",
                "-c:a", "aac", "-b:a", "128k", str(folder / "dash" / "a.m4a")])
    with LoopbackServer(folder) as server:
        yield server
        server.clear_faults()


def _info(server: LoopbackServer, video_id: str, available_at: int | None = None, video: str = "v.mp4") -> dict:
    formats = storyboards(video_id) + dash_formats(f"{server.url}/dash/{video}", f"{server.url}/dash/a.m4a",
                                                   available_at)
    return youtube_info(video_id, SOURCE_S, formats)


def _fetch(server: LoopbackServer, tmp_path, video_id: str, scenarios: dict, monkeypatch, **youtube_cfg) -> dict:
    """``fetch_clip`` of one AudioSet-style row in a fresh thread (so a fresh YoutubeDL sees the extractor)."""
    cfg = FetchConfig(**FAST, youtube=YouTubeConfig(min_gap_s=0.0, videos_per_hour=36_000, **youtube_cfg))
    row = {"clip_id": f"{video_id}_2000", "source": "audioset", "video_id": video_id,
           "url": f"{server.url}/watch?v={video_id}", "start_s": START, "end_s": END}
    env = make_env(Workdir.create(tmp_path / video_id), cfg)
    with stored_extractor(monkeypatch, scenarios):
        return ThreadPoolExecutor(1).submit(fetch_clip, row, env).result(timeout=120)


def _cut(server: LoopbackServer, tmp_path, video_id: str, scenarios: dict, monkeypatch, **youtube_cfg):
    """``youtube.fetch_youtube`` alone (no retry loop) in a fresh thread: its FetchFailure, or None."""
    cfg = FetchConfig(**FAST, youtube=YouTubeConfig(**youtube_cfg))
    trace: dict = {}
    with stored_extractor(monkeypatch, scenarios):
        future = ThreadPoolExecutor(1).submit(
            youtube.fetch_youtube, f"{server.url}/watch?v={video_id}", START, END, tmp_path / "x.mp4",
            tmp_path / "x.flac", cfg, tmp_path / "staging", trace)
        try:
            future.result(timeout=120)
        except FetchFailure as failure:
            return failure, trace
    return None, trace


def test_available_at_in_the_future_is_waited_for_before_ffmpeg_reads(streams, tmp_path, monkeypatch):
    video_id = "avail0000at"
    available_at = int(time.time()) + 3           # YouTube's Unix-seconds pre-roll (a 3 s ad)
    seen_early: list = []
    watcher = threading.Timer(max(0.0, available_at - 0.4 - time.time()),
                              lambda: seen_early.extend(p for _, p, _ in streams.requests if p.startswith("/dash/")))
    watcher.start()
    row = _fetch(streams, tmp_path, video_id, {(video_id, "default"): {"info": _info(streams, video_id, available_at)}},
                 monkeypatch)
    watcher.join()
    assert (row["status"], row["formats"], row["method"]) == ("ok", "134+140", "cut"), row
    assert abs(row["duration_s"] - (END - START)) < 0.05
    assert seen_early == []                               # nothing read the streams before available_at
    assert row["seconds"] >= 2.0 and row["client"] is None   # yt-dlp's own client choice


def test_a_storyboard_only_result_is_a_block_not_a_loss(streams, tmp_path, monkeypatch):
    """Without a JS runtime the clients drop every format whose challenge is unsolved: storyboards remain."""
    video_id = "story000000"
    info = youtube_info(video_id, SOURCE_S, storyboards(video_id))
    before = youtube.warning_counts()
    failure, _ = _cut(streams, tmp_path, video_id, {(video_id, "default"): {"info": info,
                                                                           "warnings": [N_CHALLENGE_FAILED]}},
                      monkeypatch)
    assert (failure.status, failure.error_class) == ("blocked", "NoFormats"), failure   # retryable, not permanent
    assert "Requested format is not available" in str(failure) and "n challenge solving failed" in str(failure)
    warned = youtube.warnings_since(before)      # ours, and yt-dlp's own "Only images are available"
    assert warned["n challenge solving failed"] == 1 and warned["Only images are available for download"] == 1


def test_player_clients_are_tried_in_turn_before_anything_is_recorded(streams, tmp_path, monkeypatch):
    video_id = "clients0000"
    streams.add_fault("/dash/forbidden.mp4", Fault("status", code=403), None)
    scenarios = {
        (video_id, "tv"): {"info": youtube_info(video_id, SOURCE_S, storyboards(video_id)),
                           "warnings": [N_CHALLENGE_FAILED]},                      # no formats
        (video_id, "web_embedded"): {"info": _info(streams, video_id, video="forbidden.mp4")},   # its stream 403s
        (video_id, "web_safari"): {"info": _info(streams, video_id)},
    }
    row = _fetch(streams, tmp_path, video_id, scenarios, monkeypatch, player_clients=["tv", "web_embedded", "web_safari"])
    assert (row["status"], row["client"], row["attempts"]) == ("ok", "web_safari", 1), row
    assert StoredYoutubeIE.asked == [(video_id, "tv"), (video_id, "web_embedded"), (video_id, "web_safari")]
    assert abs(row["duration_s"] - (END - START)) < 0.05

    failure, trace = _cut(streams, tmp_path, video_id, {(video_id, "tv"): scenarios[(video_id, "tv")]},
                          monkeypatch, player_clients=["tv"])     # the last client's outcome is what is recorded
    assert (failure.status, failure.error_class) == ("blocked", "NoFormats") and trace == {}


# yt-dlp 2026.10.26, _video.py: a non-web client whose https formats lack a URL (SABR-only)
SABR_ONLY = ("Some tv client https formats have been skipped as they are missing a URL. YouTube may have enabled "
             "the SABR-only streaming experiment for the current session. See  "
             "https://github.com/yt-dlp/yt-dlp/issues/12482  for more details")


def test_a_sabr_only_result_is_a_block_and_the_next_client_is_tried(streams, tmp_path, monkeypatch):
    """SABR-only formats carry no URL, so yt-dlp skips them: only storyboards remain. That is the session's
    experiment, not the video's loss: blocked, and the next configured client resolves before anything is recorded."""
    video_id = "sabronly000"
    sabr = {"info": youtube_info(video_id, SOURCE_S, storyboards(video_id)), "warnings": [SABR_ONLY]}
    failure, _ = _cut(streams, tmp_path, video_id, {(video_id, "tv"): sabr}, monkeypatch, player_clients=["tv"])
    assert (failure.status, failure.error_class) == ("blocked", "NoFormats"), failure
    assert "formats have been skipped as they are missing a URL" in str(failure)   # the warning is named
    row = _fetch(streams, tmp_path, video_id, {(video_id, "tv"): sabr, (video_id, "web_safari"): {"info": _info(streams, video_id)}},
                 monkeypatch, player_clients=["tv", "web_safari"])
    assert (row["status"], row["client"]) == ("ok", "web_safari"), row
