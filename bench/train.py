"""Benchmark the reference trainer: data loading, CPU step times, and (when lent) a GPU.

- data loader: samples/s over synthetic shards of 10 s 320x240 25 fps clips (one keyframe per
  clip as rendered, and one per second as fetch writes them), with 0, 1 and 2 workers (decode N
  frames with PyAV + resize, FLAC + filterbank, tokenize), per worker, and the per-sample cost of
  each part for the tiny and base sample shapes;
- CPU step time (forward + backward + AdamW) of the tiny and base presets (random init);
- GPU (CUDA only): base-preset samples/s and peak memory under bf16 autocast.

Ratios are against baselines measured in the same run (the main-process loader, the tiny step).
Usage: python bench/train.py [--clips 16] [--base-batch 2] [--gpu-batch 32]
"""

from __future__ import annotations

import argparse
import io
import random
import tarfile
import tempfile
import time

import torch

from valor_data.train import audio, data, text, video
from valor_data.train.model import VALOR, count_parameters, model_config
from valor_data.train.synthetic import SynthShards, make_synthetic_shards


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
    stream = iter(data.make_loader(data.ShardStream(urls, spec, tokenizer, 8, train=True), workers))
    next(stream), next(stream)
    wall, cpu = time.perf_counter(), time.process_time()
    count = sum(len(next(stream)["key"]) for _ in range(batches))
    return count / (time.perf_counter() - wall), 1000 * (time.process_time() - cpu) / count


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
                video.resize_crop(frame, spec.image_size)

    return 1000 * _timed(frames, 5)[1]


def _batch(cfg, size: int, device: torch.device) -> dict[str, torch.Tensor]:
    ids = torch.randint(5, cfg.vocab_size, (size, cfg.max_text_len))
    ids[:, 0] = cfg.cls_id
    return {"frames": torch.randn(size, cfg.frames, 3, cfg.image_size, cfg.image_size, device=device),
            "fbank": torch.randn(size, cfg.audio_slices, 512, 64, device=device),
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


def data_bench(root: str, clips: int) -> None:
    """Per-sample costs and loader throughput on clips with one keyframe, and with one per second."""
    started = time.perf_counter()
    make_synthetic_shards(root, SynthShards(splits=(("bench", clips),), seconds=10.0, width=320, height=240,
                                            fps=25.0, per_shard=8))
    make_synthetic_shards(root, SynthShards(splits=(("bench-k1", 8),), seconds=10.0, width=320, height=240,
                                            fps=25.0, per_shard=8, keyframe_s=1.0, seed=1))
    print(f"made {clips} + 8 clips (10 s, 320x240, 25 fps) in {time.perf_counter() - started:.1f} s")
    targets = data.read_targets(data.resolve_shards(root, "bench"))
    tokenizer = text.make_tokenizer(text.build_vocab(c for t in targets.values() for c in t["captions"]))
    for split, gop in (("bench", "1 keyframe per 10 s"), ("bench-k1", "1 keyframe per s")):
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
    args = parser.parse_args()
    threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, {threads} CPU threads (data loading measured with 1, as in a worker)")
    with tempfile.TemporaryDirectory() as tmp:
        torch.set_num_threads(1)
        data_bench(tmp, args.clips)
    torch.set_num_threads(threads)
    step_bench(args.base_batch, args.gpu_batch)


if __name__ == "__main__":
    main()
