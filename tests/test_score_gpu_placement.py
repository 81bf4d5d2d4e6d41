"""Where ``score`` runs its model: local workers pinned to GPUs, Ray GPU actors, torchrun ranks.

No GPU here: the local pool is given GPU ids, Ray is told the node has two GPUs (it sets each
GPU actor's CUDA_VISIBLE_DEVICES as on a real one), and torchrun's ranks score on the CPU over
gloo, where they must give exactly the local pool's table.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from valor_data.curate.score import ScoreConfig, run_score
from valor_data.distribute import collect, plan, run_tasks
from valor_data.errors import ConfigError
from valor_data.workdir import Workdir

from distribute_workers import where
from helpers import tar_samples, write_fetched

ROWS = [{"clip_id": f"c{i:03d}"} for i in range(12)]
SMALL = {"max_text_len": 16, "text_hidden": 32, "text_layers": 1, "text_heads": 2, "text_ffn": 64,
         "vision_hidden": 32, "vision_layers": 1, "vision_heads": 2, "vision_ffn": 64, "image_size": 32,
         "patch_size": 16, "frames": 2, "audio_hidden": 32, "audio_layers": 1, "audio_heads": 2, "audio_ffn": 64,
         "embed_dim": 16}


def _placed(tmp_path: Path, distributor: str, gpus: float, gpu_ids: tuple[str, ...] = ()) -> list[dict]:
    workdir = Workdir.create(tmp_path / "w")
    (tmp_path / "rendezvous").mkdir()
    config = {"rendezvous": str(tmp_path / "rendezvous"), "parties": 2}
    tasks = list(plan(ROWS, "demo", workdir, set(), task_size=2))
    summaries = list(run_tasks(where, tasks, config, distributor, workers=2, gpus=gpus, gpu_ids=gpu_ids))
    assert sorted(s["index"] for s in summaries) == list(range(6))
    return collect(workdir, "demo").to_pylist()


def _gpu_of_each_pid(rows: list[dict]) -> dict[int, set]:
    seen: dict[int, set] = {}
    for row in rows:
        seen.setdefault(row["pid"], set()).add(row["gpu"])
    return seen


def test_local_workers_are_pinned_round_robin_to_the_given_gpus(tmp_path):
    before = os.environ.get("CUDA_VISIBLE_DEVICES")
    seen = _gpu_of_each_pid(_placed(tmp_path, "local", 1, ("3", "5")))
    assert len(seen) == 2 and all(len(ids) == 1 for ids in seen.values())
    assert {i for ids in seen.values() for i in ids} == {"3", "5"}
    assert os.environ.get("CUDA_VISIBLE_DEVICES") == before          # the driver's own view is untouched
    with pytest.raises(ConfigError, match="no GPU is visible"):
        list(run_tasks(where, [], {}, "local", workers=1, gpus=1, gpu_ids=()))


def test_ray_gpu_actors_each_hold_one_gpu(tmp_path):
    ray = pytest.importorskip("ray")
    tests_dir = str(Path(__file__).parent)   # so Ray workers can import distribute_workers
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": tests_dir}})
    try:
        seen = _gpu_of_each_pid(_placed(tmp_path, "ray", 1))
    finally:
        ray.shutdown()
    assert len(seen) == 2 and all(len(ids) == 1 for ids in seen.values())   # two actors, each on its GPU
    assert {i for ids in seen.values() for i in ids} == {"0", "1"}


def test_torchrun_distributor_needs_torchrun(tmp_path, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(ConfigError, match="WORLD_SIZE"):
        run_score(Workdir.create(tmp_path), ScoreConfig(checkpoint="missing.pt"), "torchrun")


def _fetched(root: Path) -> Workdir:
    """A fetched work dir of six synthetic clips (media, manifest with captions, fetch.parquet)."""
    from valor_data.synth.shards import SynthShards, make_synthetic_shards

    lists = make_synthetic_shards(root / "synth", SynthShards(splits=(("heldout", 6),), per_shard=6, seconds=2.0,
                                                              workers=2))
    return write_fetched(root / "w", tar_samples(sorted(lists["heldout"].parent.glob("heldout-*.tar"))), {}, {})


def _random_checkpoint(path: Path, captions: list[str]) -> Path:
    """A tiny untrained VALOR saved as the trainer saves one (enough to compare distributors)."""
    import torch

    from valor_data.train import loop, text
    from valor_data.train.model import VALOR, model_config

    tokens = text.build_vocab(captions)
    cfg = loop.with_labels(model_config("tiny", SMALL), tokens, ())
    torch.manual_seed(0)
    torch.save({"model": VALOR(cfg).state_dict(), "model_config": dataclasses.asdict(cfg), "vocab": tokens}, path)
    return path


@pytest.mark.timeout(600)
def test_torchrun_ranks_score_exactly_as_the_local_pool(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    local = _fetched(tmp_path)
    captions = [c for cs in pq.read_table(local.manifest).column("captions").to_pylist() for c in cs]
    checkpoint = _random_checkpoint(tmp_path / "ckpt.pt", captions)
    ranked = Workdir.create(shutil.copytree(local.root, tmp_path / "ranked"))
    summary = run_score(local, ScoreConfig(checkpoint=str(checkpoint), task_size=3, device="cpu"), workers=1)
    assert summary.clips == 6 and summary.statuses == {"ok": 6}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(Path(sys.executable).parent / "valor-data"), "score", "-w", str(ranked.root), "--checkpoint",
               str(checkpoint), "--distributor", "torchrun", "--device", "cpu", "--task-size", "3"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("table: ") == 1 and "scored now 6 " in done.stdout   # rank 0 reports every rank's
    assert len(list(ranked.path("scores", "tasks").glob("task-*.parquet"))) == 2
    expected, got = pq.read_table(local.path("scores.parquet")), pq.read_table(ranked.path("scores.parquet"))
    assert got.num_rows == 6 and got.equals(expected)
