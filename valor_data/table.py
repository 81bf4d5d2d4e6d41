"""The clip table: one canonical pyarrow schema, stored as Parquet in the work dir."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from valor_data.workdir import atomic_path

_STR_LIST = pa.list_(pa.string())

CLIP_SCHEMA = pa.schema([
    pa.field("clip_id", pa.string(), nullable=False),
    pa.field("source", pa.string(), nullable=False),      # audioset | youku | urls
    pa.field("subset", pa.string(), nullable=False),      # balanced_train, eval, youku-pretrain, ...
    pa.field("video_id", pa.string(), nullable=False),    # the source's own id (YTID, Youku file name, URL)
    pa.field("url", pa.string()),
    pa.field("start_s", pa.float64()),                    # null: from the start of the file
    pa.field("end_s", pa.float64()),                      # null: to the end of the file
    pa.field("labels", _STR_LIST),                        # AudioSet MIDs
    pa.field("label_names", _STR_LIST),
    pa.field("captions", _STR_LIST),
    pa.field("language", pa.string()),                    # en | zh
    pa.field("category", pa.string()),
    pa.field("category_index", pa.int32()),
    pa.field("valor_id", pa.string()),                    # <YTID>_<start>.000_<end>.000
    pa.field("origin", pa.string()),                      # file:line the row came from
    pa.field("checksum", pa.string()),                    # "<algo>:<hex>" of the whole file, when published
])

REJECT_SCHEMA = pa.schema([
    pa.field("source", pa.string()),
    pa.field("subset", pa.string()),
    pa.field("file", pa.string()),
    pa.field("line", pa.int64()),
    pa.field("reason", pa.string()),     # short machine-readable reason, e.g. bad_video_id
    pa.field("detail", pa.string()),     # human-readable explanation
    pa.field("raw", pa.string()),        # the offending line as read
])


CHECKSUM_HEX = {"md5": 32, "sha1": 40, "sha256": 64}   # algorithm -> hex digits


def checksum_value(algo: str, digest: str) -> str:
    """A checksum cell as stored: ``<algo>:<lower-case hex>`` (ValueError when malformed)."""
    algo, digest = algo.strip().lower(), digest.strip().lower()
    if algo not in CHECKSUM_HEX:
        raise ValueError(f"unknown checksum algorithm {algo!r} (known: {', '.join(CHECKSUM_HEX)})")
    if len(digest) != CHECKSUM_HEX[algo] or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"not a {algo} digest: {digest[:80]!r}")
    return f"{algo}:{digest}"


def clip_row(**fields) -> dict:
    """A clip row with every schema column present (missing ones are null/empty)."""
    row = {name: None for name in CLIP_SCHEMA.names}
    row.update(labels=[], label_names=[], captions=[])
    unknown = set(fields) - set(row)
    if unknown:
        raise KeyError(f"not clip table columns: {sorted(unknown)}")
    row.update(fields)
    return row


def to_table(rows: Iterable[Mapping], schema: pa.Schema) -> pa.Table:
    """Rows (dicts) to a table of exactly ``schema``."""
    return pa.Table.from_pylist(list(rows), schema=schema)


def write_table(table: pa.Table, path: str | os.PathLike) -> Path:
    """Write Parquet atomically (temp file + rename)."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return Path(path)


def read_table(path: str | os.PathLike, columns: list[str] | None = None) -> pa.Table:
    return pq.read_table(path, columns=columns)
