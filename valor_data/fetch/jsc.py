"""Can yt-dlp solve YouTube's JS challenges here? Asked of yt-dlp itself, once per process.

Since late 2025 YouTube's stream URLs carry an ``n`` and a signature challenge that only
JavaScript solves; yt-dlp runs the ``yt-dlp-ejs`` solver scripts in an external runtime
(deno, node, bun, quickjs) and drops the formats it cannot solve. ``probe_js`` asks the
installed yt-dlp which runtimes its own detection finds (the Python scripts folder first,
so a venv's ``deno`` package needs no PATH), then has its challenge director solve an
``n`` and a signature challenge of a tiny player of the shape the solver parses: real
JavaScript, run through the real runtime and scripts, with no network.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from valor_data.errors import ValorError
from valor_data.fetch.config import FetchConfig

log = logging.getLogger(__name__)

# The player the solver expects: one wrapped function whose body holds a URL builder that
# sets ``alr=yes``; the solver calls it, sets ``n``, then the first other method of the URL
# object, which here reverses ``n`` and the signature.
PLAYER_URL = "https://www.youtube.com/s/player/0a1b2c3d/player_ias.vflset/en_US/base.js"
PLAYER_JS = r"""(function(g){
var rev=function(a){return a.split("").reverse().join("")};
function U(){this.p={}}
U.prototype.set=function(k,v){this.p[k]=v};
U.prototype.get=function(k){return this.p[k]};
U.prototype.clone=function(){var u=new U;u.p=Object.assign({},this.p);return u};
U.prototype.apply=function(){if(this.p.n)this.p.n=rev(this.p.n);if(this.p.s)this.p.s=encodeURIComponent(rev(decodeURIComponent(this.p.s)))};
var mk=function(url,sp,sig){var u=new U;u.set("alr","yes");if(sig)u.set(sp,sig);return u};
}).call(this);"""
CHALLENGES = {"n": "valor-n-0123", "sig": "valor.sig=4567"}

_cache: dict[str, JsReport] = {}


@dataclass(frozen=True)
class JsReport:
    """What yt-dlp found and whether its solver ran."""

    runtimes: tuple[str, ...]      # "deno 2.9.8 (/path/deno)" for each runtime yt-dlp found
    supported: bool                # at least one found runtime is a supported version
    solved: bool                   # the n and sig challenges came back right
    detail: str                    # one line: how it was solved, or why not


class _Capture:
    """A yt-dlp logger that keeps the warnings and errors (the reasons a solve failed)."""

    def __init__(self):
        self.lines: list[str] = []

    def debug(self, msg: str) -> None:
        log.debug("yt-dlp: %s", msg)

    def warning(self, msg: str) -> None:
        self.lines.append(" ".join(msg.split()))

    error = warning


def solver_options(cfg: FetchConfig) -> dict:
    """The fetch's yt-dlp options, without cookies (never loaded here, so never rewritten) or caches."""
    from valor_data.fetch.youtube import ydl_options

    opts = {k: v for k, v in ydl_options(cfg).items() if k not in ("cookiefile", "logger")}
    return {**opts, "no_warnings": False, "cachedir": False}


def probe_js(cfg: FetchConfig) -> JsReport:
    """``_probe`` for these options, computed once per process (per runtime settings)."""
    opts = solver_options(cfg)
    key = repr([opts.get(k) for k in ("js_runtimes", "remote_components", "extractor_args", "proxy")])
    if key not in _cache:
        _cache[key] = _probe(opts)
    return _cache[key]


def _probe(opts: dict) -> JsReport:
    import yt_dlp

    logger = _Capture()
    with yt_dlp.YoutubeDL({**opts, "logger": logger}) as ydl:
        infos = [rt.info for rt in ydl._js_runtimes.values() if rt is not None and rt.info is not None]
        found = tuple(f"{i.name} {i.version}{'' if i.supported else ' (unsupported)'} ({i.path})" for i in infos)
        supported = any(i.supported for i in infos)
        if not supported:
            enabled = ", ".join(ydl.params.get("js_runtimes") or {}) or "none"
            why = f"found {', '.join(found)}" if found else "found none"
            return JsReport(found, False, False, f"no supported JS runtime (enabled: {enabled}; yt-dlp {why})")
        solved, detail = _solve(ydl, logger)
    return JsReport(found, True, solved, detail)


