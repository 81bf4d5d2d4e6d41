"""The build-shards stage: ``splits.parquet`` + manifest + media -> tars and everything next to them.

``W/shards/`` ends up holding ``<split>-<000000>.tar`` per split, ``index.parquet``
(one row per member: key, split, shard, member, header_offset, offset, size,
sha256; with ``presampled_frames`` the pre-sampled members follow each sample's four, and
``max_bytes`` counts the four), ``<split>.shards.json`` (wids-style shard list), ``SHA256SUMS``
(``sha256sum -c`` format), the VALOR-style caption exports and the dataset card
``README.md``. Each tar is written to a temp name and renamed; ``.parts/<tar>.parquet``
records a finished tar's members and fingerprint, so a rerun skips finished shards
and a killed build resumes to byte-identical output.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from valor_data.distribute.tasks import stage_lock
from valor_data.errors import ValorError
from valor_data.shards.card import write_card
from valor_data.shards.config import ShardConfig
from valor_data.shards.exports import write_exports
from valor_data.shards.plan import ShardPlan, plan_split
from valor_data.shards.samples import SampleSource, presampled_fingerprint, presampled_members, split_order
from valor_data.shards.tarwriter import BLOCK, RECORD, TarShardWriter, tar_size
from valor_data.split import SPLITS_FILE, SplitConfig, read_summary
from valor_data.table import write_table
from valor_data.workdir import Workdir, atomic_path

log = logging.getLogger(__name__)

SHARDS_DIR = "shards"
PARTS_DIR = ".parts"
INDEX_FILE = "index.parquet"
SUMS_FILE = "SHA256SUMS"
SHARD_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*-\d{6}\.tar$")
INDEX_SCHEMA = pa.schema([
    ("key", pa.string()), ("split", pa.string()), ("shard", pa.string()), ("member", pa.string()),
    ("header_offset", pa.int64()), ("offset", pa.int64()), ("size", pa.int64()), ("sha256", pa.string()),
])


@dataclass
class ShardRecord:
    """A finished shard as listed in ``<split>.shards.json``."""

    url: str
    nsamples: int
    filesize: int
    sha256: str


@dataclass
class BuildSummary:
    shards: dict[str, list[ShardRecord]] = field(default_factory=dict)
    written: int = 0
    skipped: int = 0
    bytes_written: int = 0

    def lines(self) -> list[str]:
        out = [f"shards written {self.written}, already complete {self.skipped}, "
               f"{self.bytes_written / 1e6:,.1f} MB written"]
        for split, records in self.shards.items():
            out.append(f"  {split}: {sum(r.nsamples for r in records):,} samples in {len(records)} shard(s), "
                       f"{sum(r.filesize for r in records) / 1e6:,.1f} MB")
        return out


def shards_dir(workdir: Workdir):
    return workdir.path(SHARDS_DIR)


def _digest(plan: ShardPlan, cfg: ShardConfig) -> str:
    """The plan's fingerprint, and the pre-sampling settings when they are on."""
    extra = presampled_fingerprint(cfg.presampled())
    return plan.digest if not extra else hashlib.sha256(f"{plan.digest}\n{extra}".encode()).hexdigest()


def _finished(plan: ShardPlan, out, cfg: ShardConfig) -> ShardRecord | None:
    """The record of ``plan``'s tar when it is already written from the same inputs."""
    tar, part = out / plan.name, out / PARTS_DIR / f"{plan.name}.parquet"
    if not (tar.exists() and part.exists()):
        return None
    try:
        meta = json.loads(pq.read_schema(part).metadata[b"valor"])
    except (OSError, pa.ArrowException, KeyError, TypeError, ValueError):
        return None
    if meta.get("digest") != _digest(plan, cfg) or tar.stat().st_size != meta.get("filesize"):
        return None
    return ShardRecord(plan.name, meta["nsamples"], meta["filesize"], meta["sha256"])


def _write(plan: ShardPlan, source: SampleSource, out, cfg: ShardConfig) -> ShardRecord:
    rows, settings, extra = [], cfg.presampled(), 0
    with atomic_path(out / plan.name) as tmp:
        writer = TarShardWriter(tmp)
        try:
            for sample in plan.samples(source):
                names = sample.names()
                members = [writer.add_file(names[0], sample.mp4), writer.add_file(names[1], sample.flac),
                           writer.add_bytes(names[2], sample.json), writer.add_bytes(names[3], sample.txt)]
                for name, data in presampled_members(sample, settings) if settings else []:
                    members.append(writer.add_bytes(name, data))
                    extra += tar_size([len(data)], [name])
                rows += [(sample.key, plan.split, plan.name, m.name.split(".", 1)[1], m.header_offset,
                          m.offset, m.size, m.sha256) for m in members]
            size, sha256 = writer.close()
        except BaseException:
            writer.abort()
            raise
        planned = _file_size(plan.size + extra)      # the plan counts the four base members
        if size != planned:
            raise ValorError(f"{plan.name}: wrote {size} bytes, planned {planned} (media changed?)")
    record = ShardRecord(plan.name, len(plan.keys), size, sha256)
    table = pa.Table.from_pylist([dict(zip(INDEX_SCHEMA.names, r, strict=True)) for r in rows], schema=INDEX_SCHEMA)
    meta = {"digest": _digest(plan, cfg), **asdict(record)}
    write_table(table.replace_schema_metadata({"valor": json.dumps(meta)}), out / PARTS_DIR / f"{plan.name}.parquet")
    log.info("wrote %s (%d samples, %.1f MB)", plan.name, record.nsamples, size / 1e6)
    return record


