"""Evaluate a model on a benchmark split, as VALOR's own evaluation does, plus the validator's views.

- retrieval (VALOR's way): every caption of every clip is a query; text-to-clip
  (``retrieval``) ranks the clips for each caption; clip-to-text (``retrieval_c2t``) takes the
  best rank over the clip's captions; R@1/5/10 and median rank per group (video, audio,
  audio+video);
- ``per_clip``: one query per clip (its first caption), so that hits are independent trials
  for the validator's binomial thresholds, for the three groups and for ``va``: a clip's audio
  retrieved from its frames through the split's captions (each caption's softmax over the
  videos times its softmax over the audios: the captions that fit the frames name the sound);
- ``controls`` (``controls=True``): ``per_clip`` again with one thing deranged across clips (no
  clip keeps its own): the captions (and categories), the audio, or the video;
- captioning: beam search from the audio+video group (beam 3, at most 30 tokens, summed
  log-probability, as VALOR decodes; ``length_penalty`` > 0 divides by length**penalty),
  BLEU-4 / ROUGE-L / CIDEr against every reference caption (Chinese: per character, CJK
  ideographs only, as Youku-mPLUG scores);
- classification (when the model has a head and the split's json carries ``category_index``):
  top-1 / top-5 of the head, against what ignoring the clips scores.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
from collections.abc import Iterable
from pathlib import Path

import torch

from valor_data.errors import ValorError
from valor_data.train import data, metrics, tars, text
from valor_data.train.model import GROUPS, VALOR
from valor_data.workdir import atomic_path

log = logging.getLogger(__name__)

CONTROLS = ("captions", "audio", "video")      # what each control deranges across clips
DIRECTIONS = (*GROUPS, "va")                   # per_clip: the three text groups and video-to-audio


def _autocast(device: torch.device, bf16: bool):
    if device.type == "cuda" and bf16:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def encode_clips(model: VALOR, batches: Iterable[dict], device: torch.device, bf16: bool = True,
                 limit: int = 0, keep: int = 0) -> dict:
    """Run the clip encoders over a split. Returns per clip (sorted by key): ``video`` [N, F, 1, Hv]
    and ``audio`` [N, K, 1, Ha] (each frame's and slice's [CLS]: what MGA and the head use),
    ``keys``, ``captions`` (every caption), ``category`` [N], ``category_name``, ``language``;
    and ``decoder`` (``key``, ``video``, ``audio``, ``captions``): every token of the first ``keep``
    clips read (0: all), which the caption decoder attends to."""
    model.eval()
    parts: dict[str, list] = {"video": [], "audio": []}
    info: dict[str, list] = {k: [] for k in ("key", "captions", "category", "category_name", "language")}
    full: dict[str, list] = {"video": [], "audio": []}
    for batch in batches:
        inputs = data.to_device(batch, device)
        with _autocast(device, bf16):
            video, audio = model.encode_video(inputs["frames"]), model.encode_audio(inputs["fbank"])
        room = len(batch["key"]) if not keep else max(0, keep - len(info["key"]))
        for name, value in (("video", video.float().cpu()), ("audio", audio.float().cpu())):
            parts[name].append(value[:, :, :1])
            full[name].append(value[:room])
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
    kept = sorted(range(sum(v.shape[0] for v in full["video"])), key=info["key"].__getitem__)
    out["decoder"] = {"key": [info["key"][i] for i in kept], "captions": [info["captions"][i] for i in kept],
                      **{name: torch.cat(values)[kept] for name, values in full.items()}}
    return out


@torch.no_grad()
def encode_captions(model: VALOR, tokenizer, clips: dict, device: torch.device, bf16: bool = True,
                    chunk: int = 64) -> dict:
    """Every caption of every clip through the text encoder: ``text`` [T, L, D], ``text_w`` /
    ``text_mask`` [T, L], ``owner`` [T] (the clip's index) and ``first`` [N] (its first caption)."""
    flat = [(i, c) for i, caps in enumerate(clips["captions"]) for c in caps]
    owner = torch.tensor([i for i, _ in flat])
    parts: dict[str, list] = {"text": [], "text_w": [], "text_mask": []}
    for start in range(0, len(flat), chunk):
        ids, mask = text.encode(tokenizer, [c for _, c in flat[start:start + chunk]], model.cfg.max_text_len)
        with _autocast(device, bf16):
            tokens, weights = model.text_tokens(model.run_text(ids.to(device), mask.to(device)))
        for name, value in zip(parts, (tokens.float(), weights.float(), mask), strict=True):
            parts[name].append(value.cpu())
    counts = torch.tensor([len(caps) for caps in clips["captions"]])
    first = torch.cumsum(counts, 0) - counts                             # every clip has a caption (decode)
    return {**{name: torch.cat(values) for name, values in parts.items()}, "owner": owner, "first": first}


@torch.no_grad()
def similarities(model: VALOR, texts: dict, video: torch.Tensor, audio: torch.Tensor, device: torch.device,
                 chunk: int = 64) -> dict[str, torch.Tensor]:
    """Caption-by-clip similarity [T, N] per group, every caption a row."""
    out = {}
    for group, (tokens, weights) in model.group_tokens(video.to(device), audio.to(device)).items():
        rows = []
        for start in range(0, texts["owner"].numel(), chunk):
            piece = slice(start, start + chunk)
            rows.append(model.similarity(texts["text"][piece].to(device), texts["text_mask"][piece].to(device),
                                         texts["text_w"][piece].to(device), tokens, weights).float().cpu())
        out[group] = torch.cat(rows)
    return out


def video_to_audio(sims: dict[str, torch.Tensor], scale: float) -> torch.Tensor:
    """[videos, audios]: sum over the split's captions of P(video | caption) * P(audio | caption),
    each a softmax over the clips at the model's temperature. No clip's own caption is used, so
    deranging the captions leaves it as it is."""
    return (sims["tv"].double() * scale).softmax(1).T @ (sims["ta"].double() * scale).softmax(1)


def derangement(n: int, seed: int) -> torch.Tensor:
    """A random permutation of ``n`` that moves every index (Sattolo's algorithm: one n-cycle)."""
    order, rng = list(range(n)), random.Random(seed)
    for i in range(n - 1, 0, -1):
        j = rng.randrange(i)
        order[i], order[j] = order[j], order[i]
    return torch.tensor(order)


def per_clip(sims: dict[str, torch.Tensor], texts: dict, scale: float, owner: torch.Tensor | None = None) -> dict:
    """Retrieval with one query per clip (its first caption) per group, and ``va``. ``owner``
    [T]: which clip each caption belongs to (default: ``texts["owner"]``)."""
    owner = texts["owner"] if owner is None else owner
    first = texts["first"]
    out = {}
    for group in GROUPS:
        sim = sims[group][first]
        out[group] = metrics.retrieval(sim, owner[first][:, None] == torch.arange(sim.shape[1])[None, :])
    out["va"] = metrics.retrieval(video_to_audio(sims, scale))
    return out


def controls(model: VALOR, texts: dict, clips: dict, sims: dict, device: torch.device, scale: float,
             seed: int = 0) -> dict:
    """``per_clip`` with the captions, the audio or the video of every clip given to another clip."""
    n = len(clips["key"])
    perm = derangement(n, seed)
    moved = {"audio": similarities(model, texts, clips["video"], clips["audio"][perm], device),
             "video": similarities(model, texts, clips["video"][perm], clips["audio"], device)}
    return {"derangement_seed": seed,
            "captions": per_clip(sims, texts, scale, owner=perm[texts["owner"]]),
            **{name: per_clip(s, texts, scale) for name, s in moved.items()}}


@torch.no_grad()
def captions(model: VALOR, clips: dict, tokenizer, device: torch.device, beam: int, max_tokens: int = 30,
             length_penalty: float = 0.0, batch_size: int = 32) -> tuple[list[str], list[list[str]]]:
    """Generated captions (from the audio+video group) and references of the clips whose tokens
    ``encode_clips`` kept."""
    kept = clips["decoder"]
    generated = []
    for start in range(0, len(kept["key"]), batch_size):
        piece = slice(start, start + batch_size)
        memory = model.memory(kept["video"][piece].to(device), kept["audio"][piece].to(device), "tav")
        found = model.generate(memory, beam=beam, max_tokens=max_tokens, length_penalty=length_penalty)
        generated += [text.decode(tokenizer, ids) for ids in found]
    return generated, kept["captions"]


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


@torch.no_grad()
def evaluate(model: VALOR, tokenizer, batches: Iterable[dict], device: torch.device, beam: int = 3,
             caption_limit: int = 500, limit: int = 0, bf16: bool = True, max_tokens: int = 30,
             length_penalty: float = 0.0, with_controls: bool = False, seed: int = 0) -> dict:
    """Every metric the split supports, with the chance levels beside them (and the controls)."""
    clips = encode_clips(model, batches, device, bf16, limit, keep=caption_limit)
    texts = encode_captions(model, tokenizer, clips, device, bf16)
    n, owner = len(clips["key"]), texts["owner"]
    own = owner[:, None] == torch.arange(n)[None, :]                   # [T, N]: each caption's clip
    sims = similarities(model, texts, clips["video"], clips["audio"], device)
    scale = float(model.logit_scale.exp().clamp(max=100.0))
    result = {"n": n, "captions": int(owner.numel()), "chance": metrics.retrieval_chance(n),
              "retrieval": {g: metrics.retrieval(sims[g], own) for g in GROUPS},
              "retrieval_c2t": {g: metrics.retrieval(sims[g].T, own.T) for g in GROUPS},
              "per_clip": per_clip(sims, texts, scale)}
    if with_controls:
        result["controls"] = controls(model, texts, clips, sims, device, scale, seed)
    generated, refs = captions(model, clips, tokenizer, device, beam, max_tokens, length_penalty)
    result["captioning"] = {**metrics.caption_scores(generated, refs), "n": len(generated), "beam": beam,
                            "max_tokens": max_tokens, "length_penalty": length_penalty,
                            "examples": [{"key": k, "generated": g, "reference": r[0]}
                                         for k, g, r in list(zip(clips["decoder"]["key"], generated, refs, strict=True))[:5]]}
    classes = classification(model, clips, device)
    if classes is not None:
        result["classification"] = classes
        if with_controls:
            perm = derangement(n, seed)
            moved = {**clips, "category": clips["category"][perm]}
            result["controls"]["captions"]["classification"] = classification(model, moved, device)
        log.info("classification of %d clips: top-1 %.3f top-5 %.3f (chance %.3f / %.3f)", classes["n"],
                 classes["top1"], classes["top5"], classes["chance"]["top1"], classes["chance"]["top5"])
    tav, av2t = result["retrieval"]["tav"], result["retrieval_c2t"]["tav"]
    log.info("eval on %d clips (%d captions): t2av R@1 %.3f R@5 %.3f R@10 %.3f, av2t R@1 %.3f R@5 %.3f "
             "(chance R@1 %.3f), BLEU-4 %.3f CIDEr %.3f", n, owner.numel(), tav["r1"], tav["r5"], tav["r10"],
             av2t["r1"], av2t["r5"], 1 / n, result["captioning"]["bleu4"], result["captioning"]["cider"])
    return result


def labelled_split(root: str | os.PathLike, split: str, classifier: bool) -> tuple[str, str]:
    """The split to evaluate a classifier on, and why: ``split`` itself, unless none of its clips has
    a category (Youku-mPLUG withholds its test labels) and its ``-val`` sibling has some."""
    def has_labels(name: str) -> bool:
        return any(t["category"] is not None for t in data.read_targets(data.resolve_shards(root, name)).values())

    if not classifier or not split.endswith("-test") or has_labels(split):
        return split, ""
    sibling = split[: -len("-test")] + "-val"
    try:
        found = has_labels(sibling)
    except ValorError:
        found = False
    if not found:
        return split, f"{split} has no labels (withheld) and no labelled {sibling}: classification not evaluated"
    return sibling, f"{split} has no labels (withheld, as Youku-mPLUG publishes its test set): evaluated on {sibling}"


def evaluate_split(root: str | os.PathLike, cfg, model: VALOR, tokenizer, device: torch.device,
                   with_controls: bool = False) -> dict:
    """Evaluate ``model`` on ``cfg.eval_split`` of work dir ``root`` (or on ``cfg.eval_shards``); a
    classification test split without labels gives way to its labelled ``-val`` (``labelled_split``)."""
    split, note = (cfg.eval_split, "") if cfg.eval_shards else \
        labelled_split(root, cfg.eval_split, model.classifier is not None)
    if note:
        log.warning("%s", note)
    urls = data.resolve_shards(root, split, cfg.eval_shards)
    spec = data.SampleSpec.of(model.cfg, cfg.eval_frames, cfg.frame_resize)
    stream = data.ShardStream(urls, spec, tokenizer, cfg.eval_batch_size, train=False)
    batches = tars.Received(data.make_loader(stream, cfg.workers, pin_memory=device.type == "cuda"))
    with data.cpu_threads_beside(cfg.workers, device):
        result = evaluate(model.to(device), tokenizer, batches, device, cfg.beam_size, cfg.caption_samples,
                          cfg.eval_max_samples, cfg.bf16, cfg.max_caption_tokens, cfg.length_penalty,
                          with_controls, cfg.seed)
    shards = tars.check_complete(urls, batches.per_shard, cfg.eval_max_missing, cfg.eval_max_samples)
    return {"split": split, **({"note": note} if note else {}), "frames": spec.frames, "frame_resize": spec.resize,
            **result, "shards": shards}


def write_result(result: dict, path: str | os.PathLike) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(result, indent=1, ensure_ascii=False), encoding="utf-8")
    return Path(path)
