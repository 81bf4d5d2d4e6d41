"""MGA over two gloo processes equals MGA on one process over the same global batch."""

import faulthandler

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

from valor_data.train.model import GROUPS, VALOR, model_config  # noqa: E402

SMALL = {"vocab_size": 30, "max_text_len": 8, "text_hidden": 32, "text_layers": 1, "text_heads": 2,
         "text_ffn": 64, "vision_hidden": 32, "vision_layers": 1, "vision_heads": 2, "vision_ffn": 64,
         "image_size": 32, "patch_size": 16, "frames": 2, "audio_hidden": 32, "audio_layers": 1,
         "audio_heads": 2, "audio_ffn": 64, "embed_dim": 16}
CHECKED = ["logit_scale", "text_proj.weight", "video_proj.weight", "audio_proj.weight",
           "token_weight.text.2.weight", "vision.embeddings.patch_embedding.weight",
           "audio.embeddings.patch_embeddings.projection.weight", "text.bert.embeddings.word_embeddings.weight"]


def _global_batch(cfg, size=6):
    gen = torch.Generator().manual_seed(7)
    frames = torch.randn(size, cfg.frames, 3, cfg.image_size, cfg.image_size, generator=gen)
    fbank = torch.randn(size, cfg.audio_slices, 512, 64, generator=gen)
    ids = torch.randint(5, cfg.vocab_size, (size, cfg.max_text_len), generator=gen)
    ids[:, 0] = cfg.cls_id
    mask = torch.ones_like(ids)
    mask[::2, 5:] = 0
    return frames, fbank, ids, mask


def _mga(model, batch):
    """MGA losses per group and, after backward, the checked parameters' gradients."""
    model.zero_grad(set_to_none=True)
    losses = model(*batch)
    losses["mga"].backward()
    params = dict(model.named_parameters())
    return {g: losses[f"mga_{g}"].item() for g in GROUPS}, {n: params[n].grad.clone() for n in CHECKED}


def _rank(rank, world, store, out):
    faulthandler.enable()             # a native abort in a rank prints every thread's Python stack
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        model = VALOR(model_config("tiny", SMALL))
        batch = _global_batch(model.cfg)
        share = len(batch[0]) // world
        local = tuple(t[rank * share:(rank + 1) * share] for t in batch)
        losses, grads = _mga(model, local)
        for grad in grads.values():                       # what DDP does: average over ranks
            dist.all_reduce(grad)
            grad /= world
        torch.save({"losses": losses, "grads": grads}, f"{out}.{rank}")
        dist.barrier()                # no rank closes its gloo pairs while a peer's last collective runs
    finally:
        dist.destroy_process_group()


def test_gathered_mga_equals_single_process(tmp_path):
    mp.spawn(_rank, args=(2, str(tmp_path / "store"), str(tmp_path / "result")), nprocs=2, join=True)
    torch.manual_seed(0)
    model = VALOR(model_config("tiny", SMALL))
    losses, grads = _mga(model, _global_batch(model.cfg))
    for rank in range(2):
        result = torch.load(tmp_path / f"result.{rank}", weights_only=True)
        for group in GROUPS:
            assert result["losses"][group] == pytest.approx(losses[group], abs=1e-5), (rank, group)
        for name in CHECKED:
            torch.testing.assert_close(result["grads"][name], grads[name], atol=1e-5, rtol=1e-4)


def test_valor_data_train_under_torchrun(tmp_path):
    """``torchrun --nproc_per_node 2 valor-data train`` on CPU (gloo), as a GPU cluster runs it:
    both ranks train on their share of the shards, rank 0 logs, saves and evaluates."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from valor_data.synth.shards import SynthShards, make_synthetic_shards

    make_synthetic_shards(tmp_path, SynthShards(splits=(("valor32k-train", 8), ("valor32k-test", 4)), per_shard=2,
                                                seconds=2.0, seed=1))
    script = Path(sys.executable).parent / "valor-data"
    shapes = {**{k: v for k, v in SMALL.items() if k != "vocab_size"}, "max_text_len": 16}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
               "train", str(tmp_path), "--steps", "2", "--batch-size", "2", "--workers", "0", "--log-every", "1",
               "--warmup-steps", "1", "--caption-samples", "2", "--beam-size", "1", "--device", "cpu",
               *[arg for k, v in shapes.items() for arg in ("--model", f"{k}={v}")]]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    log = [json.loads(line) for line in (tmp_path / "train" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2]                          # one line per step: rank 0 alone writes
    result = json.loads((tmp_path / "train" / "eval.json").read_text())
    assert result["n"] == 4 and result["step"] == 2 and set(result["retrieval"]) == {"tv", "ta", "tav"}
    state = torch.load(tmp_path / "train" / "ckpt.pt", weights_only=False)
    assert state["step"] == 2
