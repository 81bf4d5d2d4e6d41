"""``TrainConfig``: the ``train:`` section of a pipeline YAML (flags override single fields).

The model's shape is not here: it is the preset's ``ModelConfig`` (``model.py``) with the
``model:`` mapping applied on top, e.g. ``model: {frames: 8, fine_grained: false}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TrainConfig:
    """How to train, evaluate and validate."""

    preset: str = "tiny"                     # tiny | base
    model: dict = field(default_factory=dict)   # ModelConfig overrides
    train_split: str = "valor32k-train"
    eval_split: str = "valor32k-test"
    shards: list[str] = field(default_factory=list)        # explicit training tars/globs/shard lists
    eval_shards: list[str] = field(default_factory=list)   # explicit evaluation tars/globs/shard lists
    steps: int = 300
    batch_size: int = 32                     # per process and micro-step
    grad_accum: int = 1
    lr: float = 5e-4
    warmup_steps: int = 30
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    seed: int = 0
    workers: int = 2                         # DataLoader workers per process
    shuffle_buffer: int = 500
    device: str = "auto"                     # auto | cpu | cuda
    bf16: bool = True                        # autocast to bfloat16 on CUDA
    log_every: int = 10
    save_every: int = 0                      # 0: save at the end only
    resume: bool = True                      # continue from the run folder's checkpoint
    text_init: str | None = None             # local Hugging Face checkpoint folders (base)
    vision_init: str | None = None
    audio_init: str | None = None
    vocab: str | None = None                 # a local BERT vocab.txt (else the text checkpoint's, else built)
    vocab_min_count: int = 1
    vocab_captions: int = 200_000            # captions read to build a vocabulary
    eval_batch_size: int = 32
    eval_max_samples: int = 0                # 0: the whole evaluation split
    beam_size: int = 3
    caption_samples: int = 500               # clips captioned for BLEU/ROUGE/CIDEr (0: all)
    shuffle_captions: bool = False           # train on a fixed derangement of captions and categories (the control)
    min_r5_ratio: float = 3.0                # validation: t2av R@5 must be >= this x chance
    min_top1_ratio: float = 2.5              # validation (eval clips with categories): top-1 >= this x chance
    control_max_ratio: float = 2.0           # validation: the control's R@5 (and top-1) must stay <= this x chance
    min_loss_drop: float = 0.05              # validation: the final loss must be 5 % below the first
    min_eval_clips: int = 30                 # validation: fewer test clips cannot show R@5 >> chance

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1 or self.grad_accum < 1:
            raise ValueError("steps, batch_size and grad_accum must be positive")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, not {self.device!r}")
        if isinstance(self.shards, str):
            self.shards = [self.shards]
        if isinstance(self.eval_shards, str):
            self.eval_shards = [self.eval_shards]
