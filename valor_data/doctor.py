"""``valor-data doctor``: is this machine ready to fetch from the YouTube of today?

Each check is a small function returning a ``Check`` (ok, warn or fail, and one line of
detail). Offline: yt-dlp's version and age, ``yt-dlp-ejs`` at the version yt-dlp expects,
a JS runtime found by yt-dlp's own detection that really runs the challenge solver,
ffmpeg and the protocols the run needs, the cookies file, free disk, PyAV, Ray when
asked for. Online: canary videos resolve to real (non-storyboard) formats, one second of
each is cut with ffmpeg, and the session is reported as logged in or not. A ``fail`` is a
blocker: the command exits non-zero.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from valor_data.fetch.config import FetchConfig
from valor_data.workdir import Workdir

log = logging.getLogger(__name__)

OK, WARN, FAIL = "ok", "warn", "fail"
# three AudioSet eval videos (eval_segments.csv)
CANARIES = ("https://www.youtube.com/watch?v=--4gqARaEJE", "https://www.youtube.com/watch?v=--BfvyPmVMo",
            "https://www.youtube.com/watch?v=--U7joUcTCo")
LOGIN_COOKIES = "LOGIN_INFO with SAPISID, __Secure-1PAPISID or __Secure-3PAPISID"
_ROTATED = re.compile(r"cookies are no longer valid", re.I)


@dataclass(frozen=True)
class Check:
    """One line of the doctor's table."""

    name: str
    status: str        # ok | warn | fail
    detail: str


@dataclass
class DoctorConfig:
    """The ``doctor:`` section of a pipeline YAML."""

    canaries: list[str] = field(default_factory=lambda: list(CANARIES))   # URLs resolved by --online
    canary_seconds: float = 1.0        # how much of each canary ffmpeg cuts
    max_ytdlp_age_days: int = 60       # an older yt-dlp is a warning (YouTube changes faster)
    min_free_gb: float = 20.0          # less free space under the work dir is a warning (under 1 GB: a failure)

    def __post_init__(self):
        if self.canary_seconds <= 0 or self.max_ytdlp_age_days < 1 or self.min_free_gb < 0:
            raise ValueError("doctor: canary_seconds > 0, max_ytdlp_age_days >= 1 and min_free_gb >= 0")


def run_doctor(workdir: Workdir, cfg: FetchConfig, doctor: DoctorConfig, online: bool = False,
               ray: bool = False, today: dt.date | None = None) -> list[Check]:
    """Every offline check, then (``online``) the canaries."""
    checks = [check_ytdlp(today or dt.date.today(), doctor.max_ytdlp_age_days), check_ejs(), *check_js(cfg),
              check_ffmpeg(cfg)]
    checks += [check_cookies(path, name) for name, path in cookie_files(cfg)]
    checks += [check_disk(workdir, doctor.min_free_gb), check_pyav()]
    if ray:
        checks.append(check_ray())
    if online:
        checks += check_canaries(workdir, cfg, doctor)
    return checks


def failed(checks: list[Check]) -> list[Check]:
    return [c for c in checks if c.status == FAIL]


def table(checks: list[Check]) -> list[str]:
    """The checks as aligned lines, then a verdict."""
    width = max(len(c.name) for c in checks)
    out = [f"{c.status.upper():<5} {c.name:<{width}}  {c.detail}" for c in checks]
    blockers = failed(checks)
    out.append(f"{len(blockers)} blocker(s): {', '.join(c.name for c in blockers)}" if blockers
               else "no blockers" + (f" ({sum(c.status == WARN for c in checks)} warning(s))"
                                     if any(c.status == WARN for c in checks) else ""))
    return out


def as_json(checks: list[Check]) -> dict:
    return {"ok": not failed(checks), "checks": [asdict(c) for c in checks]}