def _file_size(members: int) -> int:
    """A tar's size from its members' bytes (end blocks and record padding added)."""
    end = members + 2 * BLOCK
    return end + (-end) % RECORD


def _remove_stale(out, keep: set[str]) -> None:
    """Drop temp files of killed builds and shards no longer in the plan."""
    for path in [*out.glob(".*.tmp"), *(out / PARTS_DIR).glob(".*.tmp")]:
        path.unlink()
    for path in out.glob("*.tar"):
        if SHARD_RE.match(path.name) and path.name not in keep:
            log.info("removing stale shard %s", path.name)
            path.unlink()
    for path in (out / PARTS_DIR).glob("*.parquet"):
        if path.name[: -len(".parquet")] not in keep:
            path.unlink()


def plan_all(workdir: Workdir, cfg: ShardConfig, source: SampleSource) -> dict[str, list[ShardPlan]]:
    """Every split's shard plan, in the recipe's split order."""
    if not workdir.path(SPLITS_FILE).exists():
        raise ValorError(f"{workdir.path(SPLITS_FILE)} does not exist: run `valor-data split` first")
    split_cfg = SplitConfig(**read_summary(workdir).config)
    seed = split_cfg.seed if cfg.seed is None else cfg.seed
    table = pq.read_table(workdir.path(SPLITS_FILE), columns=["clip_id", "split"])
    plans = {}
    for split in split_cfg.split_names:
        keys = pc.filter(table.column("clip_id"), pc.equal(table.column("split"), split)).to_pylist()
        ordered = split_order(keys, split in split_cfg.pretrain_splits, seed)
        plans[split] = plan_split(source, split, ordered, cfg)
    return plans


def build_shards(workdir: Workdir, cfg: ShardConfig, pipeline: dict | None = None) -> BuildSummary:
    """Write (or finish) every shard, then the index, shard lists, exports and card."""
    with stage_lock(workdir, SHARDS_DIR):
        return _build(workdir, cfg, pipeline or {})


def _build(workdir: Workdir, cfg: ShardConfig, pipeline: dict) -> BuildSummary:
    source = SampleSource(workdir, cfg.captions)
    plans = plan_all(workdir, cfg, source)
    out = shards_dir(workdir)
    (out / PARTS_DIR).mkdir(parents=True, exist_ok=True)
    ordered = [p for split_plans in plans.values() for p in split_plans]
    _remove_stale(out, {p.name for p in ordered})
    summary = BuildSummary()

    def one(plan: ShardPlan) -> tuple[ShardRecord, bool]:
        record = _finished(plan, out, cfg)
        return (record, False) if record is not None else (_write(plan, source, out, cfg), True)

    with ThreadPoolExecutor(cfg.workers, thread_name_prefix="shard") as pool:
        results = dict(zip([p.name for p in ordered], pool.map(one, ordered), strict=True))
    records = {name: record for name, (record, _) in results.items()}
    summary.written = sum(written for _, written in results.values())
    summary.skipped = len(results) - summary.written
    summary.bytes_written = sum(r.filesize for r, written in results.values() if written)
    summary.shards = {split: [records[p.name] for p in split_plans] for split, split_plans in plans.items()}
    _write_lists(out, summary.shards, ordered)
    write_exports(workdir, out, cfg)
    write_card(workdir, out, cfg, summary.shards, pipeline)
    return summary


def _write_lists(out, shards: dict[str, list[ShardRecord]], ordered: list[ShardPlan]) -> None:
    """``index.parquet``, ``<split>.shards.json`` and ``SHA256SUMS``."""
    parts = [pq.read_table(out / PARTS_DIR / f"{p.name}.parquet") for p in ordered]
    index = pa.concat_tables(parts).replace_schema_metadata(None) if parts else INDEX_SCHEMA.empty_table()
    write_table(index, out / INDEX_FILE)
    for split, records in shards.items():
        doc = {"__kind__": "wids-shard-index-v1", "wids_version": 1, "name": split,
               "shardlist": [asdict(r) for r in records]}
        with atomic_path(out / f"{split}.shards.json") as tmp:
            tmp.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    with atomic_path(out / SUMS_FILE) as tmp:
        tmp.write_text("".join(f"{r.sha256}  {r.url}\n" for rs in shards.values() for r in rs), encoding="utf-8")
