"""Benchmark the reference trainer: data loading, CPU step times, and (when lent) a GPU.

- the gap (issue 16): each preset's training FLOPs per sample (counted with torch's
  FlopCounterMode on a forward + backward at batch 1, random init), the samples/s an accelerator
  of ``--peak-tflops`` needs at 40 % utilisation, and what one loader core gives, today (mp4 +
  FLAC) and from build-shards' pre-sampled members (JPEG frames + float16 filterbank), side by
  side on the same clips: CPU ms per base sample, and the base-shape loader with 1 and 2 workers;
- data loader: samples/s over synthetic shards of 10 s 320x240 25 fps clips (one keyframe per
  clip as rendered, and one per second as fetch writes them), with 0, 1 and 2 workers (decode N
  frames with PyAV + resize, FLAC + filterbank, tokenize), per worker, and the per-sample cost of
  each part for the tiny and base sample shapes;
- CPU step time (forward + backward + AdamW) of the tiny and base presets (random init);
- GPU (CUDA only): base-preset samples/s and peak memory under bf16 autocast.

Ratios are against baselines measured in the same run (the main-process loader, the tiny step).
Usage: python bench/train.py [--clips 16] [--base-batch 2] [--gpu-batch 32] [--peak-tflops 989]
"""

from __future__ import annotations

import argparse
import io
import os
import random
import tarfile
import tempfile
import time
from pathlib import Path

import torch
from presampled import add_presampled
from torch.utils.flop_counter import FlopCounterMode

from valor_data.synth.shards import SynthShards, make_synthetic_shards
from valor_data.train import audio, data, text, video
from valor_data.train.model import VALOR, count_parameters, model_config

UTILISATION = 0.4
PRESETS = ("tiny", "base")


def _timed(fn, repeat: int) -> tuple[float, float]:
    """Fastest (wall, CPU) seconds of ``fn()`` over ``repeat`` runs (after one warm-up run); on a
    shared machine the minimum is the least disturbed measurement."""
    fn()
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus)


def loader_rate(urls: list[str], tokenizer, spec: data.SampleSpec, workers: int,
                batches: int = 8) -> tuple[float, float]:
    """(samples/s, main-process CPU ms per sample) of the training stream (batches of 8), after
    two warm-up batches (worker start-up is not counted)."""
    return loader_run(urls, tokenizer, spec, workers, batches)[:2]


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def loader_run(urls: list[str], tokenizer, spec: data.SampleSpec, workers: int,
               batches: int = 8) -> tuple[float, float, float]:
    """(samples/s, main-process CPU ms per sample, workers' CPU ms per sample) of the training
    stream (batches of 8), after two warm-up batches (worker start-up is not counted). The
    workers' CPU is read while they run, so a loaded machine slows the wall rate, not this."""
    stream = iter(data.make_loader(data.ShardStream(urls, spec, tokenizer, 8, train=True, shuffle_buffer=16),
                                   workers))
    next(stream), next(stream)
    pids = [w.pid for w in getattr(stream, "_workers", [])]
    wall, cpu, worker_cpu = time.perf_counter(), time.process_time(), sum(map(_cpu_s, pids))
    count = sum(len(next(stream)["key"]) for _ in range(batches))
    used = sum(map(_cpu_s, pids)) - worker_cpu
    return (count / (time.perf_counter() - wall), 1000 * (time.process_time() - cpu) / count,
            1000 * used / count)


def part_costs(url: str, spec: data.SampleSpec) -> dict[str, float]:
    """Milliseconds per sample: frame decode + resize, FLAC read, filterbank + slices."""
    with tarfile.open(url) as tar:
        members = {m.name.split(".", 1)[1]: tar.extractfile(m).read() for m in list(tar)[:4]}
    rng = random.Random(0)
    wave = audio.read_flac(members["flac"])
    parts = {"frames": lambda: video.decode_frames(members["mp4"], spec.frames, spec.image_size, None),
             "flac": lambda: audio.read_flac(members["flac"]),
             "fbank": lambda: audio.audio_slices(wave, spec.audio_slices, spec.slice_frames, rng)}
    return {f"{name}_cpu_ms": 1000 * _timed(fn, 5)[1] for name, fn in parts.items()}


def one_pass_ms(url: str, spec: data.SampleSpec) -> float:
    """CPU ms to get the same frames by decoding the clip in one pass (the no-seek baseline)."""
    import av

    with tarfile.open(url) as tar:
        mp4 = next(tar.extractfile(m).read() for m in tar if m.name.endswith(".mp4"))

    def frames():
        with av.open(io.BytesIO(mp4)) as container:
            stream = container.streams.video[0]
            wanted = video.frame_indices(video.frame_count(container, stream), spec.frames, None)
            for frame in video.in_one_pass(list(container.demux(stream)), wanted):
                video.resize_frame(frame, spec.image_size, spec.resize)

    return 1000 * _timed(frames, 5)[1]


