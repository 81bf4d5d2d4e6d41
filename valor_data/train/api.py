"""What ``valor-data train`` does, as functions: train then evaluate, evaluate a checkpoint, validate.

Under ``torchrun`` every rank trains; rank 0 evaluates and writes results; the others return {}
as soon as training is done, waiting on no collective while rank 0 evaluates (so no rank waits
longer than the process group's timeout, ``dist_timeout_s``).
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

from valor_data.errors import ValorError
from valor_data.train import data, loop
from valor_data.train.config import TrainConfig
from valor_data.train.evaluate import evaluate_split, write_result
from valor_data.train.validate import validate as _validate

__all__ = ["TrainConfig", "train_and_evaluate", "evaluate_checkpoint", "validate"]

log = logging.getLogger(__name__)


def _one_process_group(fn):
    """Leave the torch.distributed process group (if any) when ``fn`` is done."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        finally:
            loop.teardown_process()
    return wrapper


@_one_process_group
def train_and_evaluate(root: str | os.PathLike, cfg: TrainConfig) -> dict:
    """Train into ``root/train`` (resuming), then evaluate on the eval split -> ``root/train/eval.json``."""
    run = loop.train(root, cfg)
    proc = loop.setup_process(cfg.device)
    if not proc.main:
        return {}
    trained = {"step": run.step, "checkpoint": str(run.run_dir / "ckpt.pt")}
    try:
        data.resolve_shards(root, cfg.eval_split, cfg.eval_shards)
    except ValorError as exc:
        log.warning("not evaluated: %s", exc)
        return trained
    result = {**evaluate_split(root, cfg, run.model, run.tokenizer, proc.device), **trained}
    write_result(result, run.run_dir / "eval.json")
    return result


@_one_process_group
def evaluate_checkpoint(root: str | os.PathLike, cfg: TrainConfig, checkpoint: str | None = None) -> dict:
    """Evaluate a saved checkpoint (default ``root/train/ckpt.pt``) -> ``<its folder>/eval-<split>.json``."""
    path = Path(checkpoint) if checkpoint else Path(root) / "train" / "ckpt.pt"
    proc = loop.setup_process(cfg.device, cfg.dist_timeout_s)
    if not proc.main:
        return {}
    model, tokenizer, state = loop.model_from_checkpoint(path)
    result = {**evaluate_split(root, cfg, model, tokenizer, proc.device), "step": state["step"],
              "checkpoint": str(path)}
    write_result(result, path.parent / f"eval-{cfg.eval_split}.json")
    return result


@_one_process_group
def validate(root: str | os.PathLike, cfg: TrainConfig) -> dict:
    """See ``valor_data.train.validate``."""
    return _validate(root, cfg)
