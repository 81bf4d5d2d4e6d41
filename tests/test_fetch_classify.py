"""Blocking is never mistaken for loss: YouTube's real messages, raised by yt-dlp's own YouTube
extractor code and ``YoutubeDL`` (``tests/ytdlp_stored.py``), through ``resolve`` and ``classify``;
googlevideo 403s from a real ffmpeg; yt-dlp warnings logged and counted; ``--retry-failed`` names."""

from __future__ import annotations

import http.server
import io
import logging
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pytest
from yt_dlp.networking import Response
from yt_dlp.networking.exceptions import HTTPError
from yt_dlp.utils import DownloadError
from ytdlp_stored import N_CHALLENGE_FAILED, NO_JS_RUNTIME, stored_extractor, storyboards, youtube_info

from valor_data.cli import main
from valor_data.errors import ConfigError
from valor_data.fetch import outcome, youtube
from valor_data.fetch.config import FetchConfig, YouTubeConfig
from valor_data.fetch.outcome import FETCH_SCHEMA, FetchFailure
from valor_data.fetch.run import redo_filter
from valor_data.media.ffmpeg import ffmpeg_exe
from valor_data.table import write_table
from valor_data.workdir import Workdir

LOGIN_HINT = ("Use --cookies-from-browser or --cookies for the authentication. See  "
              "https://github.com/yt-dlp/yt-dlp/wiki/FAQ#how-do-i-pass-cookies-to-yt-dlp  for how to manually pass "
              "cookies. Also see  https://github.com/yt-dlp/yt-dlp/wiki/Extractors#exporting-youtube-cookies  for "
              "tips on effectively exporting YouTube cookies")

# YouTube's playability reason / subreason as its player API returns them (yt-dlp issues quote them),
# turned into yt-dlp's message by the extractor code -> (status, error class)
CASES = {
    "botcheck": ({"reason": "Sign in to confirm you\u2019re not a bot",
                  "subreason": "This helps protect our community. Learn more"}, "blocked", "BotCheck"),
    "botcheck_ascii": ({"reason": "Sign in to confirm you're not a bot"}, "blocked", "BotCheck"),
    "captcha": ({"reason": "Video unavailable", "captcha": True}, "blocked", "BotCheck"),
    "ip_blocked": ({"invalid_player_responses": True}, "blocked", "IpBlocked"),
    "flagged": ({"reason": "Video unavailable", "subreason": "This content isn\u2019t available."},
                "blocked", "ContentRefused"),
    "kids_fallback": ({"reason": "Video unavailable", "subreason": "This video is not available"},
                      "blocked", "ClientRefused"),
    "embed_disabled": ({"reason": "Video unavailable",
                        "subreason": "Playback on other websites has been disabled by the video owner"},
                       "blocked", "ClientRefused"),
    "try_later": ({"reason": "This content isn't available, try again later."}, "rate_limited", "RateLimited"),
    "private": ({"reason": "Private video", "subreason": "Sign in if you've been granted access to this video"},
                "unavailable", "Unavailable"),
    "removed": ({"reason": "Video unavailable", "subreason": "This video has been removed by the uploader"},
                "unavailable", "Unavailable"),
    "policy": ({"reason": "This video has been removed for violating YouTube's policy on hate speech. Learn more "
                          "about combating hate speech in your country."}, "unavailable", "Unavailable"),
    "terminated": ({"reason": "Video unavailable", "subreason": "This video is no longer available because the "
                    "YouTube account associated with this video has been terminated."}, "unavailable", "Unavailable"),
    "copyright": ({"reason": "Video unavailable", "subreason": "This video is no longer available due to a copyright "
                   "claim by Example Records"}, "unavailable", "Unavailable"),
    "geo": ({"reason": "Video unavailable", "subreason": "The uploader has not made this video available in your "
             "country", "countries": ["JP"]}, "unavailable", "Unavailable"),
    "age": ({"reason": "Sign in to confirm your age", "subreason": "This video may be inappropriate for some users."},
            "unavailable", "Unavailable"),
    "members": ({"reason": "Join this channel to get access to members-only content like this video, and other "
                           "exclusive perks."}, "unavailable", "Unavailable"),
    "plain_unavailable": ({"reason": "Video unavailable"}, "unavailable", "Unavailable"),
    "storyboards": ({"info": "storyboards"}, "blocked", "NoFormats"),
    "storyboards_no_js": ({"info": "storyboards", "warnings": [NO_JS_RUNTIME, N_CHALLENGE_FAILED]},
                          "blocked", "NoFormats"),
}


