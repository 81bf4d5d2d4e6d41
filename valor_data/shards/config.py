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

    def __post_init__(self) -> None:
        if self.max_bytes <= 0 or self.max_samples <= 0:
            raise ValueError("max_bytes and max_samples must be positive")
        if self.workers < 1:
            raise ValueError("workers must be at least 1")
