"""YouTube identities on loopback: two real HTTP proxies, cookies that are never written, a
source address, the circuit breaker on blocked sessions, SOCKS refused, ``fetch --plan``.

Everything goes through the real yt-dlp (generic extractor) and ffmpeg; the proxies forward
any host to the loopback media server, so a URL may name ``*.googlevideo.com`` without DNS
(a 403 from googlevideo is what a blocked session meets)."""

from __future__ import annotations

import json

import pytest
import yaml
from fetch_helpers import UNPACED, write_manifest, write_videos
from proxy import LoggingProxy

from valor_data.cli import main
from valor_data.errors import ConfigError
from valor_data.fetch import FetchConfig, fetch_status, load_fetch_config, run_fetch
from valor_data.synth.server import Fault, LoopbackServer
from valor_data.table import read_table
from valor_data.workdir import Workdir

VIDEOS = ["aaaaaaaaaaa", "bbbbbbbbbbb", "ccccccccccc", "ddddddddddd"]
GOOGLEVIDEO = "http://rr1---sn-h1b.googlevideo.com"
COOKIES = "# Netscape HTTP Cookie File\n# exported by hand: yt-dlp would rewrite this header\n{domain}\tFALSE\t/\tFALSE\t0\tsid\t{value}\n"


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    """The media server and two logging proxies in front of it."""
    folder = tmp_path_factory.mktemp("identity-media")
    write_videos(folder, VIDEOS)
    with LoopbackServer(folder) as server, LoggingProxy(server.url) as a, LoggingProxy(server.url) as b:
        yield {"server": server, "a": a, "b": b}
        server.clear_faults()


def cookies(tmp_path, name: str, value: str, domain: str = "127.0.0.1"):
    path = tmp_path / f"{name}.cookies.txt"
    path.write_text(COOKIES.format(domain=domain, value=value))
    return path


def run_cli(args: list[str]) -> int:
    try:
        main(args)
    except SystemExit as exc:
        return exc.code or 0
    return 0


def test_every_request_of_an_identity_goes_through_its_proxy_and_cookies_are_never_written(net, tmp_path):
    server, a, b = net["server"], net["a"], net["b"]
    jar_a, jar_b = cookies(tmp_path, "a", "A1"), cookies(tmp_path, "b", "B2")
    before = {p: p.read_bytes() for p in (jar_a, jar_b)}
    workdir = Workdir.create(tmp_path / "w")
    urls = {f"cut{i}": f"{server.url}/media/{VIDEOS[i % 2]}.mp4?c={i}" for i in range(6)}
    urls["section"] = f"{server.url}/watch/{VIDEOS[2]}.html?c=s"    # yt-dlp finds the media in the page
    write_manifest(workdir, urls)
    server.add_fault(f"/media/{VIDEOS[2]}.mp4", Fault("status", code=403), times=2)   # ffmpeg's read + diagnosis
    identities = [{"name": "a", "proxy": a.url, "cookies_file": str(jar_a), "source_address": "127.0.0.3",
                   "min_gap_s": 0.3},
                  {"name": "b", "proxy": b.url, "cookies_file": str(jar_b), "source_address": "127.0.0.2",
                   "min_gap_s": 0.3}]
    cfg = FetchConfig(workers=1, threads=2, task_size=8, timeout_s=5,
                      youtube={**UNPACED, "min_gap_s": 0.3, "identities": identities})
    origin_before, seen_before = len(server.requests), len(a.requests) + len(b.requests)
    summary = run_fetch(workdir, cfg, progress=False, preflight=False)

    assert summary.run == {"ok": 7}
    rows = {r["clip_id"]: r for r in read_table(workdir.path("fetch.parquet")).to_pylist()}
    assert rows["section"]["method"] == "section" and {rows[c]["method"] for c in urls if c != "section"} == {"cut"}
    # nothing reached the server but through a proxy (resolver, ffmpeg, diagnosis, section download)
    assert len(server.requests) - origin_before == len(a.requests) + len(b.requests) - seen_before
    marks = {clip: f"?c={clip[3:]}" for clip in urls if clip != "section"} | {"section": VIDEOS[2]}
    for clip, mark in marks.items():   # the section's media URL is the page's, without its query
        carriers = {name for name, proxy in (("a", a), ("b", b)) for r in proxy.requests if mark in r[4]}
        assert len(carriers) == 1, (clip, carriers)        # one identity per clip, every request through it
        proxy, value, client = (a, "A1", "127.0.0.3") if carriers == {"a"} else (b, "B2", "127.0.0.2")
        mine = [r for r in proxy.requests if mark in r[4]]
        kinds = {"ffmpeg" if r[5].get("Icy-MetaData") else "resolver" for r in mine}
        assert kinds == {"ffmpeg", "resolver"}, (clip, mine)
        assert {r[1] for r in mine} == {client}, [(r[1], r[4], r[5].get("Range"), r[5].get("Icy-MetaData")) for r in mine]  # the identity's source address, yt-dlp and ffmpeg
        assert {r[5].get("Cookie") for r in mine if r[5].get("Cookie")} == {f"sid={value}"}
    assert len(a.requests) > seen_before and len(b.requests) > seen_before
    assert {p: p.read_bytes() for p in (jar_a, jar_b)} == before      # yt-dlp closed its YoutubeDL: no write
    assert not [p for p in workdir.path("fetch", "identities").rglob("*") if p.is_dir()]   # private copies gone
    counters = json.loads(workdir.path("fetch", "progress.json").read_text())["identities"]
    assert sum(c["ok"] for c in counters.values()) == 7 and all(c["resolves"] for c in counters.values())


