"""``valor-data train --validate``: is the data sound enough to learn from, in every modality?

Train the (tiny) model for a fixed budget on the train split, evaluate it on the test split with
one query per clip (``evaluate.per_clip``) and judge each group on its own: text-to-video,
text-to-audio, text-to-audio+video, and video-to-audio (a clip's audio found from its frames).
A dataset passes only if the loss fell and, for every group,

- retrieval is far beyond chance: R@10 hits reach the count that ranking at random reaches less
  often than ``alpha`` (exact binomial tail, ``alpha`` = ``false_rate`` over the number of
  statistical checks, so all of them together stay below ``false_rate``);
- few clips look misaligned: a clip whose caption, frames or audio belong to another clip ranks
  its answer below the middle half the time, a sound one (by assumption) at most
  ``sound_lower_half`` of the time; the count allowed is the most a sound dataset exceeds less
  often than ``alpha``, and the report gives how often a dataset with ``broken_share`` of its
  clips misaligned passes it;
- three controls, each deranging one thing across the evaluation clips (no clip keeps its own)
  at evaluation time, drop exactly the groups they break to chance (captions: the three text
  groups, audio: text-to-audio and video-to-audio, video: text-to-video and video-to-audio) and
  leave the others as they were: the metrics cannot be met without each clip's own caption,
  audio and frames.

When the clips carry categories (Youku-mPLUG classification) the head's top-1 must be beyond
chance too, and stay at chance when the categories are deranged. Every failure names the
modality and the likely pipeline cause. The report gives both error rates: how often a sound
dataset (R@10 ``sound_ratio`` x chance, ``sound_lower_half``) fails and how often a broken one
(at chance, or ``broken_share`` misaligned) passes. Results go to ``W/validation.json``; the
run to ``W/train/validate`` (trained afresh on every call, so the verdict is about the shards
as they are). Under torchrun every rank trains; rank 0 alone evaluates and judges, and the
other ranks leave without waiting on any collective.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from pathlib import Path

from valor_data.train import loop, metrics
from valor_data.train.config import TrainConfig
from valor_data.train.evaluate import evaluate_split
from valor_data.workdir import atomic_path

log = logging.getLogger(__name__)

NAMES = {"tv": "text-to-video", "ta": "text-to-audio", "tav": "text-to-audio+video", "va": "video-to-audio"}
CAUSES = {
    "tv": "the frames do not belong to their captions: check fetch's video mapping (ids, start times) "
          "or the shard members",
    "ta": "the audio does not belong to its caption: check fetch's audio mapping or the shard members",
    "tav": "the captions do not describe their clips: check the caption join (manifest, VALOR ids) "
           "or the shard members",
    "va": "audio does not belong to its video: check fetch's audio mapping or the shard members",
}
BREAKS = {"captions": ("tv", "ta", "tav"), "audio": ("ta", "va"), "video": ("tv", "va")}
KEEPS = {"captions": ("va",), "audio": ("tv",), "video": ("ta",)}
SHARE_GROUPS = ("tv", "ta", "va")           # the misaligned-share check (t2av hides one bad modality)
K = 10              # R@10: clips alike in one modality (six sounds among 160 clips) cap R@1 and R@5 low


@dataclasses.dataclass
class Check:
    """One line of the verdict; ``sound_fails`` / ``broken_passes``: its two error rates (None:
    not statistical)."""

    ok: bool
    line: str
    sound_fails: float | None = None
    broken_passes: float | None = None

    def text(self) -> str:
        rates = [f"{name} {rate:.1e}" for name, rate in (("sound fails", self.sound_fails),
                                                           ("broken passes", self.broken_passes)) if rate is not None]
        rates = f" [{', '.join(rates)}]" if rates else ""
        return ("pass: " if self.ok else "FAIL: ") + self.line + rates


def loss_summary(history: list[dict]) -> dict:
    """First and last logged loss, the relative drop, and the curve (step, loss)."""
    if not history:
        return {"first": None, "last": None, "drop": 0.0, "curve": []}
    first, last = history[0]["loss"], history[-1]["loss"]
    return {"first": first, "last": last, "drop": (first - last) / first if first else 0.0,
            "curve": [[h["step"], h["loss"]] for h in history],
            "last_groups": {k: v for k, v in history[-1].items() if k.startswith(("mga_", "mgc_"))}}


def statistical_checks(result: dict) -> int:
    """How many checks share ``false_rate``: beyond chance and misaligned share per group, one per
    group a control breaks, and two for classification."""
    per_group = len(NAMES) + len(SHARE_GROUPS) + sum(len(g) for g in BREAKS.values())
    return per_group + (2 if result.get("classification") else 0)


def beyond_chance(scores: dict, group: str, alpha: float, cfg: TrainConfig) -> Check:
    """R@10 hits of one group at least the count chance reaches with probability < ``alpha``."""
    n = scores["n"]
    chance = min(1.0, K / scores["candidates"])
    need = metrics.fewest_beyond_chance(n, chance, alpha)
    hits = scores["hits"][f"r{K}"]
    sound = min(1.0, cfg.sound_ratio * chance)
    return Check(hits >= need, f"{NAMES[group]} R@{K} {hits}/{n} = {hits / n:.3f}, {hits / n / chance:.1f}x chance "
                 f"{chance:.3f} (needs {need}: {need / n / chance:.1f}x)"
                 + ("" if hits >= need else f": {CAUSES[group]}"),
                 metrics.binomial_at_most(need - 1, n, sound), metrics.binomial_at_least(need, n, chance))


def misaligned_share(scores: dict, group: str, alpha: float, cfg: TrainConfig) -> Check:
    """Queries whose answer ranks below the middle: at most what a sound dataset exceeds < ``alpha``."""
    n, low = scores["n"], scores["lower_half"]
    half = (scores["candidates"] - scores["candidates"] // 2) / scores["candidates"]
    allowed = metrics.fewest_beyond_chance(n, cfg.sound_lower_half, alpha) - 1
    broken = cfg.broken_share * half + (1 - cfg.broken_share) * cfg.sound_lower_half
    share = min(1.0, low / n / half)                     # a misaligned clip lands there ``half`` of the time
    return Check(low <= allowed, f"{NAMES[group]}: {low}/{n} clips rank their own match below the middle "
                 f"(allowed {allowed}): about {share:.0%} of the clips misaligned"
                 + ("" if low <= allowed else f": {CAUSES[group]}"),
                 metrics.binomial_at_least(allowed + 1, n, cfg.sound_lower_half),
                 metrics.binomial_at_most(allowed, n, broken))


def control_checks(result: dict, alpha: float) -> list[Check]:
    """Each control at chance on the groups it breaks, unchanged on the ones it keeps."""
    checks = []
    for control, broken in BREAKS.items():
        scores = result["controls"][control]
        for group in broken:
            s = scores[group]
            chance = min(1.0, K / s["candidates"])
            need = metrics.fewest_beyond_chance(s["n"], chance, alpha)
            ok = s["hits"][f"r{K}"] < need
            checks.append(Check(ok, f"{control} deranged: {NAMES[group]} R@{K} {s['hits'][f'r{K}']}/{s['n']} "
                                f"(at chance below {need})" + ("" if ok else
                                f": it does not need each clip's own {control} (duplicate clips in the "
                                "evaluation split, or a leak between clips)"),
                                metrics.binomial_at_least(need, s["n"], chance), None))
        for group in KEEPS[control]:
            same = scores[group]["hits"] == result["per_clip"][group]["hits"]
            checks.append(Check(same, f"{control} deranged: {NAMES[group]} unchanged"
                                + ("" if same else " (it should not depend on the " + control + ")")))
    return checks


def _class_checks(scores: dict | None, control: dict | None, alpha: float) -> list[Check]:
    """Classification top-1 beyond chance and the deranged categories' not (nothing when no categories)."""
    if scores is None:
        return []
    n, chance = scores["n"], scores["chance"]["top1"]
    need = metrics.fewest_beyond_chance(n, chance, alpha)
    hits, control_hits = round(scores["top1"] * n), round((control or {"top1": 1.0})["top1"] * n)
    return [Check(hits >= need, f"classification top-1 {hits}/{n}, {scores['top1'] / chance:.1f}x chance "
                  f"{chance:.3f} ({scores['classes']} classes; needs {need})"
                  + ("" if hits >= need else ": the categories do not belong to their clips: check the "
                     "category join or the shard members"), None, metrics.binomial_at_least(need, n, chance)),
            Check(control_hits < need, f"categories deranged: top-1 {control_hits}/{n} (at chance below {need})",
                  metrics.binomial_at_least(need, n, chance), None)]


