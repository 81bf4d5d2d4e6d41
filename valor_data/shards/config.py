"""The ``shards:`` section of a pipeline YAML."""

from __future__ import annotations

from dataclasses import dataclass, field


def _valor_exports() -> dict[str, str]:
    return {"valor32k-train": "train", "valor32k-val": "val", "valor32k-test": "test"}


@dataclass
class ShardConfig:
    """How splits become tar shards.

    A shard closes before it would pass ``max_bytes`` or ``max_samples``. ``exports``
    maps a split to the VALOR-style name of its caption files (``desc_<name>.json``;
    every name but ``train`` also gets a COCO-style ``caption_ref_<name>.json``).
    """

    max_bytes: int = 1_000_000_000
    max_samples: int = 10_000
    workers: int = 2                      # shards written at once (threads)
    seed: int | None = None               # pretraining shuffle seed (None: the split's seed)
    exports: dict[str, str] = field(default_factory=_valor_exports)
    title: str = "VALOR-1M / VALOR-32K"
    # pre-sampled training inputs (``valor_data/train/presampled.py``), off by default: K candidate
    # frames per segment (0: none), the segments, frame size and resize mode they serve (defaults:
    # the base preset's training under VALOR's recipes: 4 frames at 224, ``squash``; the trainer
    # decodes the mp4 whenever they differ from its own), the JPEG quality, and the sample rate of
    # the stored filterbank (the model's ``audio_rate``)
    presampled_frames: int = 0
    presampled_segments: int = 4
    presampled_size: int = 224
    presampled_resize: str = "squash"     # squash | crop (``train.frame_resize``)
    presampled_quality: int = 90
    presampled_audio_rate: int = 22050
    captions: str = "human"               # human | pseudo | both: whose captions the samples carry
                                          # (``W/pseudo_captions.parquet`` of valor-data caption)

    def __post_init__(self) -> None:
        if self.max_bytes <= 0 or self.max_samples <= 0:
            raise ValueError("max_bytes and max_samples must be positive")
        if self.workers < 1:
            raise ValueError("workers must be at least 1")
        if self.presampled_frames < 0 or min(self.presampled_segments, self.presampled_size) < 1:
            raise ValueError("presampled_frames must be >= 0, presampled_segments and presampled_size positive")
        if not 1 <= self.presampled_quality <= 95:
            raise ValueError("presampled_quality must be in 1..95")
        if self.presampled_resize not in ("squash", "crop"):
            raise ValueError(f"presampled_resize must be squash or crop, not {self.presampled_resize!r}")
        if self.captions not in ("human", "pseudo", "both"):
            raise ValueError(f"captions must be human, pseudo or both, not {self.captions!r}")

    def presampled(self) -> dict | None:
        """The pre-sampling settings (None: off); they enter each shard's fingerprint."""
        if not self.presampled_frames:
            return None
        return {"frames": self.presampled_frames, "segments": self.presampled_segments, "size": self.presampled_size,
                "resize": self.presampled_resize, "quality": self.presampled_quality,
                "audio_rate": self.presampled_audio_rate}