def sample_ms(url: str, spec: data.SampleSpec, samples: int = 4) -> float:
    """CPU ms per sample of ``data.decode_sample`` (training rule), over the first ``samples`` clips."""
    with tarfile.open(url) as tar:
        grouped: dict[str, dict] = {}
        for member in tar:
            key, ext = member.name.split(".", 1)
            grouped.setdefault(key, {"__key__": key})[ext] = tar.extractfile(member).read()
    rng = random.Random(0)
    clips = list(grouped.values())[:samples]
    return 1000 * _timed(lambda: [data.decode_sample(c, spec, rng) for c in clips], 3)[1] / len(clips)


def flops_per_sample(preset: str) -> float:
    """Training FLOPs of one sample: forward + backward at batch 1 on the CPU, counted by torch."""
    torch.manual_seed(0)
    model = VALOR(model_config(preset, {"vocab_size": 30522 if preset == "base" else 64}))
    inputs = _batch(model.cfg, 1, torch.device("cpu"))
    with FlopCounterMode(display=False) as counter:
        model(**inputs)["loss"].backward()
    return float(counter.get_total_flops())


def _batch(cfg, size: int, device: torch.device) -> dict[str, torch.Tensor]:
    ids = torch.randint(5, cfg.vocab_size, (size, cfg.max_text_len))
    ids[:, 0] = cfg.cls_id
    return {"frames": torch.randn(size, cfg.frames, 3, cfg.image_size, cfg.image_size, device=device),
            "fbank": torch.randn(size, cfg.audio_slices, cfg.slice_frames, cfg.mel_bins, device=device),
            "input_ids": ids.to(device), "attention_mask": torch.ones_like(ids, device=device)}


def step_time(preset: str, batch: int, repeat: int, device: torch.device,
              bf16: bool = False) -> tuple[float, float, int]:
    """(wall s, CPU s, parameters) per optimizer step of ``preset`` on ``device``."""
    torch.manual_seed(0)
    model = VALOR(model_config(preset, {"vocab_size": 30522 if preset == "base" else 64})).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    inputs = _batch(model.cfg, batch, device)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = model(**inputs)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()

    return (*_timed(step, repeat), count_parameters(model))


def data_bench(root: str, clips: int, loaders: bool = True):
    """Per-sample costs and loader throughput on clips with one keyframe, and with one per second
    (``loaders`` False: make the clips only); returns the clips' tokenizer."""
    started = time.perf_counter()
    make_synthetic_shards(root, SynthShards(splits=(("bench", clips),), seconds=10.0, width=320, height=240,
                                            fps=25.0, per_shard=8))
    make_synthetic_shards(root, SynthShards(splits=(("bench-k1", 8),), seconds=10.0, width=320, height=240,
                                            fps=25.0, per_shard=8, keyframe_s=1.0, seed=1))
    print(f"made {clips} + 8 clips (10 s, 320x240, 25 fps) in {time.perf_counter() - started:.1f} s")
    targets = data.read_targets(data.resolve_shards(root, "bench"))
    tokenizer = text.make_tokenizer(text.build_vocab(c for t in targets.values() for c in t["captions"]))
    for split, gop in () if not loaders else (("bench", "1 keyframe per 10 s"), ("bench-k1", "1 keyframe per s")):
        urls = data.resolve_shards(root, split)
        for preset in ("tiny", "base"):
            spec = data.SampleSpec.of(model_config(preset))
            costs = part_costs(urls[0], spec)
            print(f"{preset} sample ({spec.frames} frames {spec.image_size}px, {spec.audio_slices} slice(s)), {gop}: "
                  + ", ".join(f"{k} {v:.1f}" for k, v in costs.items()))
            if split == "bench-k1":
                single = one_pass_ms(urls[0], spec)
                print(f"  the same frames in one pass (no seeks): {single:.1f} CPU ms, "
                      f"seeking x{single / costs['frames_cpu_ms']:.2f} faster")
        spec = data.SampleSpec.of(model_config("tiny"))
        base_rate, cpu_ms = max(loader_rate(urls, tokenizer, spec, 0) for _ in range(2))    # best of 2
        print(f"loader (tiny shapes, {gop}) in the main process: {base_rate:.1f} samples/s, {cpu_ms:.1f} CPU "
              "ms/sample (decode + filterbank + tokenize)")
        for workers in (1, 2):
            rate, _ = max(loader_rate(urls, tokenizer, spec, workers) for _ in range(2))
            print(f"loader {workers} worker(s): {rate:.1f} samples/s, {rate / workers:.1f} per worker, "
                  f"x{rate / base_rate:.2f} vs the main process")
    return tokenizer


