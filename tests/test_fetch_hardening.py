"""Fetch against a hostile server (tests/faultserver.py): every wait has a bound, every bad input
its right outcome, a failed clip keeps no media, and the MP4 keeps the source's audio format.

Each wait is run under ``within``: the code before these fixes waited hours (a Retry-After of
100,000 s, a server trickling a byte at a time), so a regression fails here instead of hanging."""

from __future__ import annotations

import threading
import time

import av
import pytest
from faultserver import FaultServer

from valor_data.fetch import http
from valor_data.fetch.backoff import SharedBackoff
from valor_data.fetch.config import FetchConfig
from valor_data.fetch.normalize import Source, normalize
from valor_data.fetch.outcome import FetchFailure
from valor_data.fetch.worker import fetch_clip, make_env
from valor_data.media.ffmpeg import run_ffmpeg
from valor_data.workdir import Workdir

TIMEOUT_S = 1.0
FAST = dict(timeout_s=TIMEOUT_S, retries=1, backoff_s=0.05, backoff_max_s=0.2, rate_limit_wait_s=0.1,
            rate_limit_max_s=0.3, rate_limit_retries=1, clip_timeout_s=30)
PAYLOAD = bytes(range(256)) * 1200          # 307,200 bytes of "media" for the download tests


def within(seconds: float, fn):
    """``fn()`` in a daemon thread; fail when it is not done after ``seconds``."""
    out: dict = {}

    def target():
        try:
            out["value"] = fn()
        except BaseException as exc:   # re-raised in the test's thread
            out["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still waiting after {seconds} s"
    if "error" in out:
        raise out["error"]
    return out["value"]


def fetch(workdir: Workdir, url: str, cfg: FetchConfig, start=None, end=None, clip_id="c1") -> dict:
    row = {"clip_id": clip_id, "url": url, "start_s": start, "end_s": end, "source": "urls"}
    return fetch_clip(row, make_env(workdir, cfg))


def failure_of(fn) -> FetchFailure:
    with pytest.raises(FetchFailure) as info:
        fn()
    return info.value


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict:
    """Small sources: stereo (index at the end: no faststart), 5.1 and mono audio, with video."""
    folder = tmp_path_factory.mktemp("hardening-media")
    audio = {"stereo": "aevalsrc=sin(440*2*PI*t)|sin(660*2*PI*t):s=44100:d=4",
             "surround": "aevalsrc=" + "|".join(f"sin({220 * (i + 1)}*2*PI*t)" for i in range(6))
                         + ":s=48000:c=5.1:d=4",
             "mono": "sine=f=440:r=22050:d=4"}
    out = {}
    for name, graph in audio.items():
        out[name] = folder / f"{name}.mp4"
        run_ffmpeg(["-y", "-f", "lavfi", "-i", "testsrc=s=160x120:r=25:d=4", "-f", "lavfi", "-i", graph,
                    "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest", str(out[name])])
    with open(out["stereo"], "rb") as fh:
        data = fh.read()
    assert data.rfind(b"moov") > data.find(b"mdat") > 0, "want the index (moov) after the media data"
    return out


@pytest.fixture()
def workdir(tmp_path) -> Workdir:
    return Workdir.create(tmp_path / "w")


# --- Retry-After ----------------------------------------------------------------------------

def test_a_huge_retry_after_is_capped_on_429_and_503(workdir):
    backoff = SharedBackoff(workdir.path("fetch", "b.json"), 1.0, 5.0)
    assert backoff.hit(100000.0, "HTTP 429") <= 5.0 + 1e-3         # rate_limit_max_s, not 100,000 s
    cfg = FetchConfig(**FAST)
    with FaultServer({"/a.mp4": PAYLOAD}) as server:
        server.rule("/a.mp4", "retry_after", code=503, retry_after="100000")
        row = within(10, lambda: fetch(workdir, server.url + "/a.mp4", cfg))
        assert (row["status"], row["error_class"], row["attempts"]) == ("failed_transient", "HTTP503", 2)
        assert row["seconds"] < 2 * TIMEOUT_S        # one wait of at most backoff_max_s between the tries
        server.rule("/a.mp4", "retry_after", code=429, retry_after="100000")
        row = within(10, lambda: fetch(workdir, server.url + "/a.mp4", cfg))
    assert (row["status"], row["error_class"]) == ("rate_limited", "HTTP429")
    pause = SharedBackoff(workdir.path("fetch", "backoff.json"), 1.0, 5.0).state()["until"] - time.time()
    assert pause <= cfg.rate_limit_max_s


# --- whole-file downloads: a deadline and a minimum rate --------------------------------------

def test_a_download_from_a_trickling_server_ends_within_its_stated_bound(tmp_path):
    """The longest wait of fetch: headers within timeout_s, then less than min_rate_bytes_s ends
    the transfer within 2 x timeout_s: 3 x timeout_s in all (http.py states it)."""
    cfg = FetchConfig(**FAST)
    bound = 3 * TIMEOUT_S
    with FaultServer({"/a.mp4": PAYLOAD}) as server:
        server.rule("/a.mp4", "trickle_body", interval_s=0.05)       # a byte every 50 ms, forever
        dest = tmp_path / "a.part"
        started = time.monotonic()
        failure = within(bound + 5, lambda: failure_of(lambda: http.download(server.url + "/a.mp4", dest, cfg)))
        took = time.monotonic() - started
        assert (failure.status, failure.error_class) == ("failed_transient", "TooSlow") and took <= bound + 0.5
        assert "min_rate_bytes_s" in str(failure)
        got = dest.read_bytes()
        assert 0 < len(got) < 100 and got == PAYLOAD[: len(got)]          # what came is kept for the resume

        server.rule("/a.mp4", "trickle_headers", interval_s=0.2)     # the headers, a byte every 200 ms
        started = time.monotonic()
        failure = within(10, lambda: failure_of(lambda: http.download(server.url + "/a.mp4", tmp_path / "b", cfg)))
        assert (failure.status, failure.error_class) == ("failed_transient", "Timeout")
        assert time.monotonic() - started <= TIMEOUT_S + 1.0

        fast_enough = FetchConfig(**FAST, http={"min_rate_bytes_s": 1, "download_timeout_s": 1.5})
        server.rule("/a.mp4", "trickle_body", interval_s=0.05)      # 20 B/s: above the rate, never done
        started = time.monotonic()
        failure = within(10, lambda: failure_of(lambda: http.download(server.url + "/a.mp4", tmp_path / "c",
                                                                      fast_enough)))
        assert failure.error_class == "TooSlow" and "download_timeout_s" in str(failure)
        assert 1.5 <= time.monotonic() - started <= 1.5 + 1.0


# --- cut mode (ffmpeg reads the URL) ---------------------------------------------------------

def test_cut_mode_gives_up_quickly_on_a_silent_server_and_refuses_a_huge_length(workdir):
    cfg = FetchConfig(**FAST)
    with FaultServer({"/a.mp4": PAYLOAD}) as server:
        server.rule("/a.mp4", "silent")
        row = within(15, lambda: fetch(workdir, server.url + "/a.mp4", cfg, 0.0, 2.0))
        assert (row["status"], row["error_class"], row["attempts"]) == ("failed_transient", "Timeout", 2)
        # each try: the probe's timeout_s, never an ffmpeg run with its reconnects; one back-off between
        assert row["seconds"] <= 2 * TIMEOUT_S + cfg.backoff_max_s + 1.0 and server.count("/a.mp4") == 2
        server.rule("/a.mp4", "huge_length")
        before = server.count("/a.mp4")
        row = within(10, lambda: fetch(workdir, server.url + "/a.mp4", cfg, 0.0, 2.0))
        assert (row["status"], row["error_class"], row["attempts"]) == ("failed_permanent", "TooLarge", 1)
        assert server.count("/a.mp4") - before == 1


# --- misclassified inputs ---------------------------------------------------------------------

def test_an_mp4_indexed_at_the_end_from_a_server_ignoring_range_is_fetched(workdir, media):
    with FaultServer({"/s.mp4": media["stereo"].read_bytes()}) as server:
        server.rule("/s.mp4", "ignore_range")
        row = within(60, lambda: fetch(workdir, server.url + "/s.mp4", FetchConfig(**FAST), 1.0, 3.0))
    assert (row["status"], row["method"]) == ("ok", "download"), row
    assert abs(row["duration_s"] - 2.0) <= 0.05


@pytest.mark.parametrize("bad", [" ", "\r\nX-Injected: 1", "\n", "\x00"])
def test_a_url_with_whitespace_or_control_characters_is_a_permanent_bad_url(workdir, bad):
    with FaultServer({"/a.mp4": PAYLOAD}) as server:
        url = f"{server.url}/a{bad}.mp4"
        for start, end in ((None, None), (0.0, 2.0)):          # download and cut
            row = within(10, lambda s=start, e=end: fetch(workdir, url, FetchConfig(**FAST), s, e))
            assert (row["status"], row["error_class"], row["attempts"]) == ("failed_permanent", "BadUrl", 1)
        assert server.requests == []


def test_an_ffconcat_payload_and_an_end_of_1e308_are_permanent(workdir):
    script = b"ffconcat version 1.0\nfile 'http://127.0.0.1:9/other.mp4'\n"
    cfg = FetchConfig(**FAST)
    with FaultServer({"/list.mp4": script, "/a.mp4": PAYLOAD}) as server:
        for start, end in ((None, None), (0.0, 2.0)):
            row = within(10, lambda s=start, e=end: fetch(workdir, server.url + "/list.mp4", cfg, s, e))
            assert (row["status"], row["error_class"], row["attempts"]) == ("failed_permanent", "NotMedia", 1)
        row = within(10, lambda: fetch(workdir, server.url + "/a.mp4", cfg, 0.0, 1e308))
    assert (row["status"], row["error_class"], row["attempts"]) == ("failed_permanent", "BadSegment", 1)


@pytest.mark.parametrize("kind", ["stall_close", "rst"])
def test_the_bytes_before_a_stall_or_a_reset_are_kept_and_counted(tmp_path, kind):
    cfg = FetchConfig(**FAST)
    dest = tmp_path / "a.part"
    with FaultServer({"/a.mp4": PAYLOAD}) as server:
        server.rule("/a.mp4", kind, times=1, fraction=0.5, seconds=3 * TIMEOUT_S)
        failure = within(10, lambda: failure_of(lambda: http.download(server.url + "/a.mp4", dest, cfg)))
        have = dest.stat().st_size
        assert failure.status == "failed_transient" and 0 < have <= len(PAYLOAD) // 2
        assert dest.read_bytes() == PAYLOAD[:have]
        if kind == "stall_close":       # the socket timeout ended the read: everything sent was received
            assert have == len(PAYLOAD) // 2 and f"got {have:,} of {len(PAYLOAD):,}" in str(failure)
        assert within(10, lambda: http.download(server.url + "/a.mp4", dest, cfg)) == len(PAYLOAD)
        assert server.requests[-1] == ("/a.mp4", f"bytes={have}-") and dest.read_bytes() == PAYLOAD


# --- a failed clip keeps no media -------------------------------------------------------------

def test_a_failed_rerun_removes_the_media_a_killed_run_published(workdir):
    from valor_data.fetch.store import MediaStore

    store = MediaStore(workdir)
    temps = {ext: store.temp("c1", ext) for ext in ("mp4", "flac")}
    for tmp in temps.values():
        tmp.write_bytes(b"from a killed run")
    store.publish("c1", temps)                       # published, then killed before its row was written
    with FaultServer({}) as server:
        row = within(10, lambda: fetch(workdir, server.url + "/gone.mp4", FetchConfig(**FAST)))
    assert (row["status"], row["error_class"]) == ("failed_permanent", "HTTP404")
    assert not workdir.media_path("c1", "mp4").exists() and not workdir.media_path("c1", "flac").exists()


# --- the MP4's audio ---------------------------------------------------------------------------

def audio_format(path) -> tuple[int, int]:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        return stream.codec_context.sample_rate, stream.codec_context.channels


@pytest.mark.parametrize("name, rate, channels", [("stereo", 48000, 2), ("surround", 44100, 2), ("mono", 48000, 1)])
def test_the_mp4_keeps_the_source_channels_at_a_standard_rate_and_the_flac_is_16k_mono(
        media, tmp_path, name, rate, channels):
    cfg = FetchConfig(mp4_audio_rate=rate)
    mp4, flac = tmp_path / "a.mp4", tmp_path / "a.flac"
    done = within(60, lambda: normalize([Source(str(media[name]))], 0.5, 3.5, mp4, flac, cfg))
    assert done.has_audio and abs(done.duration_s - 3.0) <= 0.05
    assert audio_format(mp4) == (rate, channels)           # 5.1 is mixed down to stereo
    assert audio_format(flac) == (16000, 1)
