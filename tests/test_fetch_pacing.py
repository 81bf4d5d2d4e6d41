"""Pacing: one resolve budget per identity, shared by threads and processes through the work dir.

The unit tests take slots from several processes directly; the end-to-end test runs the real
worker (2 processes x 3 threads, yt-dlp's generic extractor on loopback) and measures the
budget from the server's request log over real 60 s windows."""

from __future__ import annotations

import json
import multiprocessing
import time
from concurrent.futures import ThreadPoolExecutor

from fetch_helpers import write_manifest, write_videos

from valor_data.fetch import FetchConfig, run_fetch
from valor_data.fetch.config import IdentityConfig, YouTubeConfig
from valor_data.fetch.pacing import Budget, Pacer, budget, in_flight
from valor_data.synth.server import LoopbackServer
from valor_data.workdir import Workdir


def _take(path: str, interval: float, count: int, threads: int) -> list[float]:
    """``threads`` threads of this process take ``count`` slots each; return the slots and when
    each taker woke up."""
    pacer = Pacer(path, interval)

    def one(_: int) -> list[tuple[float, float]]:
        out = []
        for _ in range(count):
            slot = pacer.take()
            out.append((slot, time.time()))
        return out

    with ThreadPoolExecutor(threads) as pool:
        return [t for times in pool.map(one, range(threads)) for t in times]


def test_slots_are_an_interval_apart_across_processes_and_threads(tmp_path):
    interval = 0.05
    path = str(tmp_path / "pacing" / "a.json")
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        results = pool.starmap(_take, [(path, interval, 10, 3)] * 2)
    taken = sorted(t for result in results for t in result)
    slots = [slot for slot, _ in taken]
    assert len(slots) == 60
    gaps = [b - a for a, b in zip(slots, slots[1:], strict=False)]
    assert min(gaps) >= interval - 1e-6, min(gaps)      # slots an interval apart, whoever took them
    assert all(woke >= slot for slot, woke in taken)   # and nobody started before its slot
    state = json.loads((tmp_path / "pacing" / "a.json").read_text())
    assert state["resolves"] == 60 and state["wait_s"] > 0


def test_a_schedule_past_the_cap_is_reset_and_waits_are_bounded(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(json.dumps({"next_at": time.time() + 10 * 3600}))   # a clock jump, a stale file
    slept = []
    pacer = Pacer(path, 2.0, max_wait_s=60.0)
    first = pacer.take(sleep=slept.append)
    assert first <= time.time() and slept == []
    second = pacer.take(sleep=slept.append)
    assert abs(second - first - 2.0) < 1e-6 and len(slept) == 1 and 1.9 < slept[0] <= 2.0   # one interval on


def test_budgets_default_by_cookies_and_size_the_concurrency():
    yt = YouTubeConfig()
    guest, account = budget(IdentityConfig("g"), yt), budget(IdentityConfig("a", cookies_file="c.txt"), yt)
    assert (guest.per_hour, account.per_hour) == (250.0, 1500.0)
    assert guest.interval_s == 14.4 and account.interval_s == 2.4
    assert budget(IdentityConfig("x", videos_per_hour=7200.0), yt).interval_s == 1.0    # the 1 s gap wins
    assert Budget(60.0, 5.0).interval_s == 60.0
    cfg = FetchConfig(threads=3)
    assert in_flight([guest], cfg)[0] == 1           # 250/h: one worker's 3 threads are plenty
    workers, threads = in_flight([account] * 4, cfg)    # 6,000/h x 20 s + 4 = 38 clips in flight
    assert threads == 3 and workers == min(multiprocessing.cpu_count(), 13)


def test_two_processes_by_three_threads_keep_the_budget_in_every_60s_window(tmp_path):
    """B = 40 resolves a minute; 52 clips take ~77 s. Every window of 60 s (from each resolve on)
    holds at most B + 1 slots by construction (slots 1.5 s apart); 10 % is the allowed excess."""
    per_minute, clips = 40, 52
    write_videos(tmp_path / "srv", ["paced000000"], seconds=2.0)
    workdir = Workdir.create(tmp_path / "w")
    with LoopbackServer(tmp_path / "srv") as server:
        write_manifest(workdir, {f"p{i:03d}": f"{server.url}/media/paced000000.mp4?p={i}" for i in range(clips)},
                       end=0.5)
        cfg = FetchConfig(workers=2, threads=3, task_size=4, timeout_s=10,
                          youtube={"videos_per_hour": per_minute * 60.0, "min_gap_s": 0.0})
        summary = run_fetch(workdir, cfg, progress=False, preflight=False)
        resolves = sorted(t for t, _, _, range_header in server.timed_requests if range_header is None)
    assert summary.run == {"ok": clips} and len(resolves) == clips    # yt-dlp's GET has no Range; ffmpeg's do
    worst = max(sum(1 for u in resolves if t <= u < t + 60.0) for t in resolves)
    assert worst <= per_minute * 1.1, worst
    assert resolves[-1] - resolves[0] >= (clips - 1) * 1.5 * 0.95      # paced, not merely slow
    counters = json.loads(workdir.path("fetch", "progress.json").read_text())["identities"]["default"]
    assert counters["resolves"] == clips and counters["wait_s"] > 0