def verdict(result: dict, losses: dict, cfg: TrainConfig) -> tuple[bool, list[str], dict]:
    """(passed, one line per check, the error rates of the whole verdict)."""
    alpha = cfg.false_rate / statistical_checks(result)
    checks = [Check(losses["drop"] >= cfg.min_loss_drop, f"loss fell by {losses['drop']:.1%} (from "
                    f"{losses['first']} to {losses['last']}; needs {cfg.min_loss_drop:.0%})")]
    for group in NAMES:
        checks.append(beyond_chance(result["per_clip"][group], group, alpha, cfg))
    for group in SHARE_GROUPS:
        checks.append(misaligned_share(result["per_clip"][group], group, alpha, cfg))
    checks += control_checks(result, alpha)
    checks += _class_checks(result.get("classification"), result["controls"]["captions"].get("classification"),
                            alpha)
    stats = [c for c in checks if c.sound_fails is not None or c.broken_passes is not None]
    rates = {"sound_fails": sum(c.sound_fails or 0.0 for c in stats),
             "broken_passes": max(c.broken_passes or 0.0 for c in stats), "alpha_per_check": alpha,
             "checks": len(stats)}
    checks.insert(0, Check(max(rates["sound_fails"], rates["broken_passes"]) < cfg.false_rate,
                           f"{result['n']} evaluation clips: a sound dataset fails with probability "
                           f"{rates['sound_fails']:.1e}, a broken one passes with probability at most "
                           f"{rates['broken_passes']:.1e} (both must be < {cfg.false_rate:g}; more clips "
                           "lower them)"))
    return all(c.ok for c in checks), [c.text() for c in checks], rates


