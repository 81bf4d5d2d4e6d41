"""Fetch pieces without ffmpeg: format selection on stored extract_info dicts of YouTube's
shape, error classification, config, the shared back-off, and http downloads on loopback."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import random
import time
from pathlib import Path

import pytest
from yt_dlp.networking import Response
from yt_dlp.networking.exceptions import HTTPError, TransportError
from yt_dlp.utils import DownloadError, ExtractorError, GeoRestrictedError

from valor_data.config import load_pipeline
from valor_data.errors import ConfigError, ValorError
from valor_data.fetch import http, outcome
from valor_data.fetch.backoff import SharedBackoff
from valor_data.fetch.config import FetchConfig, YouTubeConfig, load_fetch_config
from valor_data.fetch.formats import select_formats
from valor_data.fetch.normalize import ffmpeg_args, parse_inputs
from valor_data.fetch.outcome import DiskFullError, FetchFailure
from valor_data.fetch.youtube import classify, sources, ydl_options
from valor_data.synth.server import Fault, LoopbackServer

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).resolve().parents[1]


def info(name: str) -> dict:
    return json.loads((DATA / f"ytdlp_youtube_{name}.json").read_text())


# --- format selection -------------------------------------------------------------------

@pytest.mark.parametrize("name, kwargs, expected", [
    ("landscape", {}, "134+140"),                                    # 360p avc1 + m4a 128k (not DRC, not 18)
    ("landscape", {"max_short_side": 480}, "135+140"),
    ("landscape", {"max_short_side": 400}, "135+140"),               # the smallest at or above the target
    ("landscape", {"video_codecs": ["vp9", "avc1"]}, "243+140"),
    ("landscape", {"audio_codecs": ["opus"], "audio_kbps": 60}, "134+250"),
    ("landscape", {"max_short_side": 720, "max_fps": 30}, "136+140"),  # 720p30 over 720p60
    ("landscape", {"prefer_progressive": True}, "18"),
    ("portrait", {}, "134+140"),                                     # short side is the width
    ("portrait", {"max_short_side": 720}, "136+140"),
    ("lowres_dubbed", {}, "133+140-0"),                              # largest below target; original audio
    ("progressive_only", {}, "18"),                                  # DRM and storyboards left out
])
def test_select_formats_on_youtube_shaped_info(name, kwargs, expected):
    target = kwargs.pop("max_short_side", 360)
    max_fps = kwargs.pop("max_fps", None)
    selection = select_formats(info(name), YouTubeConfig(**kwargs), target, max_fps)
    assert selection.ids == expected


def test_selection_gives_ffmpeg_inputs_with_headers():
    selection = select_formats(info("landscape"), YouTubeConfig(), 360)
    assert not selection.muxed and selection.video["vcodec"].startswith("avc1")
    assert selection.audio["acodec"] == "mp4a.40.2" and "drc" not in selection.audio["format_id"]
    inputs = sources(selection, FetchConfig(youtube=YouTubeConfig(proxy="http://proxy:3128")))
    assert [(s.video, s.audio) for s in inputs] == [(True, False), (False, True)]
    assert "itag=134" in inputs[0].location and "itag=140" in inputs[1].location
    assert dict(inputs[0].headers)["User-Agent"].startswith("Mozilla/5.0")
    assert inputs[0].proxy == "http://proxy:3128"
    muxed = sources(select_formats(info("progressive_only"), YouTubeConfig(), 360), FetchConfig())
    assert len(muxed) == 1 and muxed[0].video and muxed[0].audio


def test_ytdlp_options_come_from_the_config_only(tmp_path):
    cookies = tmp_path / "cookies.txt"
    cookies.write_text("# Netscape HTTP Cookie File\n.googlevideo.com\tTRUE\t/\tTRUE\t2147483647\tSID\tabc123\n")
    yt = YouTubeConfig(cookies_file=str(cookies), proxy="http://127.0.0.1:3128", rate_limit="2M", sleep_requests_s=0.5,
                       extractor_args={"youtube": {"player_client": ["web"]}})
    cfg = FetchConfig(youtube=yt, timeout_s=12)
    opts = ydl_options(cfg)
    assert opts["cookiefile"] == str(cookies) and opts["proxy"] == "http://127.0.0.1:3128"
    assert opts["ratelimit"] == 2 * 1024 * 1024 and opts["sleep_interval_requests"] == 0.5
    assert opts["extractor_args"] == {"youtube": {"player_client": ["web"]}} and opts["socket_timeout"] == 12
    assert "format_sort" not in ydl_options(FetchConfig())
    inputs = sources(select_formats(info("landscape"), yt, 360), cfg)
    assert all(dict(s.headers)["Cookie"] == "SID=abc123" for s in inputs)   # the stream reads carry the cookies


def test_selection_of_a_direct_media_url_and_of_nothing():
    generic = {"id": "x", "formats": [{"format_id": "mp4", "url": "http://127.0.0.1/x.mp4", "ext": "mp4",
                                       "vcodec": None, "protocol": "http"}]}
    selection = select_formats(generic, YouTubeConfig(), 360)
    assert selection.muxed and selection.ids == "mp4"
    audio_only = {"formats": [{"format_id": "251", "url": "https://a", "vcodec": "none", "acodec": "opus", "abr": 130}]}
    assert select_formats(audio_only, YouTubeConfig(), 360).ids == "251"
    storyboards = {"formats": [f for f in info("landscape")["formats"] if f["format_id"].startswith("sb")]}
    assert select_formats(storyboards, YouTubeConfig(), 360) is None


# --- classification ---------------------------------------------------------------------

def _http_error(status: int, headers: dict | None = None) -> HTTPError:
    return HTTPError(Response(io.BytesIO(b""), "https://www.youtube.com/watch?v=x", headers or {}, status=status))


def _wrapped(exc: Exception) -> DownloadError:
    """How YoutubeDL.extract_info raises: a DownloadError carrying the original in exc_info."""
    return DownloadError(f"ERROR: [youtube] x: {exc}", (type(exc), exc, None))


@pytest.mark.parametrize("exc, status, error_class", [
    (ExtractorError("Video unavailable. This video has been removed by the uploader", expected=True),
     "unavailable", "Unavailable"),
    (ExtractorError("Private video. Sign in if you've been granted access to this video", expected=True),
     "unavailable", "Unavailable"),
    (GeoRestrictedError("The uploader has not made this video available in your country"), "unavailable", "Unavailable"),
    (ExtractorError("Sign in to confirm your age. This video may be inappropriate for some users.", expected=True),
     "unavailable", "Unavailable"),
    (ExtractorError("Join this channel to get access to members-only content like this video", expected=True),
     "unavailable", "Unavailable"),
    (ExtractorError("Sign in to confirm you\u2019re not a bot. Use --cookies-from-browser", expected=True),
     "blocked", "BotCheck"),          # the session, not the rate (more in test_fetch_classify.py)
    (ExtractorError("This content isn't available, try again later. The current session has been rate-limited",
                    expected=True), "rate_limited", "RateLimited"),
    (_http_error(429, {"Retry-After": "7"}), "rate_limited", "HTTP429"),
    (_http_error(404), "failed_permanent", "HTTP404"),
    (_http_error(403), "failed_transient", "HTTP403"),          # YouTube says "unavailable" in words
    (_http_error(503), "failed_transient", "HTTP503"),
    (TransportError("Read timed out. (read timeout=30)"), "failed_transient", "Network"),
    (ExtractorError("Unsupported URL: https://example.com/page", expected=True), "failed_permanent", "NoFormats"),
    (ExtractorError("Something odd in the player response"), "failed_transient", "Extractor"),
])
def test_classify_ytdlp_errors(exc, status, error_class):
    failure = classify(_wrapped(exc))
    assert (failure.status, failure.error_class) == (status, error_class)
    if error_class == "HTTP429":
        assert failure.retry_after == 7


def test_classify_ffmpeg_stderr_and_http_statuses():
    cases = {
        "[http @ 0x1] HTTP error 429 Too Many Requests\nServer returned 429 Too Many Requests": "rate_limited",
        "[http @ 0x1] HTTP error 500 Internal Server Error\nServer returned 5XX Server Error reply": "failed_transient",
        "[http @ 0x1] HTTP error 404 Not Found\nError opening input: Server returned 404 Not Found": "failed_permanent",
        "[http @ 0x1] HTTP error 410 Gone": "unavailable",
        "[in#0 @ 0x1] moov atom not found\nError opening input: Invalid data found when processing input":
            "failed_permanent",
        "[http @ 0x1] Error reading HTTP response: Connection timed out": "failed_transient",
        "some new message nobody has seen": "failed_transient",
    }
    for stderr, status in cases.items():
        assert outcome.from_ffmpeg(stderr, 1).status == status, stderr
    assert outcome.from_http_status(451, "x").status == "unavailable"
    assert outcome.from_http_status(408, "x").status == "failed_transient"
    assert outcome.parse_retry_after("12") == 12 and outcome.parse_retry_after(None) is None
    assert 0 <= outcome.parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") < 1


def test_disk_full_is_recognised_everywhere():
    """ENOSPC stops the run instead of becoming a clip outcome (also see the tmpfs test)."""
    with pytest.raises(DiskFullError, match="no space left"):
        outcome.from_ffmpeg("[out#0/mp4 @ 0x1] Error writing trailer: No space left on device", 1)
    assert outcome.is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert not outcome.is_disk_full(OSError(errno.EACCES, "Permission denied"))
    with pytest.raises(DiskFullError):
        classify(DownloadError("ERROR: unable to write data: [Errno 28] No space left on device"))


def test_retry_delay_is_bounded_exponential_with_jitter():
    rng = random.Random(1)
    delays = [[outcome.retry_delay(a, 2.0, 30.0, rng) for _ in range(200)] for a in (1, 2, 3, 6)]
    assert all(0 <= d <= 2 for d in delays[0]) and all(0 <= d <= 30 for d in delays[3])
    assert max(delays[1]) > 2 and max(delays[2]) > 4 and len(set(delays[0])) > 100


def test_only_http_and_enabled_file_urls_are_accepted():
    from valor_data.fetch.worker import _handler

    for url in ("ftp://host/x.mp4", "data:video/mp4;base64,AAAA", "/etc/passwd", "http:///nohost", "", "file:///x.mp4"):
        with pytest.raises(FetchFailure) as info:
            _handler({"url": url, "source": "urls"}, FetchConfig())
        assert info.value.status == "failed_permanent" and info.value.error_class in ("BadUrl", "FileUrlRefused")
    assert _handler({"url": "file:///x.mp4"}, FetchConfig(allow_file_urls=True)).__name__ == "_fetch_file"
    assert _handler({"url": "https://youtu.be/abc", "source": "urls"}, FetchConfig()).__name__ == "_fetch_youtube"
    assert _handler({"url": "https://cdn.example/a.mp4", "source": "youku"}, FetchConfig()).__name__ == "_fetch_http"
    # a local --base-url folder gives Youku rows plain paths; only those are read without allow_file_urls
    assert _handler({"url": "/data/youku/videos/pretrain/a.flv", "source": "youku"}, FetchConfig()).__name__ == \
        "_fetch_file"


# --- config -----------------------------------------------------------------------------

def test_fetch_config_from_pipeline_yaml_and_flags(tmp_path):
    for name in ("valor", "youku_mplug"):
        config = load_fetch_config(load_pipeline(ROOT / "pipelines" / f"{name}.yaml"))
        assert config.max_short_side == 360 and config.audio_rate == 16000
    pipeline = {"fetch": {"threads": 2, "youtube": {"sleep_s": 1.5, "format_sort": ["res:360"]}, "http": {}}}
    config = load_fetch_config(pipeline, {"threads": 5, "max_fps": None}, {"proxy": "http://127.0.0.1:3128"})
    assert config.threads == 5 and config.max_fps is None
    assert config.youtube.sleep_s == 1.5 and config.youtube.proxy == "http://127.0.0.1:3128"
    with pytest.raises(ConfigError, match="unknown key"):
        load_fetch_config({"fetch": {"youtube": {"cookie": "x"}}})
    with pytest.raises(ConfigError, match="max_short_side"):
        load_fetch_config({"fetch": {"max_short_side": 361}})


def test_ffmpeg_arguments_are_a_list_with_both_outputs():
    cfg = FetchConfig(max_fps=15)
    from valor_data.fetch.normalize import Source

    args = ffmpeg_args([Source("https://v.example/x", audio=False), Source("https://a.example/y", video=False)],
                       30.0, 40.0, Path("/w/a.mp4"), Path("/w/a.flac"), cfg)
    assert args.count("-ss") == 2 and args.count("-t") == 2 and args.count("-i") == 2
    assert args[args.index("-t") + 1] == "10.000000"
    assert ["-map", "0:V:0?"] == args[args.index("-map"): args.index("-map") + 2]
    graph = args[args.index("-filter_complex") + 1]    # one aligned audio chain, split to both outputs
    assert graph.startswith("[1:a:0]aresample=async=1:first_pts=0,asplit=2[m][f];") and graph.count("async") == 1
    assert ["-map", "[aflac]"] == args[args.index("/w/a.mp4") + 1: args.index("/w/a.mp4") + 3]
    assert "-fpsmax" in args and "libx264" in args and "flac" in args
    assert args[-1] == "/w/a.flac" and "/w/a.mp4" in args
    stderr = ("Input #0, mov,mp4, from 'x':\n  Duration: 00:00:36.50, start: 0.000000, bitrate: 625 kb/s\n"
              "  Stream #0:0[0x1](und): Video: h264, yuv420p, 480x360\n"
              "Input #1, mov, from 'y':\n  Duration: 00:01:02.00, start: 0.0\n"
              "  Stream #1:0[0x1](und): Audio: aac (LC), 44100 Hz\n  Stream #1:1: Video: mjpeg (attached pic)\n"
              "Output #0, mp4, to 'a.mp4':\n  Stream #0:0: Video: h264\n")
    inputs = parse_inputs(stderr)
    assert inputs.durations == [36.5, 62.0] and inputs.streams == {0: {"Video"}, 1: {"Audio"}}
    assert inputs.video == {0: "h264, yuv420p, 480x360"}


@pytest.mark.parametrize("description, expected", [
    ("h264 (High) (avc1 / 0x31637661), yuv420p(progressive), 1280x720 [SAR 1:1 DAR 16:9], 73 kb/s, 10 fps, 10 tbr",
     73_000 / (1280 * 720 * 10)),
    ("vp6f, yuv420p, 112x80, 49 kb/s, 10 fps, 10 tbr, 1k tbn", 49_000 / (112 * 80 * 10)),
    ("h264 (avc1 / 0x31637661), none, 1280x720, 447 kb/s, SAR 1:1 DAR 16:9, 23.98 fps, 23.98 tbr",
     447_000 / (1280 * 720 * 23.98)),
    ("vp9 (Profile 0), yuv420p(tv, progressive), 4x4, SAR 1:1 DAR 1:1, 60 fps, 60 tbr", None),   # no bitrate
    ("vp8, yuv420p(progressive), 1280x720, SAR 1:1 DAR 16:9, 24 fps", None),
    (None, None),
])
def test_source_bits_per_pixel_from_ffmpegs_stream_line(description, expected):
    from valor_data.fetch.normalize import bits_per_pixel

    assert bits_per_pixel(description) == (None if expected is None else pytest.approx(expected, abs=1e-5))


def test_decoder_errors_are_counted_from_ffmpegs_log():
    from valor_data.fetch.normalize import decoder_errors

    log = ("[h264 @ 0x55eb16656f80] P sub_mb_type 22 out of range at 6 10\n"
           "[h264 @ 0x55eb16656f80] error while decoding MB 6 10\n"
           "[aist#0:1/aac @ 0x55eb16597740] [dec:aac @ 0x55eb1665c0c0] Error submitting packet to decoder: "
           "Invalid data found when processing input\n"
           "[vist#0:0/h264 @ 0x55eb16582700] [dec:h264 @ 0x55eb1664dcc0] corrupt decoded frame\n"
           "[libx264 @ 0x55eb165eb180] using cpu capabilities: MMX2 SSE2Fast\n"
           "[mp4 @ 0x5] Starting second pass: moving the moov atom to the beginning of the file\n")
    assert decoder_errors(log) == 3 and decoder_errors("") == 0


# --- shared back-off --------------------------------------------------------------------

def test_shared_backoff_is_seen_by_every_worker_and_honours_retry_after(tmp_path):
    path = tmp_path / "backoff.json"
    one, two = SharedBackoff(path, 10.0, 100.0), SharedBackoff(path, 10.0, 100.0)
    before = time.time()
    one.hit(3.0, "HTTP 429")
    assert two.state()["until"] >= before + 3.0 and two.state()["strikes"] == 1
    one.hit(None, "bot check")       # no Retry-After: 10 s doubled per strike
    assert two.state()["until"] >= before + 20.0 and two.state()["strikes"] == 2
    slept = []
    two.wait(sleep=lambda s: (slept.append(s), path.write_text(json.dumps({"until": 0, "strikes": 2}))))
    assert slept and slept[0] > 0
    two.success()
    assert one.state()["strikes"] == 0


# --- http downloads ---------------------------------------------------------------------

@pytest.fixture()
def served(tmp_path):
    (tmp_path / "media").mkdir()
    payload = random.Random(0).randbytes(300_000)
    (tmp_path / "media" / "clip.mp4").write_bytes(payload)
    (tmp_path / "media" / "empty.mp4").write_bytes(b"")
    (tmp_path / "media" / "page.mp4").write_bytes(b"<!DOCTYPE html><html><body>Error 403</body></html>")
    with LoopbackServer(tmp_path) as server:
        yield server, payload, tmp_path


def test_download_resumes_a_truncated_body_with_range(served):
    server, payload, folder = served
    cfg = FetchConfig(timeout_s=2)
    cfg.http.chunk_bytes = 16_384
    server.add_fault("/media/clip.mp4", Fault("truncate", fraction=0.4), times=1)
    dest = folder / "clip.part"
    with pytest.raises(FetchFailure) as info:
        http.download(server.url + "/media/clip.mp4", dest, cfg)
    assert info.value.status == "failed_transient" and info.value.error_class == "Truncated"
    have = dest.stat().st_size
    assert 0 < have < len(payload)
    assert http.download(server.url + "/media/clip.mp4", dest, cfg) == len(payload)
    assert dest.read_bytes() == payload
    assert server.requests[-1][2] == f"bytes={have}-"


def test_a_resumed_download_is_checked_against_its_checksum(served):
    server, payload, folder = served
    cfg = FetchConfig(timeout_s=2)
    server.add_fault("/media/clip.mp4", Fault("truncate", fraction=0.5), times=1)
    dest = folder / "clip.part"
    with pytest.raises(FetchFailure):
        http.download(server.url + "/media/clip.mp4", dest, cfg)
    http.download(server.url + "/media/clip.mp4", dest, cfg)          # resumed with Range
    http.verify_checksum(dest, "sha256:" + hashlib.sha256(payload).hexdigest())
    http.verify_checksum(dest, "md5:" + hashlib.md5(payload).hexdigest().upper())
    for checksum, error_class in (("sha256:" + hashlib.sha256(b"other").hexdigest(), "ChecksumMismatch"),
                                  ("crc32:deadbeef", "BadChecksum")):
        with pytest.raises(FetchFailure) as info:
            http.verify_checksum(dest, checksum, "http://mirror/clip.mp4")
        assert (info.value.status, info.value.error_class) == ("failed_permanent", error_class)
    assert "the manifest says" in str(info.value) or "not <md5" in str(info.value)


@pytest.mark.parametrize("path, fault, status, error_class", [
    ("/media/clip.mp4", Fault("html"), "failed_permanent", "HtmlPage"),
    ("/media/clip.mp4", Fault("status", code=404), "failed_permanent", "HTTP404"),
    ("/media/clip.mp4", Fault("status", code=429, retry_after=5), "rate_limited", "HTTP429"),
    ("/media/clip.mp4", Fault("status", code=500), "failed_transient", "HTTP500"),
    ("/media/clip.mp4", Fault("stall", seconds=3), "failed_transient", "Timeout"),
    ("/media/clip.mp4", Fault("reset"), "failed_transient", "Network"),
    ("/media/empty.mp4", None, "failed_permanent", "EmptyFile"),
    ("/media/page.mp4", None, "failed_permanent", "HtmlPage"),
])
def test_download_and_diagnose_classify_bad_responses(served, path, fault, status, error_class):
    server, _, folder = served
    cfg = FetchConfig(timeout_s=1)
    for check in (lambda: http.download(server.url + path, folder / "x.part", cfg),
                  lambda: (_ for _ in ()).throw(http.diagnose(server.url + path, cfg) or AssertionError("ok"))):
        if fault is not None:
            server.add_fault(path, fault, times=1)
        with pytest.raises(FetchFailure) as info:
            check()
        assert (info.value.status, info.value.error_class) == (status, error_class)
        if error_class == "HTTP429":
            assert info.value.retry_after == 5
    assert http.diagnose(server.url + "/media/clip.mp4", cfg) is None


# --- media store ------------------------------------------------------------------------

def test_media_store_publishes_atomically_and_cleans_what_a_killed_run_left(tmp_path):
    from valor_data.fetch.store import MediaStore
    from valor_data.workdir import Workdir

    workdir = Workdir.create(tmp_path / "w")
    store = MediaStore(workdir)
    mp4, flac = store.temp("abc_1000", "mp4"), store.temp("abc_1000", "flac")
    assert mp4.parent == workdir.media_path("abc_1000", "mp4").parent and mp4.name.startswith(".abc_1000.mp4.")
    mp4.write_bytes(b"video"), flac.write_bytes(b"audio")
    store.publish("abc_1000", {"flac": flac, "mp4": mp4})
    assert workdir.media_path("abc_1000", "mp4").read_bytes() == b"video" and not mp4.exists()
    leftover = store.temp("abc_1000", "mp4")                       # a killed run's temp ...
    (store.staging / "section-1").mkdir(parents=True)
    (store.staging / "section-1" / "section.mkv").write_bytes(b"x")
    store.downloads.mkdir(parents=True)
    (store.downloads / "abc_1000.part").write_bytes(b"x")
    assert store.clean_stale() == 3 and not leftover.exists()
    assert workdir.media_path("abc_1000", "flac").read_bytes() == b"audio"   # finished media stay
    store.publish("abc_1000", {"flac": None})                       # a source without audio: no FLAC
    assert not workdir.media_path("abc_1000", "flac").exists()
    with pytest.raises(ValorError):
        store.temp("../escape", "mp4")
    outside = tmp_path / "outside"
    outside.mkdir()
    linked = workdir.media_path("xyz_0", "mp4").parent
    linked.symlink_to(outside, target_is_directory=True)          # a media folder linked out of W
    with pytest.raises(ValorError, match="escapes"):
        store.temp("xyz_0", "mp4")
    assert not any(outside.iterdir())


def test_a_corrupt_source_is_cut_without_ffmpeg_hanging(tmp_path):
    """This damaged file made ffmpeg 9 wait forever, idle, when each output resampled the audio
    on its own (the clip then ended as a timeout after clip_timeout_s); it must take a second."""
    from valor_data.fetch.normalize import Source, normalize
    from valor_data.synth import defects
    from valor_data.synth.content import Content
    from valor_data.synth.render import RenderSpec

    content = Content("triangle", "red", "down", "beep", background=3, speed=57.7, pitch=1.08)
    spec = RenderSpec(content, 18.0, 426, 240, 25.0, sample_rate=48000, seed=1100061)
    source = defects.produce("corrupt", spec, tmp_path / "corrupt.mp4")
    try:
        result = normalize([Source(str(source))], 2.0, 12.0, tmp_path / "a.mp4", tmp_path / "a.flac",
                           FetchConfig(clip_timeout_s=60))
    except FetchFailure as failure:            # damage may be reported; a hang may not
        assert failure.error_class != "Timeout", failure
    else:                                      # a clean-looking file: the damage is on record for the filter
        assert result.has_video and result.has_audio and result.source_decode_errors > 0


@pytest.mark.parametrize("kind", ["clean", "low_bitrate"])
def test_what_the_re_encode_hides_is_recorded(kind, tmp_path):
    """A starved source re-encoded at CRF 23 looks like any simple picture; its own bitrate does not."""
    from valor_data.fetch.normalize import Source, normalize
    from valor_data.synth import defects
    from valor_data.synth.content import Content
    from valor_data.synth.render import RenderSpec

    spec = defects.adjust_spec(kind, RenderSpec(Content("circle", "blue", "left", "beep"), 6.0, seed=4))
    source = defects.produce(kind, spec, tmp_path / f"{kind}.mp4")
    result = normalize([Source(str(source))], 1.0, 5.0, tmp_path / "a.mp4", tmp_path / "a.flac", FetchConfig())
    assert result.source_decode_errors == 0
    assert (result.source_bits_per_pixel < 0.005) == (kind == "low_bitrate"), result.source_bits_per_pixel
