"""MGA over two gloo processes equals MGA on one process over the same global batch."""

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
           "token_weight.text.weight", "vision.embeddings.patch_embedding.weight",
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
