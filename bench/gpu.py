"""GPU benchmark of the reference trainer: the compute ceiling against the real loader.

Random init, bf16 autocast, AdamW. Two runs of the same training step:

(a) synthetic: random inputs already on the device (the compute ceiling);
(b) loader: batches from the trainer's own pipeline (``data.ShardStream`` in a DataLoader with
    ``workers.default_workers`` workers, pinned memory, prefetch 4) over synthetic shards the
    script writes into a temp dir, with build-shards' pre-sampled members (``bench/presampled.py``).

Reports samples/s and model FLOP utilisation (training FLOPs per sample counted with torch's
FlopCounterMode, forward + backward at batch 1) for each, their ratio, and the share of (b)'s
time spent waiting for data; prints one table and writes JSON (``--out``). One GPU:
``python bench/gpu.py --preset base``; several: ``torchrun --nproc_per_node N bench/gpu.py``
(DDP, each rank reads its share; samples/s are totals). ``--dry-run``: tiny shapes, a few
steps, on the CPU (the test suite runs it), so the script is known to work before a GPU is lent.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
from presampled import add_presampled
from torch.utils.flop_counter import FlopCounterMode

from valor_data.synth.shards import SynthShards, make_synthetic_shards
from valor_data.train import data, text, workers
from valor_data.train.model import VALOR, model_config

DRY = {"batch": 2, "steps": 2, "warmup": 1, "clips": 4}
FULL = {"batch": 32, "steps": 20, "warmup": 3, "clips": 64}


def _setup() -> tuple[int, int, torch.device]:
    """(rank, world, device): torchrun's process group when launched by it."""
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world > 1:
        dist.init_process_group("nccl" if cuda else "gloo")
    return rank, world, device


def _model(preset: str, device: torch.device, world: int):
    """(model, its training FLOPs per sample, the model as trained: DDP-wrapped under torchrun)."""
    torch.manual_seed(0)
    model = VALOR(model_config(preset, {"vocab_size": 30522 if preset == "base" else 64})).to(device)
    flops = flops_per_sample(model, device)             # before DDP: no gradient sync for this pass
    wrapped = model
    if world > 1:
        wrapped = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=not model.cfg.fine_grained)
    return model, flops, wrapped


def synthetic_inputs(cfg, size: int, device: torch.device) -> dict[str, torch.Tensor]:
    ids = torch.randint(5, cfg.vocab_size, (size, cfg.max_text_len), device=device)
    ids[:, 0] = cfg.cls_id
    return {"frames": torch.randn(size, cfg.frames, 3, cfg.image_size, cfg.image_size, device=device),
            "fbank": torch.randn(size, cfg.audio_slices, cfg.slice_frames, cfg.mel_bins, device=device),
            "input_ids": ids, "attention_mask": torch.ones_like(ids)}


def flops_per_sample(model, device: torch.device) -> float:
    """Training FLOPs of one sample (forward + backward, batch 1)."""
    with FlopCounterMode(display=False) as counter:
        model(**synthetic_inputs(model.cfg, 1, device))["loss"].backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_steps(wrapped, optimizer, batches, device: torch.device, steps: int, warmup: int) -> dict:
    """``warmup`` untimed then ``steps`` timed optimizer steps; the wall seconds and the part spent
    waiting for the next batch."""
    wait = 0.0
    for step in range(warmup + steps):
        if step == warmup:
            _sync(device)
            started, wait = time.perf_counter(), 0.0
        before = time.perf_counter()
        inputs = next(batches)
        wait += time.perf_counter() - before
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = wrapped(**inputs)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    _sync(device)
    return {"seconds": time.perf_counter() - started, "wait_s": wait}


def make_shards(root: Path, cfg, clips: int, dry: bool) -> list[str]:
    """Synthetic shards (10 s, 320x240, 25 fps, a keyframe a second, as fetch writes them; tiny
    in a dry run) with the pre-sampled members for ``cfg``'s shapes."""
    shape = (dict(seconds=2.0, width=96, height=72, fps=8.0) if dry
             else dict(seconds=10.0, width=320, height=240, fps=25.0, keyframe_s=1.0))
    made = make_synthetic_shards(root, SynthShards(splits=(("gpu", clips),), per_shard=8, **shape))
    spec = data.SampleSpec.of(cfg)
    listing, _ = add_presampled(made["gpu"], "gpu-fast", 3, spec.frames, spec.image_size, spec.audio_rate)
    return data.read_shard_list(listing)


def _shared_root(rank: int, world: int) -> Path:
    """A temp dir made by rank 0, its path passed to every rank."""
    holder = [tempfile.mkdtemp(prefix="valor-gpu-bench-") if rank == 0 else None]
    if world > 1:
        dist.broadcast_object_list(holder, src=0)
    return Path(holder[0])


