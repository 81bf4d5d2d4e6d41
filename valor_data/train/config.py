"""``TrainConfig``: the ``train:`` section of a pipeline YAML (flags override single fields).

The model's shape is not here: it is the preset's ``ModelConfig`` (``model.py``) with the
``model:`` mapping applied on top, e.g. ``model: {frames: 8, fine_grained: false}``.

The optimisation follows a ``recipe`` (``RECIPES``); any field set explicitly wins over it.
VALOR's (TXH-mercury/VALOR): AdamW, betas (0.9, 0.98), eps 1e-6 (``optim/adamw.py``), weight
decay 0.01 on every parameter but those whose name holds ``bias`` or ``LayerNorm.bias`` /
``LayerNorm.weight`` (``no_decay``, ``optim/misc.py``: so BERT's norms are not decayed, while
CLIP's ``ln_*``, AST's ``layernorm*`` and the type and frame embeddings are), gradient
clipping at 5 (``grad_norm``), linear warmup over the first 10 % of the steps then linear
decay to zero (``warmup_ratio``, ``optim/sched.py`` ``warmup_linear``), and parameter groups
(``optim/misc.py`` ``build_optimizer``): the CLIP layers at ``clip_lr`` 5e-7
(``train_utils.py``), everything else (BERT, AST, the new heads) at ``learning_rate``:

- ``pretrain`` (``config/pretrain-VALOR-base.json``): learning rate 1e-4; VALOR trains 20
  epochs of VALOR-1M at a global batch of 512, 4 frames, 1 audio slice, 40-token captions.
- ``finetune`` (``scripts/finetune_cap.sh`` / ``finetune_ret.sh``, VALOR-32K, with
  ``config/caption-valor32k.json``): learning rate 2e-5; 10 epochs at a global batch of 64,
  4 frames and 2 audio slices in training, 8 frames at test, 30-token captions.
- ``tiny`` (random init, minutes on a CPU): one rate, 5e-4, for every layer (a random CLIP
  at 5e-7 would never learn).

The frames follow the recipe too. ``frames``: frames per training clip, ``eval_frames``: per
evaluation clip (each a random frame of one of N uniform segments in training, its middle one
at evaluation, ``data/data.py`` ``VideoMapper``); ``frame_resize``: ``squash`` (the frame
scaled to S x S, the aspect ratio not kept: ``Resize((S, S))``, VALOR's default
``video_transforms: none``) or ``crop`` (short side to S, centre crop: VALOR's ``crop_flip``
test transform). ``pretrain`` and ``finetune``: 4 frames in training, 8 at evaluation
(``video_sample_num`` of ``config/caption-valor32k.json``; the pretraining config trains on
4), ``squash``. ``tiny``: the model's ``frames`` for both (``model: {frames: N}``), ``crop``.
The model takes any count up to ``model.MAX_FRAMES`` (its frame embeddings' rows); the
decoder's memory is then ``eval_frames`` x frame tokens + audio tokens at evaluation.

The recipe defaults to ``tiny`` for the tiny preset and ``pretrain`` for ``base``. Batch size
and steps stay the run's own (``steps`` x ``batch_size`` x processes samples).
"""

from __future__ import annotations

from dataclasses import dataclass, field

RECIPES: dict[str, dict] = {
    "tiny": {"lr": 5e-4, "frame_resize": "crop"},
    "pretrain": {"lr": 1e-4, "vision_lr": 5e-7, "frames": 4, "eval_frames": 8, "frame_resize": "squash"},
    "finetune": {"lr": 2e-5, "vision_lr": 5e-7, "frames": 4, "eval_frames": 8, "frame_resize": "squash"},
}


