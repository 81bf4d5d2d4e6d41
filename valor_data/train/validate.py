"""``valor-data train --validate``: is the data sound enough to learn from?

Train the (tiny) model for a fixed budget on the train split, evaluate on the test split, and
pass only if the loss fell and text-to-audio+video R@5 is several times chance; when the clips
carry categories (Youku-mPLUG classification) the classification head's top-1 must be several
times chance too. A control run trains the same way on the same clips with captions and
categories deranged together (every clip gets another clip's); it must stay near chance on both,
which shows the metrics cannot be met without the captions, categories, frames and audio of
each clip belonging together. A dataset misaligned anywhere in the pipeline therefore fails.
Results go to ``W/validation.json``; runs to ``W/train/validate*`` (trained afresh on every
call, so the verdict is about the shards as they are).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from pathlib import Path

from valor_data.train import loop
from valor_data.train.config import TrainConfig
from valor_data.train.evaluate import evaluate_split
from valor_data.workdir import atomic_path

log = logging.getLogger(__name__)


def loss_summary(history: list[dict]) -> dict:
    """First and last logged loss, the relative drop, and the curve (step, loss)."""
    if not history:
        return {"first": None, "last": None, "drop": 0.0, "curve": []}
    first, last = history[0]["loss"], history[-1]["loss"]
    return {"first": first, "last": last, "drop": (first - last) / first if first else 0.0,
            "curve": [[h["step"], h["loss"]] for h in history],
            "last_groups": {k: v for k, v in history[-1].items() if k.startswith(("mga_", "mgc_"))}}


def verdict(result: dict, control: dict, losses: dict, cfg: TrainConfig) -> tuple[bool, list[str]]:
    """(passed, one line per check)."""
    chance = result["chance"]["r5"]
    r5, control_r5 = result["retrieval"]["tav"]["r5"], control["retrieval"]["tav"]["r5"]
    n = result["n"]
    checks = [
        (n >= cfg.min_eval_clips, f"{n} evaluation clips (needs {cfg.min_eval_clips} for R@5 to be far from chance)"),
        (losses["drop"] >= cfg.min_loss_drop,
         f"loss fell by {losses['drop']:.1%} (from {losses['first']} to {losses['last']}; needs {cfg.min_loss_drop:.0%})"),
        (r5 >= cfg.min_r5_ratio * chance,
         f"text-to-audio+video R@5 {r5:.3f} is {r5 / chance:.1f}x chance {chance:.3f} (needs {cfg.min_r5_ratio}x)"),
        (control_r5 <= cfg.control_max_ratio * chance,
         f"shuffled-caption control R@5 {control_r5:.3f} is {control_r5 / chance:.1f}x chance "
         f"(must stay <= {cfg.control_max_ratio}x)"),
    ] + _class_checks(result.get("classification"), control.get("classification"), cfg)
    return all(ok for ok, _ in checks), [("pass: " if ok else "FAIL: ") + line for ok, line in checks]


def _class_checks(scores: dict | None, control: dict | None, cfg: TrainConfig) -> list[tuple[bool, str]]:
    """Classification top-1 well above chance and the control's not (nothing when no categories)."""
    if scores is None:
        return []
    chance = scores["chance"]["top1"]
    checks = [(scores["top1"] >= cfg.min_top1_ratio * chance,
               f"classification top-1 {scores['top1']:.3f} is {scores['top1'] / chance:.1f}x chance {chance:.3f} "
               f"({scores['classes']} classes, {scores['n']} clips; needs {cfg.min_top1_ratio}x)")]
    top1 = control["top1"] if control else 1.0
    checks.append((top1 <= cfg.control_max_ratio * chance,
                   f"shuffled-caption control top-1 {top1:.3f} is {top1 / chance:.1f}x chance "
                   f"(must stay <= {cfg.control_max_ratio}x)"))
    return checks


def validate(root: str | os.PathLike, cfg: TrainConfig) -> dict:
    """Train, evaluate, run the control, write ``root/validation.json``; return its content."""
    root, started = Path(root), time.time()
    proc = loop.setup_process(cfg.device)
    cfg = dataclasses.replace(cfg, resume=False)      # judge the shards as they are now: train afresh
    runs = {}
    for name, run_cfg in (("aligned", cfg), ("control", dataclasses.replace(cfg, shuffle_captions=True))):
        run = loop.train(root, run_cfg, root / "train" / ("validate" if name == "aligned" else "validate-control"))
        runs[name] = (run, evaluate_split(root, run_cfg, run.model, run.tokenizer, proc.device) if proc.main else None)
    if not proc.main:
        return {}
    (run, result), (control_run, control) = runs["aligned"], runs["control"]
    losses = loss_summary(run.history)
    passed, reasons = verdict(result, control, losses, cfg)
    report = {"passed": passed, "reasons": reasons, "train_split": cfg.train_split, "eval_split": cfg.eval_split,
              "chance": result["chance"], "metrics": result, "control": control,
              "loss": losses, "control_loss": loss_summary(control_run.history),
              "runs": {"aligned": str(run.run_dir), "control": str(control_run.run_dir)},
              "config": dataclasses.asdict(cfg), "model": dataclasses.asdict(run.model_cfg),
              "seconds": round(time.time() - started, 1)}
    with atomic_path(root / "validation.json") as tmp:
        tmp.write_text(json.dumps(report, indent=1, ensure_ascii=False), encoding="utf-8")
    for line in reasons:
        log.info("%s", line)
    return report