def _video_id(number: int) -> str:
    return f"cls{number:08d}"


@pytest.fixture(scope="module")
def outcomes() -> dict[str, FetchFailure]:
    """Every case resolved once, in one thread (one YoutubeDL), as the fetch worker resolves."""
    scenarios = {}
    for number, (scenario, _, _) in enumerate(CASES.values()):
        if scenario.get("info") == "storyboards":
            video_id = _video_id(number)
            scenario = {**scenario, "info": youtube_info(video_id, 30.0, storyboards(video_id))}
        scenarios[(_video_id(number), "default")] = scenario
    results = {}

    def resolve_all():
        for number, name in enumerate(CASES):
            try:
                youtube.resolve(f"http://127.0.0.1/watch?v={_video_id(number)}", FetchConfig())
            except FetchFailure as failure:
                results[name] = failure

    with pytest.MonkeyPatch.context() as patch, stored_extractor(patch, scenarios):
        ThreadPoolExecutor(1).submit(resolve_all).result()
    return results


@pytest.mark.parametrize("name", list(CASES))
def test_youtube_messages_are_classified_by_who_is_refused(outcomes, name):
    _, status, error_class = CASES[name]
    failure = outcomes[name]
    assert (failure.status, failure.error_class) == (status, error_class), str(failure)
    assert str(failure).startswith(f"[youtube] {_video_id(list(CASES).index(name))}: ")
    assert failure.status in outcome.RETRYABLE or status == "unavailable"


def test_the_messages_are_yt_dlps_verbatim(outcomes):
    """The extractor code formats the reasons: the login hint, the rate-limit advice, the NoFormats text."""
    expected = f"[youtube] {_video_id(0)}: Sign in to confirm you\u2019re not a bot. {LOGIN_HINT}"
    assert str(outcomes["botcheck"]) == expected[:300]        # a row's error: one line of at most 300 characters
    assert "Private video. Sign in if you've been granted access to this video. Use --cookies" in str(
        outcomes["private"])
    assert "has been rate-limited by YouTube for up to an hour" in str(outcomes["try_later"])
    assert "All player responses are invalid. Your IP is likely being blocked by Youtube" in str(
        outcomes["ip_blocked"])
    assert str(outcomes["storyboards"]).endswith(
        "Requested format is not available. Use --list-formats for a list of available formats")
    # the warnings yt-dlp gave while resolving say why the formats are missing
    assert str(outcomes["storyboards_no_js"]).endswith("(after yt-dlp warned: n challenge solving failed)")


def _download_error(status: int, url: str) -> DownloadError:
    """How yt-dlp's http downloader fails on a stream URL: DownloadError carrying the HTTPError."""
    error = HTTPError(Response(io.BytesIO(b""), url, {}, status=status, reason="Forbidden"))
    return DownloadError(f"ERROR: unable to download video data: {error}", (type(error), error, None))


def test_a_googlevideo_403_is_a_block_and_other_403s_stay_transient():
    stream = "https://rr3---sn-4g5e6nzz.googlevideo.com/videoplayback?expire=1764629000&itag=134"
    failure = youtube.classify(_download_error(403, stream))
    assert (failure.status, failure.error_class) == ("blocked", "HTTP403")
    failure = youtube.classify(_download_error(403, "https://www.youtube.com/watch?v=cls00000000"))
    assert (failure.status, failure.error_class) == ("failed_transient", "HTTP403")
    assert youtube.classify(_download_error(429, stream)).status == "rate_limited"   # not a block


