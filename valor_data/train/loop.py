"""The training loop: one process on a CPU or a GPU, or one process per GPU under torchrun.

Step-based (no epochs): each step takes ``grad_accum`` micro-batches from the shard stream,
clips the gradient norm and steps AdamW over parameter groups with their own rates (the
recipe's: ``config.py``; linear warmup, then linear decay to zero). On CUDA the
forward runs under bf16 autocast; under ``torchrun`` the model is wrapped in DDP and MGA
gathers features from every rank. Every ``log_every`` steps one line goes to the log and to
``<run>/log.jsonl``; the checkpoint ``<run>/ckpt.pt`` is a plain dict (model, optimizer,
scheduler, step, configs, vocabulary, loss history) and a rerun resumes from it. When the
training clips carry categories (Youku-mPLUG classification) the model gets a classification
head over them, trained with cross-entropy beside MGA and MGC.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import logging
import math
import os
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from valor_data.errors import ValorError
from valor_data.train import data, text, workers
from valor_data.train.config import TrainConfig
from valor_data.train.model import (
    GROUPS,
    VALOR,
    ModelConfig,
    check_init_paths,
    count_parameters,
    model_config,
)
from valor_data.workdir import atomic_path

log = logging.getLogger(__name__)

LOGGED = ["loss", "mga", "mgc", "class"] + [f"mga_{g}" for g in GROUPS] + [f"mgc_{g}" for g in GROUPS]


@dataclass(frozen=True)
class Process:
    """Where this process runs: its rank among ``world`` and its device."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_process(device: str = "auto", timeout_s: float = 1800.0) -> Process:
    """Pick the device; join the process group when started by torchrun (nccl on GPUs, else gloo),
    with ``timeout_s`` as the longest any rank waits on a collective."""
    cuda = torch.cuda.is_available() and device != "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValorError("--device cuda, but torch sees no GPU")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(seconds=timeout_s))
    if cuda:
        torch.cuda.set_device(local_rank)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    rank = dist.get_rank() if world > 1 else 0
    return Process(rank, world, local_rank, torch.device("cuda", local_rank) if cuda else torch.device("cpu"))


def teardown_process() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _barrier(proc: Process) -> None:
    if proc.world > 1:
        dist.barrier()


def vocabulary_and_classes(cfg: TrainConfig, urls: list[str], run_dir: Path, proc: Process
                           ) -> tuple[list[str], tuple[int, ...]]:
    """The caption vocabulary and the classification head's classes for a fresh run.

    Vocabulary: ``--vocab``, else the text checkpoint's vocab.txt, else one built from the training
    captions (word-level English, character-level Chinese) and saved as ``<run>/vocab.txt``.
    Classes: the category indices the same training clips carry, saved with their names as
    ``<run>/classes.json``; none (no head) when the clips have no categories."""
    vocab_path, classes_path = run_dir / "vocab.txt", run_dir / "classes.json"
    if proc.main and not classes_path.is_file():
        targets = data.read_targets(urls, cfg.vocab_captions)
        if not (cfg.vocab or cfg.text_init):
            captions = (c for t in targets.values() for c in t["captions"])
            text.write_vocab(text.build_vocab(captions, cfg.vocab_min_count), vocab_path)
        names = {t["category"]: t["category_name"] for t in targets.values() if t["category"] is not None}
        with atomic_path(classes_path) as tmp:
            tmp.write_text(json.dumps(sorted(names.items()), ensure_ascii=False), encoding="utf-8")
    _barrier(proc)
    tokens = text.read_vocab(cfg.vocab or cfg.text_init or vocab_path)
    return tokens, tuple(int(i) for i, _ in json.loads(classes_path.read_text(encoding="utf-8")))


def with_labels(model_cfg: ModelConfig, tokens: list[str], classes: tuple[int, ...]) -> ModelConfig:
    """The model's shape with the tokenizer's ids and the head's classes (unless set in ``model:``)."""
    index = {t: i for i, t in enumerate(tokens)}
    return dataclasses.replace(model_cfg, vocab_size=len(tokens), pad_id=index["[PAD]"], unk_id=index["[UNK]"],
                               cls_id=index["[CLS]"], sep_id=index["[SEP]"], mask_id=index["[MASK]"],
                               classes=tuple(model_cfg.classes or classes))


ENCODERS = ("text", "vision", "audio")        # the model's BERT, CLIP and AST attributes


def param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict]:
    """AdamW groups, named ``<part>`` / ``<part>-no-decay``: each pretrained encoder (``text``,
    ``vision``, ``audio``) at its own rate, everything new (``heads``) at ``lr``; weight decay on
    every parameter but those whose name holds one of ``cfg.no_decay`` (VALOR's rule, by name:
    ``bias`` and BERT's ``LayerNorm``). Empty groups are left out."""
    rates = {"text": cfg.text_lr, "vision": cfg.vision_lr, "audio": cfg.audio_lr, "heads": cfg.lr}
    params: dict[str, list] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        part = name.split(".")[0] if name.split(".")[0] in ENCODERS else "heads"
        plain = any(part in name for part in cfg.no_decay)
        params.setdefault(part + ("-no-decay" if plain else ""), []).append(param)
    return [{"name": key, "params": group, "lr": rates[key.split("-")[0]],
             "weight_decay": 0.0 if key.endswith("-no-decay") else cfg.weight_decay}
            for key, group in sorted(params.items())]


