"""Evaluate a model on a benchmark split: retrieval per group both ways, captioning, classification.

- retrieval: text-to-clip (``retrieval``) and clip-to-text (``retrieval_c2t``) R@1/5/10 and
  median rank for each group (video, audio, audio+video), the first caption of every clip
  standing for it;
- captioning: beam search from the audio+video group, BLEU-4 / ROUGE-L / CIDEr against every
  reference caption (Chinese: per character, CJK ideographs only, as Youku-mPLUG scores);
- classification (when the model has a head and the split's json carries ``category_index``):
  top-1 / top-5 of the head, against what ignoring the clips scores.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path

import torch

from valor_data.train import data, metrics, text
from valor_data.train.model import GROUPS, VALOR
from valor_data.workdir import atomic_path

log = logging.getLogger(__name__)


def _autocast(device: torch.device, bf16: bool):
    if device.type == "cuda" and bf16:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def encode_clips(model: VALOR, batches: Iterable[dict], device: torch.device, bf16: bool = True,
                 limit: int = 0) -> dict:
    """Run the encoders over a split. Returns per clip (sorted by key): ``video`` [N, F, Hv],
    ``audio`` [N, K, Ha], ``text`` [N, L, D], ``text_w`` / ``text_mask`` [N, L], ``keys``,
    ``captions`` (references), ``category`` [N], ``category_name``, ``language``."""
    model.eval()
    parts: dict[str, list] = {k: [] for k in ("video", "audio", "text", "text_w", "text_mask")}
    info: dict[str, list] = {k: [] for k in ("key", "captions", "category", "category_name", "language")}
    for batch in batches:
        inputs = data.to_device(batch, device)
        with _autocast(device, bf16):
            video, audio = model.encode_video(inputs["frames"]), model.encode_audio(inputs["fbank"])
            tokens, weights = model.text_tokens(model.run_text(inputs["input_ids"], inputs["attention_mask"]))
        for name, value in zip(parts, (video, audio, tokens, weights, inputs["attention_mask"]), strict=True):
            parts[name].append(value.float().cpu() if value.is_floating_point() else value.cpu())
        for name in info:
            info[name] += list(batch[name].tolist() if torch.is_tensor(batch[name]) else batch[name])
        if limit and len(info["key"]) >= limit:
            break
    if not info["key"]:
        raise ValueError("the evaluation split yielded no decodable clips")
    order = sorted(range(len(info["key"])), key=info["key"].__getitem__)[: limit or None]
    out = {name: torch.cat(values)[order] for name, values in parts.items()}
    out.update({name: [values[i] for i in order] for name, values in info.items()})
    out["category"] = torch.tensor(out["category"])
    return out


@torch.no_grad()
def similarities(model: VALOR, clips: dict, group: str, device: torch.device, chunk: int = 64) -> torch.Tensor:
    """Caption-by-clip similarity [texts, clips] for ``group``, each clip's first caption a text."""
    tokens, weights = model.group_tokens(clips["video"].to(device), clips["audio"].to(device))[group]
    queries, query_w, query_mask = clips["text"], clips["text_w"], clips["text_mask"]
    rows = []
    for start in range(0, queries.shape[0], chunk):
        piece = slice(start, start + chunk)
        rows.append(model.similarity(queries[piece].to(device), query_mask[piece].to(device),
                                     query_w[piece].to(device), tokens, weights).float().cpu())
    return torch.cat(rows)


@torch.no_grad()
def captions(model: VALOR, clips: dict, tokenizer, device: torch.device, beam: int, limit: int,
             batch_size: int = 32) -> tuple[list[str], list[list[str]]]:
    """Generated captions (from the audio+video group) and references for the first ``limit`` clips."""
    count = min(limit or len(clips["key"]), len(clips["key"]))
    generated = []
    for start in range(0, count, batch_size):
        piece = slice(start, min(count, start + batch_size))
        memory = model.memory(clips["video"][piece].to(device), clips["audio"][piece].to(device), "tav")
        generated += [text.decode(tokenizer, ids) for ids in model.generate(memory, beam=beam)]
    return generated, clips["captions"][:count]


