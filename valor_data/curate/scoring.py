"""The model side of ``score`` and ``caption``: fetched media -> the trainer's batches -> scores.

Everything here calls the trainer's public functions: ``loop.model_from_checkpoint``,
``presampled.frames`` / ``presampled.fbank`` (the shard decode path, fed the media files as a
sample's raw members), ``data.batches``, ``evaluate.encode_clips`` / ``encode_captions`` /
``similarities`` / ``video_to_audio``, ``VALOR.memory`` / ``run_text`` / ``generate``. The
model is loaded once per worker process (cached by the checkpoint's hash).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os

import torch

from valor_data.train import data, evaluate, loop, presampled, text
from valor_data.train.model import VALOR
from valor_data.workdir import Workdir

log = logging.getLogger(__name__)

_LOADED: dict[str, tuple] = {}
GROUPS = ("tv", "ta", "tav")


def load(config) -> tuple[VALOR, object, torch.device, data.SampleSpec]:
    """(model, tokenizer, device, how clips decode) for ``config.checkpoint``, loaded once per process."""
    key = config.checkpoint_sha256 or config.checkpoint
    if key not in _LOADED:
        want = config.device if config.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if want == "cuda" else torch.device(want)
        if device.type == "cpu":
            torch.set_num_threads(config.cpu_threads)
        else:   # torchrun: this rank's GPU; a pool worker or Ray actor sees only its own (index 0)
            torch.cuda.set_device(device)
        model, tokenizer, state = loop.model_from_checkpoint(config.checkpoint)
        _LOADED.clear()
        _LOADED[key] = (model.to(device).eval(), tokenizer, device, eval_spec(model, state))
    return _LOADED[key]


def eval_spec(model: VALOR, state: dict) -> data.SampleSpec:
    """Clips decode as the checkpoint's run evaluated them (its ``eval_frames`` and ``frame_resize``);
    a checkpoint saved before they existed: the model's frames, ``crop``."""
    trained = state.get("train_config") or {}
    return data.SampleSpec.of(model.cfg, trained.get("eval_frames"), trained.get("frame_resize") or "crop")


def decode_clip(workdir: Workdir, row: dict, spec: data.SampleSpec) -> dict:
    """One fetched clip as the trainer's decoded sample (``ValueError``/``OSError`` when it cannot be)."""
    mp4, flac = workdir.media_path(row["clip_id"], "mp4"), workdir.media_path(row["clip_id"], "flac")
    if not mp4.is_file():
        raise FileNotFoundError(f"no media file {mp4}")
    if not flac.is_file():
        raise FileNotFoundError(f"no audio file {flac}")
    sample = {"__key__": row["clip_id"], "mp4": mp4.read_bytes(), "flac": flac.read_bytes()}
    captions = [c for c in row.get("captions") or [] if c]
    return {"key": row["clip_id"], "shard": "", "frames": torch.from_numpy(presampled.frames(sample, spec, None)),
            "fbank": presampled.fbank(sample, spec, None), "caption": captions[0] if captions else "",
            "captions": captions, "category": -1, "category_name": "", "language": ""}


def decode_rows(workdir: Workdir, rows: list[dict], spec: data.SampleSpec) -> tuple[list[dict], dict[str, str]]:
    """(decoded samples, {clip_id: why it could not be decoded})."""
    decoded, failed = [], {}
    for row in rows:
        try:
            decoded.append(decode_clip(workdir, row, spec))
        except (ValueError, TypeError, RuntimeError, OSError) as exc:     # av.error.*: OSError/ValueError
            failed[row["clip_id"]] = f"{type(exc).__name__}: {exc}"
            log.warning("clip %s not scored: %s", row["clip_id"], exc)
    return decoded, failed


def encode(model: VALOR, tokenizer, decoded: list[dict], device: torch.device, config) -> dict:
    """``evaluate.encode_clips`` over the decoded samples (every token kept for the decoder)."""
    batches = data.batches(iter(decoded), config.batch_size, tokenizer, model.cfg.max_text_len, partial=True)
    return evaluate.encode_clips(model, batches, device, config.bf16)


@torch.no_grad()
def caption_loglik(model: VALOR, memory: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor,
                   chunk: int = 256) -> list[float]:
    """Mean log-probability per token of each caption ``ids`` [C, L] given ``memory`` [C, M, H]:
    token k predicted from tokens < k and a [MASK] at k (``VALOR.next_token_logprobs``'s rule),
    the closing [SEP] included."""
    cfg = model.cfg
    lengths = mask.sum(1).tolist()
    rows = [(c, k) for c in range(ids.shape[0]) for k in range(1, int(lengths[c]))]
    totals = [0.0] * ids.shape[0]
    for start in range(0, len(rows), chunk):
        piece = rows[start:start + chunk]
        width = max(k for _, k in piece) + 1
        inputs = torch.full((len(piece), width), cfg.pad_id, dtype=torch.long)
        attention = torch.zeros((len(piece), width), dtype=torch.long)
        for r, (c, k) in enumerate(piece):
            inputs[r, :k], inputs[r, k] = ids[c, :k], cfg.mask_id
            attention[r, :k + 1] = 1
        owner = torch.tensor([c for c, _ in piece])
        hidden = model.run_text(inputs.to(memory.device), attention.to(memory.device), memory[owner.to(memory.device)])
        at = torch.tensor([k for _, k in piece], device=memory.device)
        logp = model.text.cls(hidden[torch.arange(len(piece), device=memory.device), at]).float().log_softmax(-1)
        target = torch.tensor([int(ids[c, k]) for c, k in piece], device=memory.device)
        for (c, _), value in zip(piece, logp.gather(1, target[:, None]).squeeze(1).cpu().double().tolist(), strict=True):
            totals[c] += value
    return [totals[c] / max(1, int(lengths[c]) - 1) for c in range(ids.shape[0])]


