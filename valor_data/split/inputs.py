"""What the split starts from: every manifest clip, and why an earlier stage dropped it.

Each stage table is optional: without ``fetch.parquet`` every clip counts as fetched,
without ``quality.parquet`` every clip passes the filter, without
``signatures.parquet`` no clip is a near-duplicate. Tables are joined on ``clip_id``
with Arrow kernels, so two million rows take seconds, not minutes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from valor_data.errors import ValorError
from valor_data.workdir import Workdir

log = logging.getLogger(__name__)

FETCH_OK = "ok"
VERDICT_KEEP = "keep"
FILTER_DUPLICATE = "duplicate"      # the filter's near-duplicate reason (re-decided per pool by the split)
MANIFEST_COLUMNS = ["clip_id", "subset", "video_id", "labels"]


@dataclass
class ClipState:
    """The manifest columns the split needs, one position per manifest row, and each row's fate.

    ``reason[i]`` stays None while clip ``i`` is kept; whatever drops it first writes a
    short reason (``fetch:<status>``, ``filter:<first reason>``, ``duplicate``, ...).
    """

    clip_id: pa.ChunkedArray
    subset: pa.ChunkedArray
    video_id: pa.ChunkedArray
    labels: pa.ChunkedArray
    reason: np.ndarray        # object: None or a reason string
    kept: np.ndarray          # bool

    def __len__(self) -> int:
        return len(self.kept)

    def drop(self, mask: np.ndarray, reason: str) -> int:
        """Mark the kept clips under ``mask`` as dropped for ``reason``; return how many."""
        hit = mask & self.kept
        self.reason[hit] = reason
        self.kept &= ~hit
        return int(hit.sum())


def to_numpy(array: pa.ChunkedArray | pa.Array, fill=False) -> np.ndarray:
    """A boolean/numeric Arrow array as numpy, nulls replaced by ``fill``."""
    return pc.fill_null(array, fill).to_numpy(zero_copy_only=False)


def positions(keys: pa.ChunkedArray, table: pa.Table) -> pa.Array | None:
    """Where each of ``keys`` sits in ``table['clip_id']`` (null: absent); None when they are the same column."""
    ids = table.column("clip_id")
    if len(ids) == len(keys) and ids.equals(keys):
        return None
    return pc.index_in(keys, value_set=ids.combine_chunks())


def lookup(keys: pa.ChunkedArray, table: pa.Table, column: str, where: pa.Array | None = ...) -> pa.ChunkedArray:
    """``table[column]`` aligned to ``keys`` through ``table['clip_id']`` (null where absent).

    ``where`` may pass positions already computed for the same keys and table.
    """
    where = positions(keys, table) if where is ... else where
    return table.column(column) if where is None else pc.take(table.column(column), where)


def optional_table(workdir: Workdir, name: str, columns: list[str]) -> pa.Table | None:
    """``W/<name>`` with ``columns``, or None when that stage has not run."""
    path = workdir.path(name)
    if not path.exists():
        log.info("%s absent: that stage is treated as passing every clip", name)
        return None
    schema = pq.read_schema(path)
    missing = [c for c in columns if c not in schema.names]
    if missing:
        raise ValorError(f"{path} lacks column(s) {missing}")
    return pq.read_table(path, columns=columns)


def load_clips(workdir: Workdir) -> ClipState:
    """The manifest as a ClipState with every clip kept."""
    if not workdir.manifest.exists():
        raise ValorError(f"{workdir.manifest} does not exist: run the manifest stage first")
    table = pq.read_table(workdir.manifest, columns=MANIFEST_COLUMNS)
    n = table.num_rows
    return ClipState(*(table.column(c) for c in MANIFEST_COLUMNS),
                     reason=np.full(n, None, dtype=object), kept=np.ones(n, dtype=bool))


def apply_fetch(state: ClipState, fetch: pa.Table) -> None:
    """Drop clips whose fetch status is not ``ok`` (``fetch:<status>``; no row: ``fetch:missing``)."""
    status = pc.fill_null(lookup(state.clip_id, fetch, "status"), "missing")
    bad = pc.not_equal(status, FETCH_OK)
    for value in pc.unique(pc.filter(status, bad)).to_pylist():
        state.drop(to_numpy(pc.equal(status, value)), f"fetch:{value}")


def filter_reason(verdict: str, reasons: list[str] | None, pool_duplicates: bool) -> str | None:
    """Why the filter's verdict drops a clip, or None when it does not.

    With ``pool_duplicates`` (signatures present) a clip rejected only as ``duplicate``
    is not dropped here: the split re-decides duplicates within each pool, so a
    benchmark clip is never lost to its pretraining twin (which is dropped instead).
    """
    if verdict == VERDICT_KEEP:
        return None
    rest = [r for r in reasons or [] if not (pool_duplicates and r == FILTER_DUPLICATE)]
    if reasons and not rest:
        return None
    return f"filter:{(rest or [verdict])[0]}"


def apply_quality(state: ClipState, quality: pa.Table, pool_duplicates: bool = False) -> None:
    """Drop clips the filter rejected (``filter:<first reason>``; no row: ``filter:missing``)."""
    where = positions(state.clip_id, quality)
    verdict = pc.fill_null(lookup(state.clip_id, quality, "verdict", where), "missing")
    rows = np.flatnonzero(to_numpy(pc.not_equal(verdict, VERDICT_KEEP)) & state.kept)
    reasons = pc.take(lookup(state.clip_id, quality, "reasons", where), rows).to_pylist()
    found = [filter_reason(v, r, pool_duplicates)
             for v, r in zip(pc.take(verdict, rows).to_pylist(), reasons, strict=True)]
    dropped = np.array([i for i, reason in enumerate(found) if reason is not None], dtype=np.int64)
    if len(dropped):
        state.reason[rows[dropped]] = [found[i] for i in dropped]
        state.kept[rows[dropped]] = False


NO_CAPTION = "no_caption"


def apply_captions(state: ClipState, workdir: Workdir, mode: str) -> None:
    """Drop kept clips without a caption under ``mode`` (``curate.pseudo.choose``): ``no_caption``."""
    from valor_data.curate.captions import choose, kept_captions

    captions = lookup(state.clip_id, pq.read_table(workdir.manifest, columns=["clip_id", "captions"]), "captions")
    pseudo = kept_captions(workdir) if mode != "human" else {}
    rows = np.flatnonzero(state.kept)
    ids, human = pc.take(state.clip_id, rows).to_pylist(), pc.take(captions, rows).to_pylist()
    bare = np.zeros(len(state), dtype=bool)
    bare[rows] = [not choose(h, pseudo.get(i), mode)[0] for i, h in zip(ids, human, strict=True)]
    state.drop(bare, NO_CAPTION)
