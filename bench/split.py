"""split + verify-splits at VALOR scale, and build-shards throughput, each against its floor.

1. A work dir with a synthetic 2,041,789-row ``unbalanced_train`` manifest plus the real
   AudioSet balanced + eval lists (``../shared/data/audioset``), and fetch (75 % ok),
   quality and signatures tables. ``valor-data split`` and ``valor-data verify-splits
   --splits-only`` each run in a fresh process (wall and CPU seconds, peak RSS), next to
   a process that only reads the same Parquet columns (the I/O floor). Target: split +
   verify under 60 s and 2 GB.
2. ``build-shards`` on clips with random-byte media of typical sizes (~1 MB mp4, ~0.3 MB
   flac), against GNU ``tar -cf`` copying the same media files (target: >= 0.8x tar's MB/s).

    .venv/bin/python bench/split.py [--rows 2041789] [--clips 1000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
AUDIOSET = ROOT.parent / "shared" / "data" / "audioset"
VALOR = [sys.executable, "-m", "valor_data.cli"]
ALPHABET = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", dtype=np.uint8)
# Runs the CLI (or a snippet) in a fresh process; prints wall and CPU seconds and the process's
# own peak RSS (VmHWM: ru_maxrss would count the parent's pages copied at fork).
MEASURE = """
import json, os, sys, time
t, cpu = time.perf_counter(), os.times()
if sys.argv[1] == "-c":
    exec(sys.argv[2])
else:
    from valor_data.cli import main
    try:
        main(sys.argv[1:])
    except SystemExit as exc:
        assert not exc.code, f"exit status {exc.code}"
end = os.times()
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({"seconds": time.perf_counter() - t, "cpu": end.user + end.system - cpu.user - cpu.system,
                  "rss_mb": hwm / 1024}))
"""
READ_FLOOR = """
import pyarrow.parquet as pq
COLUMNS = {"manifest": ["clip_id", "subset", "video_id", "labels"], "fetch": ["clip_id", "status"],
           "quality": ["clip_id", "verdict", "reasons"], "signatures": ["clip_id", "dup_group", "dup_keep"]}
for name, columns in COLUMNS.items():
    pq.read_table(f"{W}/{name}.parquet", columns=columns)
"""


def measure(*args: str) -> dict:
    """Wall seconds, CPU seconds and peak RSS (MB) of ``valor-data ARGS`` (or ``-c CODE``) in a fresh process."""
    out = subprocess.run([sys.executable, "-c", MEASURE, *args], check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def synthetic_unbalanced(rows: int, real: pa.Table, rng: np.random.Generator) -> pa.Table:
    """``rows`` AudioSet-like clips: random YouTube ids, labels drawn like the real lists' labels."""
    ids = pa.array(np.frombuffer(ALPHABET[rng.integers(0, 64, (rows, 11))].tobytes(), dtype="S11")).cast(pa.string())
    start = rng.integers(0, 30, rows) * 10
    start_txt = pa.array(start.astype(str))
    labels = pc.list_flatten(real.column("labels")).combine_chunks()
    names = pc.list_flatten(real.column("label_names")).combine_chunks()
    counts = rng.integers(1, 4, rows)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    pick = rng.integers(0, len(labels), int(offsets[-1]))
    return pa.table({
        "clip_id": pc.binary_join_element_wise(ids, start_txt, "_"), "source": pa.repeat("audioset", rows),
        "subset": pa.repeat("unbalanced_train", rows), "video_id": ids,
        "url": pc.binary_join_element_wise("https://www.youtube.com/watch?v=", ids, ""),
        "start_s": pa.array(start, pa.float64()), "end_s": pa.array(start + 10, pa.float64()),
        "labels": pa.ListArray.from_arrays(offsets, labels.take(pick)),
        "label_names": pa.ListArray.from_arrays(offsets, names.take(pick)),
        "captions": pa.nulls(rows, pa.list_(pa.string())), "language": pa.nulls(rows, pa.string()),
        "category": pa.nulls(rows, pa.string()), "category_index": pa.nulls(rows, pa.int32()),
        "valor_id": pc.binary_join_element_wise(ids, start_txt, "_"), "origin": pa.nulls(rows, pa.string()),
        "checksum": pa.nulls(rows, pa.string())})


