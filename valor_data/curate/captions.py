"""Whose captions a clip carries: the manifest's (``human``), its kept pseudo-caption
(``pseudo``, from ``W/pseudo_captions.parquet`` of ``valor-data caption``), or ``both`` (human
where it has any). Shared by score, split, build-shards and the dataset card."""

from __future__ import annotations

import pyarrow.compute as pc

from valor_data.errors import ConfigError
from valor_data.table import read_table
from valor_data.workdir import Workdir

PSEUDO_FILE = "pseudo_captions.parquet"


def kept_captions(workdir: Workdir) -> dict[str, str]:
    """{clip_id: pseudo-caption} of the kept rows of ``W/pseudo_captions.parquet`` ({} when absent)."""
    path = workdir.path(PSEUDO_FILE)
    if not path.exists():
        return {}
    table = read_table(path, columns=["clip_id", "caption", "kept"])
    table = table.filter(pc.fill_null(table["kept"], False))
    return dict(zip(table["clip_id"].to_pylist(), table["caption"].to_pylist(), strict=True))


CAPTION_MODES = ("human", "pseudo", "both")


def choose(human: list[str] | None, pseudo: str | None, mode: str) -> tuple[list[str], str]:
    """A clip's captions and where they come from (``human`` | ``pseudo`` | ``none``) under
    ``mode``: ``human`` the manifest's, ``pseudo`` its kept pseudo-caption, ``both`` the
    manifest's where it has any, else the pseudo-caption."""
    if mode not in CAPTION_MODES:
        raise ConfigError(f"captions must be one of {', '.join(CAPTION_MODES)}, not {mode!r}")
    human = [c for c in human or [] if c]
    if mode != "pseudo" and human:
        return human, "human"
    if mode != "human" and pseudo:
        return [pseudo], "pseudo"
    return [], "none"


def caption_sources(workdir: Workdir, mode: str) -> dict[str, dict[str, int]]:
    """{split: {caption source: clips}} of ``W/splits.parquet`` under ``mode`` (the dataset card's counts)."""
    splits = read_table(workdir.path("splits.parquet"), columns=["clip_id", "split"])
    splits = splits.filter(pc.is_valid(splits["split"]))
    manifest = read_table(workdir.manifest, columns=["clip_id", "captions"])
    at = pc.index_in(splits["clip_id"], manifest["clip_id"].combine_chunks())
    humans = manifest["captions"].take(at).to_pylist()
    pseudo = kept_captions(workdir) if mode != "human" else {}
    counts: dict[str, dict[str, int]] = {}
    for clip_id, split, human in zip(splits["clip_id"].to_pylist(), splits["split"].to_pylist(), humans, strict=True):
        source = choose(human, pseudo.get(clip_id), mode)[1]
        part = counts.setdefault(split, {"human": 0, "pseudo": 0, "none": 0})
        part[source] += 1
    return dict(sorted(counts.items()))