def _solve(ydl, logger: _Capture) -> tuple[bool, str]:
    """Solve CHALLENGES of PLAYER_JS through yt-dlp's challenge director."""
    from yt_dlp.extractor.youtube.jsc.provider import (
        JsChallengeRequest,
        JsChallengeType,
        NChallengeInput,
        SigChallengeInput,
    )

    ie = ydl.get_info_extractor("Youtube")
    ie.initialize()
    ie._code_cache[ie._player_js_cache_key(PLAYER_URL)] = PLAYER_JS     # the player, without a download
    requests = [JsChallengeRequest(JsChallengeType.N, NChallengeInput(PLAYER_URL, [CHALLENGES["n"]])),
                JsChallengeRequest(JsChallengeType.SIG, SigChallengeInput(PLAYER_URL, [CHALLENGES["sig"]]))]
    answers = {req.type.value: resp.output.results for req, resp in ie._jsc_director.bulk_solve(requests)}
    want = {kind: {value: value[::-1]} for kind, value in CHALLENGES.items()}
    if answers == want:
        names = [p.PROVIDER_NAME for p in ie._jsc_director.providers.values() if p.is_available()]
        return True, f"solved an n and a signature challenge with {', '.join(names)}"
    why = logger.lines[-1] if logger.lines else f"answers {answers or 'none'}, expected {want}"
    return False, f"the challenge solver did not run: {why[:300]}"


def ejs_script() -> tuple[bool, str]:
    """Is ``yt-dlp-ejs`` installed at the version and hashes this yt-dlp accepts (its own constants)?"""
    from yt_dlp.dependencies import yt_dlp_ejs
    from yt_dlp.extractor.youtube.jsc._builtin.ejs import (
        EJSBaseJCP,
        Script,
        ScriptSource,
        ScriptType,
        ScriptVariant,
    )
    from yt_dlp.utils import version_tuple

    expected = EJSBaseJCP._SCRIPT_VERSION
    if yt_dlp_ejs is None:
        return False, f"yt-dlp-ejs is not installed (yt-dlp {_ytdlp_version()} expects {expected}: pip install yt-dlp[default])"
    import yt_dlp_ejs.yt.solver as solver

    have = yt_dlp_ejs.version
    if version_tuple(have, lenient=True)[:2] != version_tuple(expected, lenient=True)[:2]:   # yt-dlp's rule
        return False, f"yt-dlp-ejs {have} installed, yt-dlp {_ytdlp_version()} expects {expected}"
    for kind, code in ((ScriptType.CORE, solver.core()), (ScriptType.LIB, solver.lib())):
        script = Script(kind, ScriptVariant.MINIFIED, ScriptSource.PYPACKAGE, have, code)
        if script.hash != EJSBaseJCP._ALLOWED_HASHES[kind][ScriptVariant.MINIFIED]:
            return False, f"yt-dlp-ejs {have}: the {kind.value} script's hash is not the one yt-dlp accepts"
    return True, f"yt-dlp-ejs {have} (yt-dlp expects {expected})"


def _ytdlp_version() -> str:
    from yt_dlp.version import __version__

    return __version__


def require_solver(manifest: str | os.PathLike, skip: set[str], cfg: FetchConfig) -> None:
    """Refuse a run with YouTube clips to fetch (not in ``skip``) when no JS challenge solver works:
    without one, YouTube gives only storyboards and every clip would be lost as NoFormats."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from valor_data.fetch.archive import youtube_mask

    table = pq.read_table(manifest, columns=["clip_id", "source", "url"])
    todo = pc.invert(pc.is_in(table.column("clip_id"), value_set=pa.array(sorted(skip), pa.string())))
    clips = pc.sum(pc.and_(youtube_mask(table), todo)).as_py() or 0
    if not clips:
        return
    report = probe_js(cfg)
    if not report.solved:
        raise ValorError(f"refusing to fetch {clips:,} YouTube clip(s): yt-dlp cannot solve YouTube's JS challenges "
                         f"({report.detail}), so only storyboards would come back. Install the deno package "
                         "(pip install deno) or set fetch.youtube.js_runtimes; `valor-data doctor` shows the "
                         "details; --skip-doctor fetches anyway.")