def stage_tables(w: Path, clip_ids: pa.Array, subsets: pa.Array, rng: np.random.Generator) -> None:
    """fetch (75 % ok), signatures (1 % of fetched clips in duplicate pairs, a tenth of them
    pretraining + benchmark) and quality (5 % rejected, plus every non-kept duplicate, as the filter does)."""
    n = len(clip_ids)
    ok = rng.random(n) < 0.75
    status = np.where(ok, "ok", rng.choice(["unavailable", "failed_permanent", "failed_transient"], n))
    pq.write_table(pa.table({"clip_id": clip_ids, "status": status, "error": pa.nulls(n, pa.string())}),
                   w / "fetch.parquet")
    is_bench = pc.is_in(subsets, value_set=pa.array(["balanced_train", "eval"])).to_numpy(zero_copy_only=False)
    bench, pretrain = np.flatnonzero(is_bench & ok), np.flatnonzero(~is_bench & ok)
    pairs = int(ok.sum()) // 200
    left = rng.choice(pretrain, pairs, replace=False)
    right = np.concatenate([rng.choice(bench, pairs // 10, replace=False),
                            rng.choice(np.setdiff1d(pretrain, left), pairs - pairs // 10, replace=False)])
    pq.write_table(pa.table({"clip_id": clip_ids.take(pa.array(np.concatenate([left, right]))),
                             "dup_group": np.concatenate([np.arange(pairs), np.arange(pairs)]),
                             "dup_keep": np.concatenate([np.ones(pairs, bool), np.zeros(pairs, bool)])}),
                   w / "signatures.parquet")
    fetched = np.flatnonzero(ok)
    silent = rng.random(len(fetched)) < 0.05
    duplicate = np.isin(fetched, right)
    reasons = pa.array([(["silent_audio"] if s else []) + (["duplicate"] if d else [])
                        for s, d in zip(silent, duplicate, strict=True)], pa.list_(pa.string()))
    m = len(fetched)
    pq.write_table(pa.table({"clip_id": clip_ids.take(pa.array(fetched)),
                             "verdict": np.where(silent | duplicate, "reject", "keep"), "reasons": reasons,
                             "loudness_db": rng.normal(-20, 5, m), "motion": rng.random(m)}), w / "quality.parquet")


def make_split_workdir(w: Path, rows: int) -> int:
    from valor_data.manifest import build_audioset
    from valor_data.table import CLIP_SCHEMA
    from valor_data.workdir import Workdir

    workdir = Workdir.create(w)
    build_audioset(workdir, {s: AUDIOSET / f"{s}_segments.csv" for s in ("balanced_train", "eval")},
                   AUDIOSET / "class_labels_indices.csv", AUDIOSET / "ontology.json")
    real = pq.read_table(workdir.manifest)
    rng = np.random.default_rng(0)
    manifest = pa.concat_tables([synthetic_unbalanced(rows, real, rng).cast(CLIP_SCHEMA), real])
    pq.write_table(manifest, workdir.manifest, compression="zstd")
    stage_tables(w, manifest.column("clip_id").combine_chunks(), manifest.column("subset").combine_chunks(), rng)
    return manifest.num_rows


def bench_split(tmp: Path, rows: int) -> list[str]:
    w = tmp / "split"
    total = make_split_workdir(w, rows)
    floor = measure("-c", READ_FLOOR.replace("{W}", str(w)))
    split = measure("split", "-w", str(w), "--pipeline", "pipelines/valor.yaml")
    verify = measure("verify-splits", str(w), "--splits-only")
    counts = json.loads((w / "splits.json").read_text())
    mb = sum((w / f"{n}.parquet").stat().st_size for n in ("manifest", "fetch", "quality", "signatures")) / 1e6
    both = split["seconds"] + verify["seconds"]
    return [f"split + verify: {total:,} manifest rows ({rows:,} synthetic unbalanced + real balanced/eval), "
            f"{mb:.0f} MB of Parquet, {os.cpu_count()} cores",
            f"  read the same Parquet (floor) {floor['seconds']:6.1f} s wall {floor['cpu']:6.1f} s CPU "
            f"{floor['rss_mb']:6.0f} MB peak",
            f"  valor-data split              {split['seconds']:6.1f} s wall {split['cpu']:6.1f} s CPU "
            f"{split['rss_mb']:6.0f} MB peak",
            f"  valor-data verify-splits      {verify['seconds']:6.1f} s wall {verify['cpu']:6.1f} s CPU "
            f"{verify['rss_mb']:6.0f} MB peak (--splits-only)",
            f"  split + verify                {both:6.1f} s wall (target < 60 s and < 2,048 MB: "
            f"{'met' if both < 60 and max(split['rss_mb'], verify['rss_mb']) < 2048 else 'MISSED'}); "
            f"split {split['seconds'] / floor['seconds']:.1f}x, verify {verify['seconds'] / floor['seconds']:.1f}x "
            "the read floor",
            f"  result: {counts['counts']}, largest label deviation "
            f"{counts['label_deviation']['max'] * 100:.2f} pp"]


def make_shard_workdir(w: Path, clips: int) -> list[Path]:
    """A manifest of ``clips`` benchmark clips with random-byte media (~1 MB mp4, ~0.3 MB flac)."""
    from valor_data.table import CLIP_SCHEMA, clip_row, to_table, write_table
    from valor_data.workdir import Workdir

    workdir = Workdir.create(w)
    rng = np.random.default_rng(1)
    rows, media = [], []
    for i in range(clips):
        vid = f"bench{i:06d}"
        rows.append(clip_row(clip_id=f"{vid}_0", source="audioset", subset="balanced_train", video_id=vid,
                             start_s=0.0, end_s=10.0, labels=["/m/09x0r"], captions=[f"clip {i}"]))
        for ext, size in (("mp4", int(rng.normal(1_000_000, 200_000))), ("flac", int(rng.normal(300_000, 50_000)))):
            path = workdir.media_path(f"{vid}_0", ext)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(rng.bytes(max(size, 1000)))
            media.append(path)
    write_table(to_table(rows, CLIP_SCHEMA), workdir.manifest)
    subprocess.run([*VALOR, "split", "-w", str(w), "--parts", f"valor32k-train={clips}"], check=True,
                   stdout=subprocess.DEVNULL, cwd=ROOT)
    return media


def bench_shards(tmp: Path, clips: int, rounds: int) -> list[str]:
    """build-shards (in this process: no interpreter start-up) against ``tar -cf`` of the same media."""
    from valor_data.shards.build import build_shards
    from valor_data.shards.config import ShardConfig
    from valor_data.workdir import Workdir

    w = tmp / "shards"
    media = make_shard_workdir(w, clips)
    listing = tmp / "files.txt"
    listing.write_text("".join(f"{p.relative_to(w)}\n" for p in media))
    cfg = ShardConfig(max_bytes=100_000_000, workers=2)
    ours, floor = [], []
    for _ in range(rounds):
        started, cpu = time.perf_counter(), os.times()
        subprocess.run(["tar", "-cf", str(tmp / "copy.tar"), "-C", str(w), "-T", str(listing)], check=True)
        end = os.times()
        size = (tmp / "copy.tar").stat().st_size
        floor.append((size / (time.perf_counter() - started) / 1e6,
                      end.children_user + end.children_system - cpu.children_user - cpu.children_system))
        (tmp / "copy.tar").unlink()
        shutil.rmtree(w / "shards", ignore_errors=True)
        started, cpu = time.perf_counter(), os.times()
        build_shards(Workdir(w), cfg)
        end = os.times()
        size = sum(p.stat().st_size for p in (w / "shards").glob("*.tar"))
        ours.append((size / (time.perf_counter() - started) / 1e6, end.user + end.system - cpu.user - cpu.system))
    ours_mb, floor_mb = (float(np.median([r[0] for r in x])) for x in (ours, floor))
    ours_cpu, floor_cpu = (float(np.median([r[1] for r in x])) for x in (ours, floor))
    rounds_txt = lambda x: ", ".join(f"{r[0]:.0f}" for r in x)  # noqa: E731
    return [f"build-shards: {clips} clips, {size / 1e6:,.0f} MB of tars in {cfg.max_bytes / 1e6:.0f} MB shards, "
            f"{cfg.workers} workers, median of {rounds} rounds, load average {os.getloadavg()[0]:.1f}",
            f"  tar -cf of the same media (floor) {floor_mb:6.0f} MB/s  {floor_cpu:5.1f} s CPU  (rounds: {rounds_txt(floor)})",
            f"  build-shards (plan, write, index)  {ours_mb:6.0f} MB/s  {ours_cpu:5.1f} s CPU  (rounds: {rounds_txt(ours)})",
            f"  ratio build-shards / tar           {ours_mb / floor_mb:6.2f}x MB/s (target >= 0.8x), "
            f"{floor_cpu / ours_cpu:.2f}x MB per CPU second"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_041_789, help="synthetic unbalanced_train rows")
    parser.add_argument("--clips", type=int, default=1000, help="clips for the shard throughput run")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--skip-split", action="store_true")
    args = parser.parse_args()
    if not (AUDIOSET / "eval_segments.csv").exists():
        sys.exit(f"needs the real AudioSet lists at {AUDIOSET}")
    with tempfile.TemporaryDirectory(prefix="bench-split-") as tmp:
        lines = [] if args.skip_split else bench_split(Path(tmp), args.rows)
        lines += bench_shards(Path(tmp), args.clips, args.rounds)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
