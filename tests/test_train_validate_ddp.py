"""``train --validate`` on two gloo processes (as torchrun runs it): the ranks other than 0 leave
as soon as training is done, so no rank waits on a collective while rank 0 evaluates (which
takes as long as the evaluation split needs, beyond any process-group timeout on a big one)."""

import json
import os
import socket
import time

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import torch.multiprocessing as mp  # noqa: E402

from valor_data.synth.shards import SynthShards, make_synthetic_shards  # noqa: E402
from valor_data.train import api  # noqa: E402
from valor_data.train.config import TrainConfig  # noqa: E402

SHAPES = {"max_text_len": 16, "text_hidden": 32, "text_layers": 1, "text_heads": 2, "text_ffn": 64,
          "vision_hidden": 32, "vision_layers": 1, "vision_heads": 2, "vision_ffn": 64, "image_size": 32,
          "patch_size": 16, "frames": 2, "audio_hidden": 32, "audio_layers": 1, "audio_heads": 2,
          "audio_ffn": 64, "embed_dim": 16}


def _rank(rank: int, world: int, port: int, root: str) -> None:
    os.environ.update({"WORLD_SIZE": str(world), "RANK": str(rank), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    cfg = TrainConfig(model=SHAPES, steps=2, batch_size=2, workers=0, log_every=1, warmup_steps=1, device="cpu",
                      caption_samples=24, beam_size=3, dist_timeout_s=120)
    report = api.validate(root, cfg)
    with open(os.path.join(root, f"rank{rank}.json"), "w") as fh:
        json.dump({"returned": time.time(), "report": bool(report)}, fh)


def test_ranks_leave_before_rank_0_has_evaluated(tmp_path):
    make_synthetic_shards(tmp_path, SynthShards(splits=(("valor32k-train", 8), ("valor32k-test", 24)), per_shard=4,
                                                seconds=2.0, seed=2))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_rank, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    first, second = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2))
    report = json.loads((tmp_path / "validation.json").read_text())
    assert first["report"] and not second["report"]                   # rank 0 alone judges
    assert report["metrics"]["n"] == 24 and set(report["controls"]) >= {"captions", "audio", "video"}
    # rank 1 was gone before rank 0 was half-way through evaluating: it waited on nothing meanwhile
    assert report["eval_seconds"] > 0 and second["returned"] < first["returned"] - report["eval_seconds"] / 2, (
        first, second, report["eval_seconds"])
