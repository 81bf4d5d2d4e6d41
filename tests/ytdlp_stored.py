"""yt-dlp's own YouTube extractor, answering from stored player results instead of youtube.com.

``StoredYoutubeIE`` subclasses yt-dlp's ``YoutubeIE`` (so its ``IE_NAME``, login hints, warning
and error plumbing are yt-dlp's) and replaces only the part that talks to YouTube: for
``http://127.0.0.1:PORT/watch?v=ID`` it looks up the scenario stored for (ID, player client), where
the client is the one ``extractor_args={'youtube': {'player_client': [...]}}`` asks for
("default" when none). A scenario holds yt-dlp warnings to report, then either YouTube's
playability ``reason``/``subreason`` (turned into the error exactly as ``_video.py`` does in
``_real_extract``, yt-dlp 2026.10.26, after "if not formats:"), an ``invalid_player_responses``
flag (``_extract_player_responses``), or an info dict of YouTube's 2026 shape whose formats
point at the loopback server. Everything after extraction (format selection, the errors
``YoutubeDL`` raises, ``DownloadError`` wrapping) is yt-dlp's real code.

``stored_extractor`` puts the class first in yt-dlp's extractor registry in place of
``YoutubeIE`` (as yt-dlp's plugin loader prepends plugins), so every ``YoutubeDL`` built while it
is active (in this process) uses it.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

from yt_dlp.extractor.youtube import YoutubeIE
from yt_dlp.extractor.youtube.jsc._builtin.ejs import _EJS_WIKI_URL
from yt_dlp.utils import ExtractorError, clean_html, remove_end

# yt-dlp's warnings verbatim (``_video.py`` solve_js_challenges and _get_requested_clients)
_HELP = ("Ensure you have a supported JavaScript runtime and challenge solver script distribution installed. "
         "Review any warnings presented before this message. "
         f"For more details, refer to  {_EJS_WIKI_URL}")
N_CHALLENGE_FAILED = f"n challenge solving failed: Some formats may be missing. {_HELP}"
SIG_CHALLENGE_FAILED = f"Signature solving failed: Some formats may be missing. {_HELP}"
NO_JS_RUNTIME = ("No supported JavaScript runtime could be found. Only deno is enabled by default; to use another "
                 "runtime add  --js-runtimes RUNTIME[:PATH]  to your command/config. YouTube extraction without a "
                 "JS runtime has been deprecated, and some formats may be missing. See  "
                 f"{_EJS_WIKI_URL}  for details on installing one")


class StoredYoutubeIE(YoutubeIE):
    _VALID_URL = r"https?://127\.0\.0\.1(?::\d+)?/watch\?v=(?P<id>[\w-]{11})"
    SCENARIOS: dict[tuple[str, str], dict] = {}
    asked: list[tuple[str, str]] = []

    def _real_extract(self, url):
        video_id = self._match_id(url)
        client = (self._configuration_arg("player_client", ie_key="youtube") or ["default"])[0]
        self.asked.append((video_id, client))
        scenario = self.SCENARIOS[(video_id, client)]
        for warning in scenario.get("warnings", ()):
            self.report_warning(warning, video_id=video_id, only_once=True)
        if scenario.get("invalid_player_responses"):
            raise ExtractorError(
                "All player responses are invalid. Your IP is likely being blocked by Youtube", expected=True)
        if "reason" in scenario:
            self._raise_playability(scenario, video_id)
        return copy.deepcopy(scenario["info"])

    def _raise_playability(self, scenario: dict, video_id: str) -> None:
        """What ``_real_extract`` raises for a player response without formats."""
        reason, subreason = scenario["reason"], clean_html(scenario.get("subreason") or "")
        if subreason:
            if subreason.startswith("The uploader has not made this video available in your country"):
                self.raise_geo_restricted(subreason, scenario.get("countries"), metadata_available=True)
            if subreason != reason:
                reason += f". {subreason}"
        if "sign in" in reason.lower():
            reason = remove_end(reason, "This helps protect our community. Learn more")
            reason = f'{remove_end(reason.strip(), ".")}. {self._youtube_login_hint}'
        elif scenario.get("captcha"):
            reason += ". YouTube is requiring a captcha challenge before playback"
        elif "This content isn't available, try again later" in reason:
            reason = (
                f'{remove_end(reason.strip(), ".")}. {"Your account" if self.is_authenticated else "The current session"} '
                f'has been rate-limited by YouTube for up to an hour. It is recommended to use `-t sleep` to add a delay '
                f'between video requests to avoid exceeding the rate limit. For more information, refer to  '
                f'https://github.com/yt-dlp/yt-dlp/wiki/Extractors#this-content-isnt-available-try-again-later')
        self.raise_no_formats(reason, expected=True)


@contextlib.contextmanager
def stored_extractor(monkeypatch, scenarios: dict[tuple[str, str], dict]) -> Iterator[type[StoredYoutubeIE]]:
    """``StoredYoutubeIE`` first in yt-dlp's registry, answering ``scenarios``, until the block ends."""
    from yt_dlp.extractor import import_extractors
    from yt_dlp.globals import extractors

    import_extractors()
    monkeypatch.setattr(StoredYoutubeIE, "SCENARIOS", scenarios)
    monkeypatch.setattr(StoredYoutubeIE, "asked", [])
    others = {name: ie for name, ie in extractors.value.items() if name != "YoutubeIE"}   # one IE_NAME "youtube"
    monkeypatch.setattr(extractors, "value", {"StoredYoutubeIE": StoredYoutubeIE, **others})
    yield StoredYoutubeIE


