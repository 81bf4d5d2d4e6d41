"""``valor-data doctor`` on this machine: the real yt-dlp, its JS runtime detection and solver
(deno from the venv), ffmpeg, cookies files; canaries against the loopback server; and a
Python environment without deno, where doctor fails and fetch refuses YouTube clips."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import sysconfig
import time
import venv
from pathlib import Path

import pyarrow as pa
import pytest

from valor_data.doctor import DoctorConfig, check_canaries, check_cookies, check_ytdlp
from valor_data.fetch import FetchConfig
from valor_data.synth.corpus import SynthConfig, make_corpus, read_truth
from valor_data.synth.server import LoopbackServer
from valor_data.table import write_table
from valor_data.workdir import Workdir

ROOT = Path(__file__).resolve().parents[1]
BARE_PATH = "/usr/bin:/bin"            # no deno here, and not the venv's bin
FAR = int(time.time()) + 365 * 86400


def doctor_cli(python: str, *args: str, env_path: str = BARE_PATH) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = env_path
    return subprocess.run([python, "-m", "valor_data.cli", *args], capture_output=True, text=True, env=env,
                          timeout=300, cwd=ROOT)


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory) -> str:
    """A Python environment with this venv's packages but not its scripts folder (where the deno
    package puts the binary and yt-dlp looks first): yt-dlp's detection finds no runtime there."""
    folder = tmp_path_factory.mktemp("bare-env")
    venv.EnvBuilder(symlinks=True, with_pip=False).create(folder)
    site = Path(subprocess.run([str(folder / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path("
                                "'purelib'))"], capture_output=True, text=True, check=True).stdout.strip())
    (site / "valor.pth").write_text(f"{sysconfig.get_path('purelib')}\n{ROOT}\n")
    assert not (folder / "bin" / "deno").exists()
    return str(folder / "bin" / "python")


def test_doctor_passes_here_and_finds_the_venvs_deno_without_path(tmp_path):
    proc = doctor_cli(sys.executable, "doctor", "-w", str(tmp_path), "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert report["ok"] and not [c for c in report["checks"] if c["status"] == "fail"]
    assert {"yt-dlp", "yt-dlp-ejs", "js runtime", "js solver", "ffmpeg", "cookies", "disk", "pyav"} <= set(checks)
    deno = Path(sysconfig.get_path("scripts")) / "deno"
    assert checks["js runtime"]["status"] == "ok" and str(deno) in checks["js runtime"]["detail"]
    assert checks["js solver"]["detail"].startswith("solved an n and a signature challenge with deno")
    assert "https" in checks["ffmpeg"]["detail"]


def test_doctor_fails_with_a_clear_line_without_a_js_runtime(bare_python, tmp_path):
    proc = doctor_cli(bare_python, "doctor", "-w", str(tmp_path))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    runtime = next(line for line in lines if " js runtime " in line)
    assert runtime.startswith("FAIL") and "no supported JS runtime" in runtime and "pip install deno" in runtime
    assert next(line for line in lines if " js solver " in line).startswith("FAIL")
    assert lines[-1].startswith("2 blocker(s): js runtime, js solver")


def _youtube_manifest(workdir: Workdir, url: str) -> None:
    write_table(pa.table({"clip_id": ["dQw4w9WgXcQ_0"], "source": ["audioset"], "subset": ["eval"],
                          "video_id": ["dQw4w9WgXcQ"], "url": [url], "start_s": [0.0], "end_s": [1.0]}),
                workdir.manifest)


def test_fetch_refuses_youtube_clips_without_a_js_runtime_unless_told(bare_python, tmp_path):
    workdir = Workdir.create(tmp_path / "w")
    _youtube_manifest(workdir, "http://127.0.0.1:9/never.mp4")       # discard port: nothing listens
    (tmp_path / "fast.yaml").write_text("fetch: {retries: 0, timeout_s: 2, workers: 1}\n")
    args = ["fetch", "audioset", "-w", str(workdir.root), "--pipeline", str(tmp_path / "fast.yaml"), "--no-progress"]
    refused = doctor_cli(bare_python, *args)
    assert refused.returncode == 1
    assert "refusing to fetch 1 YouTube clip(s)" in refused.stderr and "--skip-doctor" in refused.stderr
    assert not workdir.path("fetch", "tasks").exists()               # nothing recorded
    forced = doctor_cli(bare_python, *args, "--skip-doctor")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert "fetched 1 of 1 planned clips" in forced.stdout


def _cookies(path: Path, names: list[str], expires: int = FAR) -> Path:
    lines = ["# Netscape HTTP Cookie File"]
    lines += [f".youtube.com\tTRUE\t/\tTRUE\t{expires}\t{n}\tv-{n}" for n in names]
    lines.append(f"#HttpOnly_.google.com\tTRUE\t/\tTRUE\t{FAR}\tNID\tx")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_cookies_with_and_without_login_cookies(tmp_path):
    login = _cookies(tmp_path / "login.txt", ["LOGIN_INFO", "__Secure-3PAPISID", "PREF"])
    before = login.read_bytes()
    check = check_cookies(str(login))
    assert check.status == "ok" and "3 youtube.com cookie(s), logged in" in check.detail
    assert login.read_bytes() == before                   # read, never written back
    guest = check_cookies(str(_cookies(tmp_path / "guest.txt", ["PREF", "VISITOR_INFO1_LIVE"])))
    assert guest.status == "warn" and "no live login cookies" in guest.detail
    no_login_info = check_cookies(str(_cookies(tmp_path / "sid.txt", ["SAPISID", "SID"])))
    assert no_login_info.status == "warn"                 # yt-dlp wants LOGIN_INFO too
    expired = check_cookies(str(_cookies(tmp_path / "old.txt", ["LOGIN_INFO", "SAPISID"], expires=1_000_000)))
    assert expired.status == "warn" and "2 expired" in expired.detail
    (tmp_path / "json.txt").write_text('[{"domain": ".youtube.com", "name": "SID"}]\n')
    broken = check_cookies(str(tmp_path / "json.txt"))
    assert broken.status == "fail" and "Netscape" in broken.detail
    assert check_cookies(None).status == "warn"


def test_ytdlp_age_warns_past_the_limit():
    from yt_dlp.version import __version__

    released = dt.date(*map(int, __version__.split(".")[:3]))
    assert check_ytdlp(released + dt.timedelta(days=60), 60).status == "ok"
    old = check_ytdlp(released + dt.timedelta(days=61), 60)
    assert old.status == "warn" and "61 days old" in old.detail and "pip install -U" in old.detail


def test_online_canaries_on_loopback(tmp_path):
    """The canary code path (yt-dlp resolve, format choice, a one-second ffmpeg cut) with the
    generic extractor: one served file, one missing."""
    make_corpus(tmp_path / "corpus", SynthConfig(clips=1, seed=5, source_seconds=(4, 5), short_fraction=0.0))
    video_id = read_truth(tmp_path / "corpus")[0]["video_id"]
    workdir = Workdir.create(tmp_path / "w")
    with LoopbackServer(tmp_path / "corpus") as server:
        canaries = [f"{server.url}/media/{video_id}.mp4", f"{server.url}/media/missing.mp4"]
        checks = check_canaries(workdir, FetchConfig(timeout_s=5, retries=0), DoctorConfig(canaries=canaries))
    good, missing, session = checks
    assert good.status == "ok" and "cut 1.00 s" in good.detail, good
    assert missing.status == "fail" and "HTTP404" in missing.detail, missing
    assert session.name == "session" and session.status == "warn" and "not logged in" in session.detail
    assert not any(workdir.path("doctor").iterdir())          # the cuts are removed