def test_blocked_everywhere_stops_the_run_and_records_no_clip(net, tmp_path, capsys):
    server, a, b = net["server"], net["a"], net["b"]
    workdir = Workdir.create(tmp_path / "w")
    write_manifest(workdir, {f"blk{i}": f"{GOOGLEVIDEO}/media/{VIDEOS[3]}.mp4?b={i}" for i in range(6)})
    server.add_fault(f"/media/{VIDEOS[3]}.mp4", Fault("status", code=403), times=None)
    (tmp_path / "ids.yaml").write_text(yaml.safe_dump([{"name": "a", "proxy": a.url}, {"name": "b", "proxy": b.url}]))
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(yaml.safe_dump({"fetch": {"youtube": {"block_threshold": 2, "quarantine_s": 0.5,
                                                              "max_quarantines": 2, "blocked_retries": 1}}}))
    try:
        code = run_cli(["fetch", "audioset", "-w", str(workdir.root), "--pipeline", str(pipeline), "--identities",
                        str(tmp_path / "ids.yaml"), "--workers", "1", "--threads", "2", "--task-size", "6",
                        "--videos-per-hour", "10000000", "--min-gap", "0", "--no-progress", "--skip-doctor"])
    finally:
        server.clear_faults()
    err = capsys.readouterr().err
    assert code != 0 and "YouTube is blocking every identity" in err and "no clip was recorded" in err, err
    assert not list(workdir.path("fetch", "tasks").glob("*.parquet"))     # no row: nothing unavailable or failed
    progress = json.loads(workdir.path("fetch", "progress.json").read_text())
    assert progress["state"] == "stopped" and "blocking every identity" in progress["message"]
    assert {n: (c["state"], c["quarantines"]) for n, c in progress["identities"].items()} == \
        {"a": ("out", 2), "b": ("out", 2)}
    status = "\n".join(fetch_status(workdir))
    assert "identity a: out" in status and "identity b: out" in status

    # the same fault on one video only while other clips go through: that clip alone is recorded
    # blocked (retryable), once others succeeded after its first block (else it waits like a session block)
    write_manifest(workdir, {"only": f"{GOOGLEVIDEO}/media/{VIDEOS[3]}.mp4?b=only",
                             **{f"blk{i}": f"{GOOGLEVIDEO}/media/{VIDEOS[i % 2]}.mp4?b={i}" for i in range(4)}})
    server.add_fault(f"/media/{VIDEOS[3]}.mp4", Fault("status", code=403), times=None)
    cfg = load_fetch_config(yaml.safe_load(pipeline.read_text()), {"workers": 1, "threads": 2, "task_size": 5},
                            {**UNPACED, "identities": yaml.safe_load((tmp_path / "ids.yaml").read_text()),
                             "block_threshold": 1000})    # no quarantine while the other clips go through
    try:
        summary = run_fetch(workdir, cfg, progress=False, preflight=False)
    finally:
        server.clear_faults()
    assert summary.run == {"ok": 4, "blocked": 1}
    row = next(r for r in read_table(workdir.path("fetch.parquet")).to_pylist() if r["clip_id"] == "only")
    assert row["status"] == "blocked" and row["error_class"] == "HTTP403" and row["attempts"] >= 2