class _Forbidden(http.server.BaseHTTPRequestHandler):
    """A proxy (and origin) that refuses every request with 403, as googlevideo does a blocked session."""

    def do_GET(self):
        self.send_response(403)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_ffmpeg_meeting_a_googlevideo_403_is_a_block():
    """Real ffmpeg reads a googlevideo.com URL through a loopback proxy that answers 403."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Forbidden)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    proxy = f"http://127.0.0.1:{server.server_port}"
    try:
        def stderr(url: str, *args: str) -> str:
            return subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", *args, "-i", url, "-f", "null", "-"],
                                  capture_output=True, text=True, timeout=30).stderr
        google = stderr("http://rr1---sn-abc.googlevideo.com/videoplayback?itag=140", "-http_proxy", proxy)
        other = stderr(f"{proxy}/media/x.mp4")
    finally:
        server.shutdown()
    failure = outcome.from_ffmpeg(google, 1)
    assert (failure.status, failure.error_class) == ("blocked", "HTTP403"), google
    assert (outcome.from_ffmpeg(other, 1).status, outcome.from_ffmpeg(other, 1).error_class) == \
        ("unavailable", "HTTP403")     # a 403 from another host is what that server says of the file


def test_warnings_log_at_warning_once_then_debug_and_are_counted(caplog):
    logger = youtube._Logger()
    before = youtube.warning_counts()
    message = f"[youtube] cls00000001: {N_CHALLENGE_FAILED}"
    other = f"[youtube] cls00000002: {N_CHALLENGE_FAILED}"     # another video, the same warning
    with caplog.at_level(logging.DEBUG, logger="valor_data.fetch.youtube"):
        for text in (message, other, message):
            logger.warning(text)
    levels = [r.levelno for r in caplog.records if "n challenge" in r.getMessage()]
    key = "n challenge solving failed"
    first = before.get(key, 0) == 0
    assert levels == ([logging.WARNING] if first else [logging.DEBUG]) + [logging.DEBUG] * 2
    assert youtube.warnings_since(before) == {key: 3}
    assert youtube.warning_key(f"[youtube] {NO_JS_RUNTIME}") == "No supported JavaScript runtime could be found"
    assert youtube.warning_key("[youtube] cls00000003: Some tv client https formats have been skipped as they are "
                               "missing a URL. YouTube may have enabled") == \
        "Some tv client https formats have been skipped as they are missing a URL"


def test_the_warning_counter_is_thread_safe():
    logger, before = youtube._Logger(), youtube.warning_counts()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: logger.warning(f"[youtube] thread-safety probe {i % 2}: x"), range(4000)))
    assert youtube.warnings_since(before) == {"thread-safety probe N": 4000}


def test_solver_settings_reach_ytdlp_and_unknown_names_are_refused():
    yt = YouTubeConfig(js_runtimes=["deno", "node:/opt/node/bin/node"], remote_components=["ejs:github"],
                       player_clients=["tv", "web_embedded"], extractor_args={"youtube": {"skip": ["hls"]}})
    opts = youtube.ydl_options(FetchConfig(youtube=yt), client="tv")
    assert opts["js_runtimes"] == {"deno": {"path": None}, "node": {"path": "/opt/node/bin/node"}}
    assert opts["remote_components"] == ["ejs:github"]
    assert opts["extractor_args"] == {"youtube": {"skip": ["hls"], "player_client": ["tv"]}}
    assert "player_client" not in youtube.ydl_options(FetchConfig(youtube=yt))["extractor_args"]["youtube"]
    assert youtube.ydl_options(FetchConfig())["js_runtimes"] == {"deno": {"path": None}}   # yt-dlp's default
    for key, bad in (("js_runtimes", ["rhino"]), ("remote_components", ["ejs:cdn"]), ("player_clients", ["tvv"])):
        with pytest.raises(ValueError, match=f"youtube.{key}: unknown"):
            YouTubeConfig(**{key: bad})


def test_wait_for_available_at_is_bounded():
    import time

    from valor_data.fetch.formats import Selection

    now = time.time()
    slept = []
    cfg = FetchConfig(youtube=YouTubeConfig(max_available_wait_s=5))
    soon = Selection({"format_id": "134", "available_at": int(now) + 3}, {"format_id": "140", "available_at": 0})
    assert 1.9 < youtube.wait_available(soon, cfg, sleep=slept.append) <= 3.0 and 1.9 < slept[0] <= 3.0
    later = Selection({"format_id": "134", "available_at": int(now) + 60}, None)
    with pytest.raises(FetchFailure, match="available only in") as caught:
        youtube.wait_available(later, cfg, sleep=slept.append)
    assert (caught.value.status, caught.value.error_class) == ("failed_transient", "NotYetAvailable")
    assert youtube.wait_available(Selection({"format_id": "18"}, None), cfg, sleep=slept.append) == 0.0
    assert len(slept) == 1


# --- --retry-failed -----------------------------------------------------------------------

ROWS = [("a", "blocked", "NoFormats"), ("b", "failed_permanent", "NoFormats"), ("c", "rate_limited", "HTTP429"),
        ("d", "unavailable", "Unavailable"), ("e", "failed_transient", "Timeout"), ("f", "ok", None),
        ("g", "blocked", "BotCheck"), ("h", "failed_permanent", "LegacyClass")]


@pytest.fixture()
def recorded(tmp_path) -> Workdir:
    """A work dir whose fetch table holds one clip of each kind (file URLs that no longer exist)."""
    workdir = Workdir.create(tmp_path / "w")
    manifest = pa.table({"clip_id": [r[0] for r in ROWS], "source": ["urls"] * len(ROWS), "video_id": [r[0] for r in ROWS],
                         "url": [(tmp_path / f"gone-{r[0]}.mp4").as_uri() for r in ROWS]})
    write_table(manifest, workdir.manifest)
    rows = [{"clip_id": c, "status": s, "error_class": e, "attempts": 1} for c, s, e in ROWS]
    write_table(pa.Table.from_pylist(rows, schema=FETCH_SCHEMA), workdir.path("fetch", "tasks", "task-000000.parquet"))
    return workdir


def _rerun(workdir: Workdir, spec) -> set[str]:
    redo = redo_filter(workdir, spec)
    return {c for c, s, e in ROWS if redo({"status": s, "error_class": e})} if redo else set()


def test_retry_failed_takes_statuses_and_error_classes(recorded):
    assert _rerun(recorded, False) == set()
    assert _rerun(recorded, True) == _rerun(recorded, "default") == {"a", "c", "e", "g"}
    assert _rerun(recorded, "blocked,rate_limited") == {"a", "c", "g"}
    assert _rerun(recorded, "NoFormats,HTTP403") == {"a", "b"}          # the legacy permanent NoFormats too
    assert _rerun(recorded, "LegacyClass") == {"h"}                      # a class the table holds
    with pytest.raises(ConfigError, match="unknown Bogus, nofomats.*blocked.*BotCheck.*LegacyClass"):
        redo_filter(recorded, "blocked,Bogus,nofomats")
    with pytest.raises(ConfigError, match="nothing to rerun"):
        redo_filter(recorded, "ok")


def test_retry_failed_on_the_cli(recorded, capsys):
    def fetch(*args: str) -> int:
        try:
            main(["fetch", "urls", "-w", str(recorded.root), "--allow-file-urls", "--workers", "1", "--no-progress",
                  "--skip-doctor", *args])
        except SystemExit as exc:
            return exc.code or 0
        return 0

    assert fetch("--retry-failed", "blocked,NoFormats") == 0
    assert "fetched 3 of 3 planned clips" in capsys.readouterr().out          # a, b, g; each now FileNotFound
    assert fetch("--retry-failed", "Bogus") != 0
    assert "--retry-failed: unknown Bogus" in capsys.readouterr().err
    assert fetch("--retry-failed") == 0                                       # alone: the retryable statuses
    assert "fetched 2 of 2 planned clips" in capsys.readouterr().out          # c and e (a, b, g are permanent now)
    assert Path(recorded.path("fetch.parquet")).exists()


def test_tables_written_before_the_client_column_still_read(tmp_path):
    from valor_data.distribute import collect

    workdir = Workdir.create(tmp_path / "w")
    old_schema = pa.schema([f for f in FETCH_SCHEMA if f.name != "client"])
    old = pa.Table.from_pylist([{"clip_id": "a", "status": "failed_permanent", "error_class": "NoFormats"}],
                               schema=old_schema)
    new = pa.Table.from_pylist([{"clip_id": "b", "status": "ok", "client": "tv"}], schema=FETCH_SCHEMA)
    write_table(old, workdir.path("fetch", "tasks", "task-000000.parquet"))
    write_table(new, workdir.path("fetch", "tasks", "task-000001.parquet"))
    rows = {r["clip_id"]: r for r in collect(workdir, "fetch").to_pylist()}
    assert rows["a"]["client"] is None and rows["b"]["client"] == "tv"
    assert _rerun_names(workdir, "NoFormats") == {"a"}


def _rerun_names(workdir: Workdir, spec: str) -> set[str]:
    from valor_data.distribute import finished

    return {"a", "b"} - finished(workdir, "fetch", redo_filter(workdir, spec))