def check_ytdlp(today: dt.date, max_age_days: int) -> Check:
    """yt-dlp's version, and its age from the release date the version number is."""
    from yt_dlp.version import __version__

    match = re.match(r"(\d{4})\.(\d{1,2})\.(\d{1,2})", __version__)
    if not match:
        return Check("yt-dlp", WARN, f"yt-dlp {__version__}: not a dated release, its age is unknown")
    age = (today - dt.date(*map(int, match.groups()))).days
    status = WARN if age > max_age_days else OK
    hint = f" (older than {max_age_days} days: pip install -U 'yt-dlp[default]')" if status == WARN else ""
    return Check("yt-dlp", status, f"yt-dlp {__version__}, {age} days old{hint}")


def check_ejs() -> Check:
    from valor_data.fetch.jsc import ejs_script

    good, detail = ejs_script()
    return Check("yt-dlp-ejs", OK if good else FAIL, detail)


def check_js(cfg: FetchConfig) -> list[Check]:
    """A runtime yt-dlp's own detection finds, and the solver really running in it."""
    from valor_data.fetch.jsc import probe_js

    report = probe_js(cfg)
    runtime = Check("js runtime", OK if report.supported else FAIL,
                    ", ".join(report.runtimes) if report.supported else
                    f"{report.detail}: pip install deno, or set fetch.youtube.js_runtimes")
    solver = Check("js solver", OK if report.solved else FAIL,
                   report.detail if report.supported else "not run (no JS runtime)")
    return [runtime, solver]


def check_ffmpeg(cfg: FetchConfig) -> Check:
    """ffmpeg's version and its input protocols: https, and http + httpproxy behind a proxy (the
    config refuses SOCKS proxies, which ffmpeg cannot speak)."""
    from valor_data.errors import ValorError
    from valor_data.media.ffmpeg import FFmpegError, ffmpeg_exe, run_ffmpeg

    try:
        exe = ffmpeg_exe()
        version = run_ffmpeg(["-version"], timeout=30).stdout.decode(errors="replace").splitlines()[0]
        listing = run_ffmpeg(["-protocols"], timeout=30).stdout.decode(errors="replace")
    except (ValorError, FFmpegError, OSError, IndexError) as exc:
        return Check("ffmpeg", FAIL, f"ffmpeg does not run: {exc}")
    inputs = set(listing.partition("Input:")[2].partition("Output:")[0].split())
    proxied = cfg.youtube.proxy or any(i.proxy for i in cfg.youtube.identities)
    need = {"https", "tls"} | ({"http", "httpproxy"} if proxied else set())
    missing = sorted(need - inputs)
    line = f"{' '.join(version.split()[:3])} ({exe}); reads {', '.join(sorted(need))}"
    if missing:
        return Check("ffmpeg", FAIL, f"{line}: missing input protocol(s) {', '.join(missing)}")
    return Check("ffmpeg", OK, line)


def cookie_files(cfg: FetchConfig) -> list[tuple[str, str | None]]:
    """(identity name, cookies file) of each identity; ("", youtube.cookies_file) without a pool."""
    return [(i.name, i.cookies_file) for i in cfg.youtube.identities] or [("", cfg.youtube.cookies_file)]


def check_cookies(path: str | None, identity: str = "") -> Check:
    """The cookies file parses (yt-dlp's own Netscape reader) and holds YouTube login cookies."""
    name = f"cookies {identity}".strip()
    if not path:
        return Check(name, WARN, "no cookies file: a guest session (lower budgets, more bot checks)")
    import http.cookiejar

    from yt_dlp.cookies import YoutubeDLCookieJar

    jar = YoutubeDLCookieJar(path)
    try:
        jar.load()                 # read only: this jar is never saved
    except (OSError, http.cookiejar.LoadError, ValueError) as exc:
        return Check(name, FAIL, f"{path}: cannot be read as a Netscape cookies.txt: {exc}")
    youtube = [c for c in jar if c.domain.lstrip(".").endswith("youtube.com")]
    expired = sum(c.is_expired() for c in youtube)
    note = f"{len(youtube)} youtube.com cookie(s)" + (f", {expired} expired" if expired else "")
    if not logged_in(jar):
        return Check(name, WARN, f"{path}: {note}, no live login cookies ({LOGIN_COOKIES})")
    return Check(name, OK, f"{path}: {note}, logged in")