def validate(root: str | os.PathLike, cfg: TrainConfig) -> dict:
    """Train, evaluate with the controls, write ``root/validation.json``; return its content
    (``{}`` on torchrun ranks other than 0, which return as soon as training is done)."""
    root, started = Path(root), time.time()
    proc = loop.setup_process(cfg.device, cfg.dist_timeout_s)
    cfg = dataclasses.replace(cfg, resume=False)      # judge the shards as they are now: train afresh
    run = loop.train(root, cfg, root / "train" / "validate")
    if not proc.main:
        return {}
    evaluating = time.time()
    result = evaluate_split(root, cfg, run.model, run.tokenizer, proc.device, with_controls=True)
    return judge(root, result, loss_summary(run.history), cfg,
                 {"run": str(run.run_dir), "model": dataclasses.asdict(run.model_cfg),
                  "eval_seconds": round(time.time() - evaluating, 1), "seconds": round(time.time() - started, 1)})


def judge(root: str | os.PathLike, result: dict, losses: dict, cfg: TrainConfig, extra: dict | None = None) -> dict:
    """The verdict on an evaluation ``result`` (with controls) -> ``root/validation.json``."""
    passed, reasons, rates = verdict(result, losses, cfg)
    report = {"passed": passed, "reasons": reasons, "rates": rates, "train_split": cfg.train_split,
              "eval_split": result.get("split", cfg.eval_split), "chance": result["chance"],
              "metrics": {k: v for k, v in result.items() if k != "controls"}, "controls": result["controls"],
              "loss": losses, "config": dataclasses.asdict(cfg), **(extra or {})}
    if result.get("note"):
        reasons = [f"note: {result['note']}", *reasons]
        report["reasons"] = reasons
    with atomic_path(Path(root) / "validation.json") as tmp:
        tmp.write_text(json.dumps(report, indent=1, ensure_ascii=False), encoding="utf-8")
    for line in reasons:
        log.info("%s", line)
    return report