def loader_batches(urls, cfg, batch: int, rank: int, world: int, device: torch.device, n_workers: int):
    """The trainer's loader over ``urls``, batches moved to ``device`` as the loop does."""
    targets = data.read_targets(urls)
    tokenizer = text.make_tokenizer(text.build_vocab(c for t in targets.values() for c in t["captions"]))
    stream = data.ShardStream(urls, data.SampleSpec.of(cfg), tokenizer, batch, train=True, rank=rank, world=world,
                              shuffle_buffer=64)
    loader = data.make_loader(stream, n_workers, workers.pin_memory(None, device.type), workers.PREFETCH)
    return (data.to_device(b, device) for b in loader)


def measure(args, rank: int, world: int, device: torch.device) -> dict:
    sizes = DRY if args.dry_run else FULL
    batch, steps, warmup = args.batch or sizes["batch"], args.steps or sizes["steps"], sizes["warmup"]
    model, flops, wrapped = _model(args.preset, device, world)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    inputs = synthetic_inputs(model.cfg, batch, device)
    synthetic = run_steps(wrapped, optimizer, iter(lambda: inputs, None), device, steps, warmup)
    root = _shared_root(rank, world)
    try:
        if rank == 0:
            urls = make_shards(root, model.cfg, args.clips or sizes["clips"], args.dry_run)
        if world > 1:
            dist.barrier()
        urls = data.read_shard_list(root / "shards" / "gpu-fast.shards.json")
        n_workers = workers.default_workers() if args.workers is None else args.workers
        with data.cpu_threads_beside(n_workers, device):
            fed = run_steps(wrapped, optimizer, loader_batches(urls, model.cfg, batch, rank, world, device, n_workers),
                            device, steps, warmup)
    finally:
        if world > 1:
            dist.barrier()
        if rank == 0:
            shutil.rmtree(root, ignore_errors=True)
    peak = args.peak_tflops * 1e12 * world
    out = {"preset": args.preset, "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
           "world": world, "batch_per_rank": batch, "steps": steps, "dry_run": args.dry_run,
           "flops_per_sample": flops, "peak_tflops_per_device": args.peak_tflops, "loader_workers": n_workers}
    for name, run in (("synthetic", synthetic), ("loader", fed)):
        rate = batch * world * steps / run["seconds"]
        out[name] = {"samples_per_s": rate, "mfu": rate * flops / peak, "step_s": run["seconds"] / steps,
                     "data_wait_share": run["wait_s"] / run["seconds"]}
    out["loader_over_synthetic"] = out["loader"]["samples_per_s"] / out["synthetic"]["samples_per_s"]
    if device.type == "cuda":
        out["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2 ** 30
    return out


def table(result: dict) -> str:
    head = (f"{result['preset']} preset, {result['world']} x {result['device']}, batch {result['batch_per_rank']} "
            f"per rank, bf16, {result['flops_per_sample'] / 1e9:,.1f} GFLOP per training sample, "
            f"{result['loader_workers']} loader workers per rank")
    rows = ["| inputs | samples/s | MFU | step s | data wait |", "|---|---:|---:|---:|---:|"]
    for name, label in (("synthetic", "(a) synthetic, on the device"), ("loader", "(b) the loader, from shards")):
        r = result[name]
        rows.append(f"| {label} | {r['samples_per_s']:,.1f} | {r['mfu']:.1%} | {r['step_s']:.3f} | "
                    f"{r['data_wait_share']:.0%} |")
    return "\n".join([head, *rows, f"loader / synthetic: {result['loader_over_synthetic']:.2f}"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="base")
    parser.add_argument("--batch", type=int, help="Per rank (default 32; dry run 2).")
    parser.add_argument("--steps", type=int, help="Timed steps per run (default 20; dry run 2).")
    parser.add_argument("--clips", type=int, help="Synthetic clips in the shards (default 64; dry run 4).")
    parser.add_argument("--workers", type=int, help="Loader workers per rank (default: from the machine).")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="Per device (H200 bf16 dense: 989).")
    parser.add_argument("--out", type=Path, help="Write the result as JSON here.")
    parser.add_argument("--dry-run", action="store_true", help="Tiny shapes, a few steps, CPU.")
    args = parser.parse_args()
    if args.dry_run:
        args.preset = "tiny"
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        torch.set_num_threads(1)        # a shared CPU: spinning OpenMP threads stall the step
    rank, world, device = _setup()
    if device.type != "cuda" and not args.dry_run:
        parser.error("no CUDA device: run with --dry-run on a CPU")
    result = measure(args, rank, world, device)
    if rank == 0:
        print(table(result))
        if args.out:
            args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    if world > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