@dataclass
class TrainConfig:
    """How to train, evaluate and validate."""

    preset: str = "tiny"                     # tiny | base
    recipe: str | None = None                # tiny | pretrain | finetune (None: tiny for tiny, pretrain for base)
    model: dict = field(default_factory=dict)   # ModelConfig overrides
    train_split: str = "valor32k-train"
    eval_split: str = "valor32k-test"
    shards: list[str] = field(default_factory=list)        # explicit training tars/globs/shard lists
    eval_shards: list[str] = field(default_factory=list)   # explicit evaluation tars/globs/shard lists
    steps: int = 300
    batch_size: int = 32                     # per process and micro-step
    grad_accum: int = 1
    lr: float | None = None                  # None: the recipe's (VALOR: learning_rate)
    vision_lr: float | None = None           # the CLIP layers (VALOR: clip_lr); None: the recipe's, else lr
    audio_lr: float | None = None            # the AST layers; None: the recipe's, else lr
    text_lr: float | None = None             # BERT (text encoder and decoder); None: the recipe's, else lr
    betas: tuple[float, float] = (0.9, 0.98)
    warmup_ratio: float = 0.1                # share of the steps with a linear warmup
    warmup_steps: int | None = None          # an explicit warmup length instead of the ratio
    weight_decay: float = 0.01
    no_decay: tuple[str, ...] = ("bias", "LayerNorm.bias", "LayerNorm.weight")   # parameters whose name holds
                                             #   one of these get no weight decay (VALOR's optim/misc.py)
    grad_clip: float = 5.0                   # max gradient norm (0: no clipping)
    frames: int | None = None                # frames per training clip (None: the recipe's, else the model's)
    eval_frames: int | None = None           # frames per evaluation clip (None: the recipe's, else the model's)
    frame_resize: str | None = None          # squash | crop (None: the recipe's)
    seed: int = 0
    workers: int | None = None               # DataLoader workers per process (None: workers.default_workers,
                                             #   min(cores per process - 1, 8))
    prefetch: int = 4                        # batches each worker prepares ahead
    pin_memory: bool | None = None           # pinned host memory (None: on CUDA)
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
    eval_max_missing: float = 0.0            # share of the listed evaluation clips that may be missing
                                             # (damaged tars, undecodable clips); more fails the evaluation
    beam_size: int = 3                       # captioning beam (VALOR: beam_size 3)
    max_caption_tokens: int = 30             # captioning: most tokens generated, [SEP] included (VALOR: 30)
    length_penalty: float = 0.0              # captioning: beams ranked by log-prob / length**this (VALOR: 0, the sum)
    caption_samples: int = 500               # clips captioned for BLEU/ROUGE/CIDEr (0: all)
    false_rate: float = 1e-3                 # validation: a sound dataset fails, a broken one passes, less often
    sound_ratio: float = 8.0                 # validation: a sound dataset's R@10 (this x chance), for its fail rate
    sound_lower_half: float = 0.01           # validation: how often a sound dataset ranks a clip's own match
                                             #   below the middle (the misaligned-share check)
    broken_share: float = 0.25               # validation: the share of misaligned clips the verdict must catch
    min_loss_drop: float = 0.05              # validation: the final loss must be 5 % below the first
    dist_timeout_s: float = 1800.0           # torchrun: the process group's timeout for any collective

    def __post_init__(self):
        if self.workers is None:
            from valor_data.train.workers import default_workers
            self.workers = default_workers()
        if self.steps < 1 or self.batch_size < 1 or self.grad_accum < 1:
            raise ValueError("steps, batch_size and grad_accum must be positive")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, not {self.device!r}")
        if isinstance(self.shards, str):
            self.shards = [self.shards]
        if isinstance(self.eval_shards, str):
            self.eval_shards = [self.eval_shards]
        self.recipe = self.recipe or ("tiny" if self.preset == "tiny" else "pretrain")
        if self.recipe not in RECIPES:
            raise ValueError(f"recipe must be one of {', '.join(RECIPES)}, not {self.recipe!r}")
        recipe = RECIPES[self.recipe]
        self.lr = recipe["lr"] if self.lr is None else self.lr
        for name in ("vision_lr", "audio_lr", "text_lr"):
            if getattr(self, name) is None:
                setattr(self, name, recipe.get(name, self.lr))
        for name in ("frames", "eval_frames", "frame_resize"):
            if getattr(self, name) is None:
                setattr(self, name, recipe.get(name))
        self._check_frames()
        self.betas = tuple(self.betas)
        self.no_decay = tuple(self.no_decay)
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"warmup_ratio must be in [0, 1), not {self.warmup_ratio}")

    def _check_frames(self) -> None:
        from valor_data.train.model import MAX_FRAMES
        from valor_data.train.video import RESIZE_MODES

        for name in ("frames", "eval_frames"):
            value = getattr(self, name)
            if value is not None and not 1 <= value <= MAX_FRAMES:
                raise ValueError(f"{name} must be in 1..{MAX_FRAMES} (the model's frame embeddings), not {value}")
        if self.frame_resize not in RESIZE_MODES:
            raise ValueError(f"frame_resize must be one of {', '.join(RESIZE_MODES)}, not {self.frame_resize!r}")

    @property
    def warmup(self) -> int:
        """Warmup steps: ``warmup_steps`` when given, else ``warmup_ratio`` of the steps."""
        return self.warmup_steps if self.warmup_steps is not None else round(self.warmup_ratio * self.steps)