def logged_in(jar) -> bool:
    """yt-dlp's own test (``_has_auth_cookies``) on these cookies, in a YoutubeDL that never saves them."""
    import yt_dlp

    with yt_dlp.YoutubeDL({"quiet": True, "no_warnings": True, "cachedir": False}) as ydl:
        for cookie in jar:
            ydl.cookiejar.set_cookie(cookie)
        return bool(ydl.get_info_extractor("Youtube")._has_auth_cookies)


def check_disk(workdir: Workdir, min_free_gb: float) -> Check:
    free = shutil.disk_usage(workdir.root).free / 1e9
    status = FAIL if free < 1 else WARN if free < min_free_gb else OK
    return Check("disk", status, f"{free:,.1f} GB free under {workdir.root}"
                 + (f" (want {min_free_gb:g} GB)" if status != OK else ""))


def check_pyav() -> Check:
    try:
        import av
    except ImportError as exc:
        return Check("pyav", FAIL, f"PyAV does not import: {exc}")
    return Check("pyav", OK, f"PyAV {av.__version__} on FFmpeg {getattr(av, 'ffmpeg_version_info', '?')}")


def check_ray() -> Check:
    try:
        import ray
    except ImportError as exc:
        return Check("ray", FAIL, f"--distributor ray, but Ray does not import: {exc}")
    return Check("ray", OK, f"Ray {ray.__version__}")


def check_canaries(workdir: Workdir, cfg: FetchConfig, doctor: DoctorConfig) -> list[Check]:
    """Resolve each canary, pick formats as fetch does, cut ``canary_seconds`` of it; then the session."""
    seen = _Warnings()
    logging.getLogger("valor_data.fetch").addHandler(seen)
    scratch = Path(tempfile.mkdtemp(prefix="canary-", dir=_mkdir(workdir.path("doctor"))))
    try:
        checks = [_canary(i, url, scratch, cfg, doctor.canary_seconds) for i, url in enumerate(doctor.canaries)]
    finally:
        logging.getLogger("valor_data.fetch").removeHandler(seen)
        shutil.rmtree(scratch, ignore_errors=True)
    return [*checks, _session(cfg, seen.lines)]


def _canary(index: int, url: str, scratch: Path, cfg: FetchConfig, seconds: float) -> Check:
    from valor_data.fetch.formats import select_formats
    from valor_data.fetch.normalize import normalize
    from valor_data.fetch.outcome import FetchFailure
    from valor_data.fetch.youtube import resolve, sources

    name = f"canary {index + 1}"
    try:
        info = resolve(url, cfg)
        formats = info.get("formats") or [info]
        boards = sum("storyboard" in str(f.get("format_note") or "").lower() or f.get("ext") == "mhtml"
                     for f in formats)
        selection = select_formats(info, cfg.youtube, cfg.max_short_side, cfg.max_fps)
        if selection is None:
            return Check(name, FAIL, f"{url}: {len(formats)} format(s), {boards} storyboard(s), none usable "
                                     "(storyboards only: the JS challenges were not solved)")
        done = normalize(sources(selection, cfg), 0.0, seconds, scratch / f"{index}.mp4", scratch / f"{index}.flac",
                         cfg)
    except FetchFailure as failure:
        return Check(name, FAIL, f"{url}: {failure.status}/{failure.error_class}: {failure}")
    return Check(name, OK, f"{url}: {len(formats) - boards} format(s) besides {boards} storyboard(s); "
                           f"cut {done.duration_s:.2f} s of {selection.ids}")


def _session(cfg: FetchConfig, warnings: list[str]) -> Check:
    rotated = [w for w in warnings if _ROTATED.search(w)]
    if rotated:
        return Check("session", WARN, f"the cookies were refused: {rotated[0][:200]}")
    accounts = [name or "the cookies" for name, path in cookie_files(cfg) if check_cookies(path).status == OK]
    if accounts:
        return Check("session", OK, f"logged in ({', '.join(accounts)}: login cookies, not refused)")
    return Check("session", WARN, "not logged in (guest session)")


class _Warnings(logging.Handler):
    """Collects what yt-dlp said while the canaries ran."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
