"""Evaluate a model on a benchmark split: retrieval per group, captioning, classification.

- retrieval: text-to-video, text-to-audio and text-to-audio+video R@1/5/10 and median rank,
  the first caption of every clip as its query;
- captioning: beam search from the audio+video group, BLEU-4 / ROUGE-L / CIDEr against every
  reference caption (per character for Chinese);
- classification (when the split's json carries ``category_index``): zero-shot, each
  category name encoded as a caption and matched to the clips, top-1 / top-5.
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
def similarities(model: VALOR, clips: dict, group: str, device: torch.device, text=None, chunk: int = 64) -> torch.Tensor:
    """Caption-by-clip similarity [texts, clips] for ``group`` (``text``: other queries, as
    (tokens, weights, mask); default the clips' own first captions)."""
    tokens, weights = model.group_tokens(clips["video"].to(device), clips["audio"].to(device))[group]
    queries, query_w, query_mask = text or (clips["text"], clips["text_w"], clips["text_mask"])
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
def classification(model: VALOR, clips: dict, tokenizer, device: torch.device) -> dict | None:
    """Zero-shot top-1/top-5: category names as captions, matched with the audio+video group."""
    labelled = clips["category"] >= 0
    if not bool(labelled.any()):
        return None
    names = {int(i): n for i, n in zip(clips["category"].tolist(), clips["category_name"], strict=True) if i >= 0}
    classes = sorted(names)
    ids, mask = text.encode(tokenizer, [names[i] or str(i) for i in classes], model.cfg.max_text_len)
    ids, mask = ids.to(device), mask.to(device)
    tokens, weights = model.text_tokens(model.run_text(ids, mask))
    scores = similarities(model, clips, "tav", device, text=(tokens, weights, mask)).T[labelled]
    labels = torch.tensor([classes.index(int(i)) for i in clips["category"][labelled].tolist()])
    return {"top1": metrics.topk_accuracy(scores, labels, 1), "top5": metrics.topk_accuracy(scores, labels, 5),
            "classes": len(classes), "n": int(labelled.sum()),
            "chance": {"top1": 1 / len(classes), "top5": min(1.0, 5 / len(classes))}}


def evaluate(model: VALOR, tokenizer, batches: Iterable[dict], device: torch.device, beam: int = 3,
             caption_limit: int = 500, limit: int = 0, bf16: bool = True) -> dict:
    """Every metric the split supports, with the chance levels beside them."""
    clips = encode_clips(model, batches, device, bf16, limit)
    n = len(clips["key"])
    result = {"n": n, "chance": metrics.retrieval_chance(n), "retrieval": {}}
    for group in GROUPS:
        result["retrieval"][group] = metrics.retrieval(similarities(model, clips, group, device))
    generated, refs = captions(model, clips, tokenizer, device, beam, caption_limit)
    result["captioning"] = {**metrics.caption_scores(generated, refs), "n": len(generated),
                            "examples": [{"key": k, "generated": g, "reference": r[0]}
                                         for k, g, r in list(zip(clips["key"], generated, refs, strict=False))[:5]]}
    classes = classification(model, clips, tokenizer, device)
    if classes is not None:
        result["classification"] = classes
    tav = result["retrieval"]["tav"]
    log.info("eval on %d clips: t2av R@1 %.3f R@5 %.3f R@10 %.3f (chance R@1 %.3f), BLEU-4 %.3f CIDEr %.3f",
             n, tav["r1"], tav["r5"], tav["r10"], 1 / n, result["captioning"]["bleu4"],
             result["captioning"]["cider"])
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