def autocast(device: torch.device, bf16: bool):
    """bfloat16 autocast on CUDA (when asked), float32 elsewhere."""
    if device.type == "cuda" and bf16:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def clip_memory(model: VALOR, clips: dict, index: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The decoder's audio+video memory of clips ``index`` (of ``encode_clips``'s output)."""
    kept = clips["decoder"]
    return model.memory(kept["video"][index].to(device), kept["audio"][index].to(device), "tav")


def av_scores(sims: dict[str, torch.Tensor], scale: float) -> list[float | None]:
    """Per clip: does its audio belong to its frames, against the other clips of the task? The
    validator's ``va`` view (``evaluate.video_to_audio``: [videos, audios], the captions that fit
    the frames name the sound); the score is log(N x the share of its own audio in its frames'
    row) and log(N x the share of its frames in its audio's column), averaged (0: chance)."""
    n = sims["tv"].shape[1]
    if n < 2:
        return [None] * n
    va = evaluate.video_to_audio(sims, scale)
    own = va.diagonal()
    row, col = own / va.sum(1), own / va.sum(0)
    return [0.5 * (math.log(n * float(r)) + math.log(n * float(c))) for r, c in zip(row, col, strict=True)]


@torch.no_grad()
def caption_scores(model: VALOR, tokenizer, clips: dict, device: torch.device, config) -> tuple[dict, list]:
    """Per caption of the captioned clips: similarity with its clip per group and log-likelihood;
    and ``av_scores`` of every clip. Returns ({clip index: {group: [values]}}, av scores)."""
    n = len(clips["key"])
    captioned = [i for i in range(n) if clips["captions"][i]]
    if not captioned:
        return {}, [None] * n
    texts = evaluate.encode_captions(model, tokenizer, {"key": [clips["key"][i] for i in captioned],
                                                        "captions": [clips["captions"][i] for i in captioned]},
                                     device, config.bf16)
    owner = torch.tensor(captioned)[texts["owner"]]                     # [T]: the clip of each caption
    sims = evaluate.similarities(model, texts, clips["video"], clips["audio"], device)
    flat = [c for i in captioned for c in clips["captions"][i]]
    ids, mask = text.encode(tokenizer, flat, model.cfg.max_text_len)
    with autocast(device, config.bf16):
        loglik = caption_loglik(model, clip_memory(model, clips, owner, device), ids, mask)
    out: dict[int, dict[str, list]] = {i: {g: [] for g in (*GROUPS, "loglik")} for i in captioned}
    for t, clip in enumerate(owner.tolist()):
        for group in GROUPS:
            out[clip][group].append(float(sims[group][t, clip]))
        out[clip]["loglik"].append(loglik[t])
    return out, av_scores(sims, float(model.logit_scale.exp().clamp(max=100.0)))


def encoded_task(workdir: Workdir, rows: list[dict], config) -> tuple:
    """(model, tokenizer, device, ``encode``'s output or None when no row decodes, the error rows
    of those that do not) for the rows of one task."""
    model, tokenizer, device, spec = load(config)
    decoded, failed = decode_rows(workdir, rows, spec)
    out = [{"clip_id": cid, "status": "error", "error": why} for cid, why in failed.items()]
    clips = encode(model, tokenizer, decoded, device, config) if decoded else None
    return model, tokenizer, device, clips, out


@torch.no_grad()
def score_rows(workdir: Workdir, rows: list[dict], config) -> list[dict]:
    """Score rows of one task: one result row per input row (``ok`` or ``error``)."""
    model, tokenizer, device, clips, out = encoded_task(workdir, rows, config)
    if clips is None:
        return out
    per_clip, av = caption_scores(model, tokenizer, clips, device, config)
    for i, key in enumerate(clips["key"]):
        row = {"clip_id": key, "status": "ok", "error": None, "captions": len(clips["captions"][i]),
               "av_score": av[i], "task_clips": len(clips["key"])}
        for group, values in per_clip.get(i, {}).items():
            row.update({group: values, f"{group}_first": values[0], f"{group}_max": max(values)})
        out.append(row)
    return sorted(out, key=lambda r: r["clip_id"])


@torch.no_grad()
def caption_rows(workdir: Workdir, rows: list[dict], config) -> list[dict]:
    """Caption rows of one task by MGC beam search (``evaluate.captions``) and score each caption
    with its clip: one result row per input row (``ok`` or ``error``)."""
    model, tokenizer, device, clips, out = encoded_task(workdir, rows, config)
    if clips is None:
        return out
    with autocast(device, config.bf16):
        generated, _ = evaluate.captions(model, clips, tokenizer, device, config.beam, config.max_tokens,
                                         config.length_penalty, config.batch_size)
    clips["captions"] = [[caption] if caption else [] for caption in generated]
    per_clip, av = caption_scores(model, tokenizer, clips, device, config)
    for i, key in enumerate(clips["key"]):
        found = per_clip.get(i)
        row = {"clip_id": key, "status": "ok", "error": None if found else "empty caption",
               "caption": generated[i], "av_score": av[i]}
        row.update({group: values[0] for group, values in (found or {}).items()})
        out.append(row)
    return sorted(out, key=lambda r: r["clip_id"])
