"""Clips/s of `valor-data fetch` on synthetic AudioSet-style clips served from loopback.

Three measurements in the same run, on the same clips (sources 30-60 s, 10 s segments):

(a) valor-data fetch: ``run_fetch`` through the real yt-dlp path (``extract_info`` per clip,
    one ffmpeg pass seeking into the loopback URL, PyAV checks, task tables), from a cold
    start of its process pool.
(b) naive: per clip, one after the other, ``yt-dlp`` downloads the whole video, then ffmpeg
    cuts and transcodes the segment (same ffmpeg settings and outputs as (a)). Also shown
    with (a)'s parallelism, for reference.
(c) the limit: bare ffmpeg normalising the same segments from local files with the same
    settings (identical argument lists) and the same number of ffmpeg processes at once.

Targets: (a) >= 0.8 x (c) and (a) >= 2 x (b).

    .venv/bin/python bench/fetch.py [--clips 200] [--workers 2] [--threads 2] [--naive-clips 50]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from valor_data.fetch import FetchConfig, run_fetch
from valor_data.fetch.normalize import Source, ffmpeg_args
from valor_data.manifest import build_audioset
from valor_data.media.ffmpeg import run_ffmpeg
from valor_data.synth.corpus import SynthConfig, make_corpus, read_truth
from valor_data.synth.server import LoopbackServer
from valor_data.workdir import Workdir


def corpus(folder: Path, clips: int) -> list[dict]:
    """The synthetic corpus (cached in ``folder`` between runs)."""
    if not (folder / "truth.jsonl").exists() or len(read_truth(folder)) != clips:
        shutil.rmtree(folder, ignore_errors=True)
        make_corpus(folder, SynthConfig(clips=clips, seed=7, source_seconds=(30, 60), short_fraction=0.1))
    return read_truth(folder)


def limit(truth: list[dict], folder: Path, out: Path, cfg: FetchConfig, parallel: int) -> float:
    """(c) bare ffmpeg, local files, same arguments, ``parallel`` processes at once."""
    def one(clip: dict) -> None:
        source = Source(str(folder / clip["file"]))
        run_ffmpeg(ffmpeg_args([source], clip["start_s"], clip["end_s"], out / f"{clip['video_id']}.mp4",
                               out / f"{clip['video_id']}.flac", cfg), timeout=600)

    started = time.monotonic()
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(one, truth))
    return time.monotonic() - started


def valor(folder: Path, url: str, work: Path, cfg: FetchConfig) -> float:
    """(a) the fetch stage from a cold process pool (the manifest is built beforehand)."""
    workdir = Workdir.create(work)
    build_audioset(workdir, {"balanced_train": folder / "balanced_train_segments.csv"},
                   url_template=url + "/media/{video_id}.mp4")
    started = time.monotonic()
    summary = run_fetch(workdir, cfg, progress=False)
    seconds = time.monotonic() - started
    assert summary.run == {"ok": summary.planned}, summary.run
    return seconds


def naive(truth: list[dict], url: str, out: Path, cfg: FetchConfig, parallel: int) -> float:
    """(b) per clip: `yt-dlp` downloads the whole video, then ffmpeg transcodes the segment."""
    def one(clip: dict) -> None:
        whole = out / f"{clip['video_id']}.source.mp4"
        subprocess.run([sys.executable, "-m", "yt_dlp", "-q", "--no-warnings", "-f", "best", "-o", str(whole),
                        f"{url}/{clip['file']}"], check=True)
        run_ffmpeg(ffmpeg_args([Source(str(whole))], clip["start_s"], clip["end_s"], out / f"{clip['video_id']}.mp4",
                               out / f"{clip['video_id']}.flac", cfg), timeout=600)

    started = time.monotonic()
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(one, truth))
    return time.monotonic() - started


def timed(fn, *args) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process and every finished child) of ``fn(*args)``."""
    def cpu() -> float:
        own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    before = cpu()
    wall = fn(*args)
    return wall, cpu() - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="fetch processes")
    parser.add_argument("--threads", type=int, default=3, help="clips in flight per process")
    parser.add_argument("--naive-clips", type=int, default=50, help="clips for the (slow) naive script")
    parser.add_argument("--rounds", type=int, default=2, help="(c) then (a), this many times, alternating")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "valor-bench-fetch")
    args = parser.parse_args()
    parallel = args.workers * args.threads
    # loopback: no YouTube budget (pacing costs no CPU; it only spaces resolves in time)
    cfg = FetchConfig(workers=args.workers, threads=args.threads, youtube={"videos_per_hour": 1e7, "min_gap_s": 0})
    truth = corpus(args.cache / "corpus", args.clips)
    folder = args.cache / "corpus"
    few = truth[: args.naive_clips]
    rounds = []
    with tempfile.TemporaryDirectory(dir=args.cache) as tmp, LoopbackServer(folder) as server:
        tmp = Path(tmp)
        for i in range(args.rounds):
            (tmp / f"c{i}").mkdir()
            c = timed(limit, truth, folder, tmp / f"c{i}", cfg, parallel)
            a = timed(valor, folder, server.url, tmp / f"a{i}", cfg)
            rounds.append((a, c))
        for name in ("b1", "bp"):
            (tmp / name).mkdir()
        b = timed(naive, few, server.url, tmp / "b1", cfg, 1)
        bp = timed(naive, few, server.url, tmp / "bp", cfg, parallel)
    report(truth, few, args, parallel, rounds, b, bp)


def report(truth, few, args, parallel, rounds, b, bp) -> None:
    n, m = len(truth), len(few)
    seconds = sum(min(t["end_s"], t["source_seconds"]) - t["start_s"] for t in truth)
    print(f"fetch: {n} clips ({seconds:.0f} s of segments from 30-60 s sources), {os.cpu_count()} cores, "
          f"{args.workers} processes x {args.threads} threads = {parallel} ffmpeg at once")
    for i, ((a, a_cpu), (c, c_cpu)) in enumerate(rounds, 1):
        print(f"  round {i}: (a) valor-data fetch {n / a:5.2f} clips/s ({a:.1f} s, {a_cpu / n:.2f} CPU s/clip)   "
              f"(c) bare ffmpeg, local files {n / c:5.2f} clips/s ({c:.1f} s, {c_cpu / n:.2f} CPU s/clip)   "
              f"(a)/(c) = {c / a:.2f}")
    a = statistics.median(r[0][0] for r in rounds)
    c = statistics.median(r[1][0] for r in rounds)
    print(f"  (a) valor-data fetch (yt-dlp + one ffmpeg pass)    {n / a:6.2f} clips/s  (median of {len(rounds)})")
    print(f"  (b) naive yt-dlp download + ffmpeg, one at a time  {m / b[0]:6.2f} clips/s  ({m} clips, {b[0]:.1f} s, "
          f"{b[1] / m:.2f} CPU s/clip)")
    print(f"      naive, {parallel} at once (reference)               {m / bp[0]:6.2f} clips/s  ({bp[0]:.1f} s)")
    print(f"  (c) bare ffmpeg on local files (the limit)         {n / c:6.2f} clips/s  (median of {len(rounds)})")
    print(f"  (a)/(c) = {c / a:.2f}  (target >= 0.8)")
    print(f"  (a)/(b) = {(n / a) / (m / b[0]):.2f}  (target >= 2);  (a)/(naive parallel) = {(n / a) / (m / bp[0]):.2f}")


if __name__ == "__main__":
    main()