def storyboards(video_id: str) -> list[dict]:
    """The four storyboard formats YouTube always offers (``_extract_storyboard``'s shape)."""
    sizes = [(48, 27, 100, 10, 10), (80, 45, 100, 10, 10), (160, 90, 100, 5, 5), (320, 180, 100, 3, 3)]
    return [{"format_id": f"sb{i}", "format_note": "storyboard", "ext": "mhtml", "protocol": "mhtml",
             "acodec": "none", "vcodec": "none", "width": w, "height": h, "fps": 0.5, "rows": r, "columns": c,
             "url": f"https://i.ytimg.com/sb/{video_id}/storyboard3_L{i}/M$M.jpg?sqp=x&sigh=y",
             "fragments": [{"url": f"https://i.ytimg.com/sb/{video_id}/storyboard3_L{i}/M0.jpg", "duration": 200.0}]}
            for i, (w, h, n, c, r) in enumerate(sizes)]


def youtube_info(video_id: str, duration: float, formats: list[dict]) -> dict:
    """An ``_real_extract`` result of YouTube's 2026 shape around ``formats``."""
    return {"id": video_id, "title": f"stored {video_id}", "duration": duration, "formats": formats,
            "channel_id": "UCstoredstoredstoredstor", "uploader": "stored", "age_limit": 0,
            "webpage_url": f"https://www.youtube.com/watch?v={video_id}", "playable_in_embed": True,
            "live_status": "not_live", "availability": "public", "thumbnails": [], "subtitles": {},
            "automatic_captions": {}, "categories": ["People & Blogs"], "tags": []}


def dash_formats(video_url: str, audio_url: str, available_at: int | None, width: int = 640,
                 height: int = 360) -> list[dict]:
    """A video-only 134 and an audio-only 140 as yt-dlp 2026 lists them (``process_format_stream``)."""
    common = {"protocol": "https", "has_drm": False, "source_preference": -1, "language": "en",
              "http_headers": {"User-Agent": "Mozilla/5.0 (ChromiumStylePlatform) Cobalt/Version"}}
    if available_at is not None:
        common["available_at"] = available_at
    return [
        {**common, "format_id": "140", "format_note": "medium", "ext": "m4a", "container": "m4a_dash",
         "acodec": "mp4a.40.2", "vcodec": "none", "asr": 44100, "audio_channels": 2, "tbr": 129.5, "abr": 129.5,
         "quality": 3.0, "language_preference": 10, "url": audio_url},
        {**common, "format_id": "134", "format_note": "360p", "ext": "mp4", "container": "mp4_dash",
         "vcodec": "avc1.4d401e", "acodec": "none", "width": width, "height": height, "fps": 25, "tbr": 350.0,
         "vbr": 350.0, "quality": 6.0, "language_preference": -1, "url": video_url},
    ]