def make_optimizer(model: nn.Module, cfg: TrainConfig):
    """(AdamW, its LambdaLR schedule) as VALOR builds them (eps 1e-6 as ``optim/adamw.py``)."""
    optimizer = torch.optim.AdamW(param_groups(model, cfg), lr=cfg.lr, betas=cfg.betas, eps=1e-6)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg.warmup, cfg.steps))
    return optimizer, scheduler


def clip_and_step(model: nn.Module, optimizer, max_norm: float) -> torch.Tensor:
    """Clip the gradients' total norm to ``max_norm`` (0: not at all), step; the norm before clipping."""
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm if max_norm > 0 else math.inf)
    optimizer.step()
    return norm


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warmup over ``warmup`` steps, then linear decay to zero at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


@dataclass
class Run:
    """A trained (or resumed) model and what is known about its training."""

    model: VALOR
    tokenizer: object
    model_cfg: ModelConfig
    run_dir: Path
    step: int = 0
    history: list[dict] = field(default_factory=list)


def _autocast(proc: Process, cfg: TrainConfig):
    if proc.device.type == "cuda" and cfg.bf16:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _memory_gb(proc: Process) -> float:
    if proc.device.type == "cuda":
        return torch.cuda.max_memory_allocated(proc.device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20   # Linux: KiB


def save_checkpoint(path: Path, run: Run, optimizer, scheduler, cfg: TrainConfig, tokens: list[str]) -> None:
    state = {"model": run.model.state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "step": run.step, "history": run.history,
             "model_config": dataclasses.asdict(run.model_cfg), "train_config": dataclasses.asdict(cfg),
             "vocab": tokens}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """A checkpoint dict (tensors and plain values only: loaded with ``weights_only``)."""
    if not Path(path).is_file():
        raise ValorError(f"checkpoint not found: {path}")
    return torch.load(path, map_location="cpu", weights_only=True)


def model_from_checkpoint(path: str | os.PathLike) -> tuple[VALOR, object, dict]:
    """(model, tokenizer, checkpoint) rebuilt from a checkpoint alone (no init checkpoints needed)."""
    state = load_checkpoint(path)
    model = VALOR(ModelConfig(**state["model_config"]))
    model.load_state_dict(state["model"])
    return model, text.make_tokenizer(state["vocab"]), state


class Interval:
    """Loss sums and throughput since the last log line (kept on the device: no sync per step)."""

    def __init__(self):
        self.sums, self.steps, self.samples, self.started = dict.fromkeys(LOGGED, 0.0), 0, 0, time.time()
        self.sums["grad_norm"] = 0.0

    def add(self, losses: dict, samples: int, share: float) -> None:
        self.sums.update({k: self.sums[k] + losses[k].detach().float() * share for k in LOGGED})
        self.samples += samples

    def add_norm(self, norm: torch.Tensor) -> None:
        """The step's gradient norm before clipping."""
        self.sums["grad_norm"] = self.sums["grad_norm"] + norm.detach().float()

    def record(self, step: int, lr: float, temperature: float, proc: Process) -> dict:
        """The log record of this interval; a non-finite loss stops training."""
        means = {k: round(float(v) / max(1, self.steps), 5) for k, v in self.sums.items()}
        if not math.isfinite(means["loss"]):
            raise ValorError(f"the loss is not finite (steps {step - self.steps + 1}-{step})")
        return {"step": step, **means, "lr": lr, "temperature": round(temperature, 5),
                "samples_per_s": round(self.samples / max(time.time() - self.started, 1e-9), 2),
                "memory_gb": round(_memory_gb(proc), 3), "time": round(time.time(), 3)}


def _log_step(record: dict, cfg: TrainConfig, proc: Process) -> None:
    log.info("step %d/%d loss %.4f mga %.4f (tv %.3f ta %.3f tav %.3f) mgc %.4f (tv %.3f ta %.3f tav %.3f) "
             "class %.4f lr %.2e %.1f samples/s %s %.2f GB", record["step"], cfg.steps, record["loss"],
             record["mga"], record["mga_tv"], record["mga_ta"], record["mga_tav"], record["mgc"], record["mgc_tv"],
             record["mgc_ta"], record["mgc_tav"], record["class"], record["lr"], record["samples_per_s"],
             "gpu" if proc.device.type == "cuda" else "rss", record["memory_gb"])


def prepare(root: Path, cfg: TrainConfig, run_dir: Path, proc: Process,
            state: dict | None = None) -> tuple[Run, list[str], list[str]]:
    """A new model, its tokenizer (the checkpoint ``state``'s vocabulary and classes, else
    ``vocabulary_and_classes()``) and the training tars."""
    check_init_paths(cfg.text_init, cfg.vision_init, cfg.audio_init)
    urls = data.resolve_shards(root, cfg.train_split, cfg.shards)
    if state:
        tokens, classes = state["vocab"], tuple(state["model_config"].get("classes") or ())
    else:
        tokens, classes = vocabulary_and_classes(cfg, urls, run_dir, proc)
    model_cfg = with_labels(model_config(cfg.preset, cfg.model), tokens, classes)
    torch.manual_seed(cfg.seed)
    model = VALOR(model_cfg, cfg.text_init, cfg.vision_init, cfg.audio_init)
    log.info("model: %s preset, %.2fM parameters, %s", cfg.preset, count_parameters(model) / 1e6,
             f"a classification head over {len(model_cfg.classes)} categories" if model_cfg.classes else "no head")
    return Run(model, text.make_tokenizer(tokens), model_cfg, run_dir), tokens, urls


def train(root: str | os.PathLike, cfg: TrainConfig, run_dir: str | os.PathLike | None = None) -> Run:
    """Train on ``cfg.train_split`` of work dir ``root``; checkpoints and logs go to ``run_dir``
    (default ``root/train``). Returns the run (on every rank)."""
    root = Path(root)
    run_dir = Path(run_dir) if run_dir else root / "train"
    run_dir.mkdir(parents=True, exist_ok=True)
    proc = setup_process(cfg.device, cfg.dist_timeout_s)
    checkpoint = run_dir / "ckpt.pt"
    state = load_checkpoint(checkpoint) if cfg.resume and checkpoint.is_file() else None
    if state is None and proc.main:                   # a fresh run: a fresh log and vocabulary
        for name in ("log.jsonl", "vocab.txt", "classes.json"):
            (run_dir / name).unlink(missing_ok=True)
    _barrier(proc)
    run, tokens, urls = prepare(root, cfg, run_dir, proc, state)
    model = run.model.to(proc.device)
    optimizer, scheduler = make_optimizer(model, cfg)
    if state:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        run.step, run.history = state["step"], state["history"]
        log.info("resumed %s at step %d", checkpoint, run.step)
    if run.step >= cfg.steps:
        model.eval()
        return run
    wrapped = model
    if proc.world > 1:          # (the coarse similarity leaves the token-weight heads unused)
        wrapped = nn.parallel.DistributedDataParallel(
            model, device_ids=[proc.local_rank] if proc.device.type == "cuda" else None,
            find_unused_parameters=not run.model_cfg.fine_grained)
    torch.manual_seed(cfg.seed * 1000 + proc.rank + run.step)        # MGC masking
    spec = data.SampleSpec.of(run.model_cfg, cfg.frames, cfg.frame_resize)
    stream = data.ShardStream(urls, spec, run.tokenizer, cfg.batch_size, train=True, seed=cfg.seed + run.step,
                              rank=proc.rank, world=proc.world, shuffle_buffer=cfg.shuffle_buffer)
    batches = iter(data.make_loader(stream, cfg.workers, workers.pin_memory(cfg.pin_memory, proc.device.type),
                                    cfg.prefetch))
    with data.cpu_threads_beside(cfg.workers, proc.device):
        _loop(wrapped, run, batches, optimizer, scheduler, cfg, proc, tokens)
    return run


def _loop(wrapped: nn.Module, run: Run, batches, optimizer, scheduler, cfg: TrainConfig, proc: Process,
          tokens: list[str]) -> None:
    model = run.model
    model.train()
    interval = Interval()
    while run.step < cfg.steps:
        for micro in range(cfg.grad_accum):
            batch = data.to_device(next(batches), proc.device)
            sync = micro == cfg.grad_accum - 1 or proc.world == 1          # DDP all-reduces on the last one
            with (contextlib.nullcontext() if sync else wrapped.no_sync()), _autocast(proc, cfg):
                losses = wrapped(**batch)
            (losses["loss"] / cfg.grad_accum).backward()
            interval.add(losses, batch["input_ids"].shape[0] * proc.world, 1 / cfg.grad_accum)
        interval.add_norm(clip_and_step(model, optimizer, cfg.grad_clip))
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        run.step += 1
        interval.steps += 1
        if run.step % cfg.log_every == 0 or run.step == cfg.steps:
            lr = next(g["lr"] for g in optimizer.param_groups if g["name"] == "heads")
            record = interval.record(run.step, lr, 1 / model.logit_scale.exp().item(), proc)
            run.history.append(record)
            if proc.main:
                _log_step(record, cfg, proc)
                with open(run.run_dir / "log.jsonl", "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(record) + "\n")
            interval = Interval()
        if proc.main and (run.step == cfg.steps or (cfg.save_every and run.step % cfg.save_every == 0)):
            save_checkpoint(run.run_dir / "ckpt.pt", run, optimizer, scheduler, cfg, tokens)
    _barrier(proc)
    model.eval()