def gap_bench(root: str, tokenizer, peak_tflops: float, cores: int = 16) -> None:
    """The table of issue 16: what an accelerator needs against what the loader gives, per preset."""
    plain = Path(root) / "shards" / "bench-k1.shards.json"
    print(f"\nthe gap (clips as fetch writes them; {peak_tflops:g} TFLOPS peak at {UTILISATION:.0%}; "
          "CPU ms per sample: decode_sample, one thread; loader: the training stream, base shapes)")
    print("| preset | GFLOP / training sample | samples/s needed | today: CPU ms / sample | today: samples/s "
          "per core | pre-sampled: CPU ms / sample | pre-sampled: samples/s per core | CPU cost x lower | extra "
          f"bytes / sample | {cores} cores today | {cores} cores pre-sampled |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    fast_urls = {}
    for preset in PRESETS:
        cfg = model_config(preset)
        spec = data.SampleSpec.of(cfg)
        listing, extra = add_presampled(plain, f"fast-{preset}", 3, spec.frames, spec.image_size, spec.audio_rate)
        fast_urls[preset] = data.read_shard_list(listing)
        flops = flops_per_sample(preset)
        needed = peak_tflops * 1e12 * UTILISATION / flops
        today, fast = sample_ms(data.read_shard_list(plain)[0], spec), sample_ms(fast_urls[preset][0], spec)
        print(f"| {preset} | {flops / 1e9:,.1f} | {needed:,.0f} | {today:.1f} | {1000 / today:.1f} | {fast:.1f} | "
              f"{1000 / fast:.1f} | {today / fast:.1f}x | {extra:,} | {cores * 1000 / today:,.0f} | "
              f"{cores * 1000 / fast:,.0f} |")
    spec = data.SampleSpec.of(model_config("base"))
    print("\nloader, base shapes (8 frames at 224 px, 2 slices), training stream, batches of 8:")
    print("| members | workers | samples/s (wall) | per worker (wall) | workers' CPU ms / sample | samples/s per "
          "worker CPU second |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, urls in (("mp4 + FLAC (today)", data.read_shard_list(plain)), ("pre-sampled", fast_urls["base"])):
        for workers in (1, 2):
            rate, _, cpu_ms = max(loader_run(urls, tokenizer, spec, workers, batches=4) for _ in range(2))
            print(f"| {name} | {workers} | {rate:.1f} | {rate / workers:.1f} | {cpu_ms:.1f} | {1000 / cpu_ms:.1f} |")


def step_bench(base_batch: int, gpu_batch: int) -> None:
    """CPU step times of both presets; base samples/s and memory on a GPU when there is one."""
    cpu = torch.device("cpu")
    wall, cpu_s, params = step_time("tiny", 32, 3, cpu)
    print(f"tiny step, batch 32, CPU: {wall:.3f} s wall, {cpu_s:.3f} CPU s ({params / 1e6:.2f}M parameters)")
    base_wall, base_cpu, base_params = step_time("base", base_batch, 1, cpu)
    print(f"base step, batch {base_batch}, CPU: {base_wall:.2f} s wall, {base_cpu:.2f} CPU s "
          f"({base_params / 1e6:.1f}M parameters); CPU s per sample x{(base_cpu / base_batch) / (cpu_s / 32):.0f} "
          "the tiny preset's")
    if not torch.cuda.is_available():
        print("no GPU: skipped the GPU benchmark")
        return
    gpu = torch.device("cuda")
    torch.cuda.reset_peak_memory_stats()
    seconds, _, _ = step_time("base", gpu_batch, 5, gpu, bf16=True)
    print(f"base step, batch {gpu_batch}, {torch.cuda.get_device_name()}, bf16: {seconds:.3f} s "
          f"({gpu_batch / seconds:.1f} samples/s), peak memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--base-batch", type=int, default=2)
    parser.add_argument("--gpu-batch", type=int, default=32)
    parser.add_argument("--peak-tflops", type=float, default=989.0,
                        help="The accelerator's peak (default: H200 bf16 dense, 989 TFLOPS).")
    parser.add_argument("--gap-only", action="store_true", help="Only the gap table (issue 16).")
    args = parser.parse_args()
    threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, {threads} CPU threads (data loading measured with 1, as in a worker)")
    with tempfile.TemporaryDirectory() as tmp:
        torch.set_num_threads(1)
        tokenizer = data_bench(tmp, args.clips, loaders=not args.gap_only)
        gap_bench(tmp, tokenizer, args.peak_tflops)
    torch.set_num_threads(threads)
    if not args.gap_only:
        step_bench(args.base_batch, args.gpu_batch)


if __name__ == "__main__":
    main()