def test_socks_proxies_are_refused_at_load_with_what_to_do():
    for youtube in ({"proxy": "socks5h://127.0.0.1:1080"},
                    {"identities": [{"name": "x", "proxy": "socks5://127.0.0.1:1080"}]}):
        with pytest.raises(ConfigError, match="cannot speak SOCKS: run an HTTP proxy in front of it"):
            load_fetch_config({"fetch": {"youtube": youtube}})
    with pytest.raises(ConfigError, match="names must be unique"):
        load_fetch_config({"fetch": {"youtube": {"identities": [{"name": "x"}, {"name": "x"}]}}})


def test_plan_prints_the_budgets_and_the_time_then_fetches_nothing(tmp_path, capsys):
    workdir = Workdir.create(tmp_path / "w")
    urls = {f"y{i}": f"https://www.youtube.com/watch?v={i:011d}" for i in range(3000)}
    write_manifest(workdir, urls)
    jar = cookies(tmp_path, "a", "A1", domain=".youtube.com")
    (tmp_path / "ids.yaml").write_text(yaml.safe_dump({"identities": [
        {"name": "home", "cookies_file": str(jar)}, {"name": "office", "cookies_file": str(jar)}]}))
    code = run_cli(["fetch", "audioset", "-w", str(workdir.root), "--identities", str(tmp_path / "ids.yaml"), "--plan"])
    out = capsys.readouterr().out
    assert code == 0
    assert "YouTube: 3,000 clips at 1,500/h x 2 identities: 1.0 h" in out, out
    assert "home" in out and "office" in out and "cookies: yes" in out
    assert "concurrency: " in out and "(from the budgets)" in out
    assert not workdir.path("fetch", "tasks").exists() and not workdir.path("fetch.parquet").exists()
    code = run_cli(["fetch", "audioset", "-w", str(workdir.root), "--plan", "--limit", "500"])
    assert code == 0 and "YouTube: 500 clips at 250/h x 1 identity: 2.0 h" in capsys.readouterr().out


def test_threads_share_one_private_cookie_jar_per_identity(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from valor_data.fetch import identity, youtube

    jar = cookies(tmp_path, "a", "A1")
    before = jar.read_bytes()
    workdir = Workdir.create(tmp_path / "w")
    cfg = FetchConfig(youtube={"identities": [{"name": "a", "cookies_file": str(jar)}, {"name": "b"}]})
    a, b = identity.pool(workdir, cfg).identities
    assert identity.pool(workdir, cfg).identities[0] is a             # one pool per process and run
    with ThreadPoolExecutor(3) as threads:
        ydls = list(threads.map(lambda _: youtube._ydl(cfg, a), range(3)))
    assert len({id(y) for y in ydls}) == 3 and all(y.cookiejar is a.jar for y in ydls)   # one jar, not one a thread
    copy = workdir.path("fetch", "identities") / next(workdir.path("fetch", "identities").iterdir()).name / "a.txt"
    assert a.cookiefile == str(copy) and copy.read_bytes() == before and copy.stat().st_mode & 0o777 == 0o600
    assert a.jar.get_cookie_header("http://127.0.0.1/x") == "sid=A1"
    for ydl in ydls:
        ydl.close()                       # what yt-dlp's close() does: save the jar (a no-op here)
    assert jar.read_bytes() == before and copy.read_bytes() == before and b.jar is None