@torch.no_grad()
def classification(model: VALOR, clips: dict, device: torch.device, chunk: int = 256) -> dict | None:
    """Top-1 / top-5 of the classification head over the clips with a category (a category the
    head was not trained on counts as a miss). Chance: the better of guessing uniformly and
    always answering this split's most frequent categories."""
    labelled = clips["category"] >= 0
    if model.classifier is None or not bool(labelled.any()):
        return None
    logits = torch.cat([model.classify(clips["video"][i:i + chunk].to(device), clips["audio"][i:i + chunk].to(device))
                        .float().cpu() for i in range(0, len(clips["key"]), chunk)])[labelled]
    category = clips["category"][labelled]
    targets = model.class_targets(category.to(device)).cpu()
    classes = len(model.cfg.classes)
    counts = sorted(torch.bincount(category).tolist(), reverse=True)
    n = int(labelled.sum())
    return {"top1": metrics.topk_accuracy(logits, targets, 1), "top5": metrics.topk_accuracy(logits, targets, 5),
            "classes": classes, "n": n, "unseen": int((targets < 0).sum()),
            "chance": {"top1": max(1 / classes, counts[0] / n), "top5": max(min(1.0, 5 / classes), sum(counts[:5]) / n)}}


def evaluate(model: VALOR, tokenizer, batches: Iterable[dict], device: torch.device, beam: int = 3,
             caption_limit: int = 500, limit: int = 0, bf16: bool = True) -> dict:
    """Every metric the split supports, with the chance levels beside them."""
    clips = encode_clips(model, batches, device, bf16, limit)
    n = len(clips["key"])
    result = {"n": n, "chance": metrics.retrieval_chance(n), "retrieval": {}, "retrieval_c2t": {}}
    for group in GROUPS:
        sim = similarities(model, clips, group, device)
        result["retrieval"][group], result["retrieval_c2t"][group] = metrics.retrieval(sim), metrics.retrieval(sim.T)
    generated, refs = captions(model, clips, tokenizer, device, beam, caption_limit)
    result["captioning"] = {**metrics.caption_scores(generated, refs), "n": len(generated),
                            "examples": [{"key": k, "generated": g, "reference": r[0]}
                                         for k, g, r in list(zip(clips["key"], generated, refs, strict=False))[:5]]}
    classes = classification(model, clips, device)
    if classes is not None:
        result["classification"] = classes
        log.info("classification of %d clips: top-1 %.3f top-5 %.3f (chance %.3f / %.3f)", classes["n"],
                 classes["top1"], classes["top5"], classes["chance"]["top1"], classes["chance"]["top5"])
    tav, av2t = result["retrieval"]["tav"], result["retrieval_c2t"]["tav"]
    log.info("eval on %d clips: t2av R@1 %.3f R@5 %.3f R@10 %.3f, av2t R@1 %.3f R@5 %.3f (chance R@1 %.3f), "
             "BLEU-4 %.3f CIDEr %.3f", n, tav["r1"], tav["r5"], tav["r10"], av2t["r1"], av2t["r5"], 1 / n,
             result["captioning"]["bleu4"], result["captioning"]["cider"])
    return result


def evaluate_split(root: str | os.PathLike, cfg, model: VALOR, tokenizer, device: torch.device) -> dict:
    """Evaluate ``model`` on ``cfg.eval_split`` of work dir ``root`` (or on ``cfg.eval_shards``)."""
    urls = data.resolve_shards(root, cfg.eval_split, cfg.eval_shards)
    stream = data.ShardStream(urls, data.SampleSpec.of(model.cfg), tokenizer, cfg.eval_batch_size, train=False)
    batches = data.make_loader(stream, cfg.workers, pin_memory=device.type == "cuda")
    with data.cpu_threads_beside(cfg.workers, device):
        result = evaluate(model.to(device), tokenizer, batches, device, cfg.beam_size, cfg.caption_samples,
                          cfg.eval_max_samples, cfg.bf16)
    return {"split": cfg.eval_split, **result}


def write_result(result: dict, path: str | os.PathLike) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(result, indent=1, ensure_ascii=False), encoding="utf-8")
    return Path(path)
