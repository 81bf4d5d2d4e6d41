"""The shard-level checks of verify-splits: one sequential read of every tar feeds them all."""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

from valor_data.shards.build import INDEX_FILE, SHARDS_DIR
from valor_data.shards.checks import MAX_EXAMPLES, Check, Context, VerifyOptions
from valor_data.shards.decode import sample_problems
from valor_data.shards.samples import MEMBERS, is_presampled
from valor_data.shards.scan import Scan, ScannedMember, scan_tar
from valor_data.split.hashing import seeded_order


class _Decoder:
    """Collects the members of chosen samples during a scan and decodes each complete sample."""

    def __init__(self, split: str, chosen: set[str] | None):
        self.split, self.chosen = split, chosen
        self.pending: dict[str, dict[str, bytes]] = defaultdict(dict)
        self.problems: list[str] = []
        self.decoded = 0
        self._lock = threading.Lock()

    def want(self, key: str) -> bool:
        return self.chosen is None or key in self.chosen

    def add(self, member: ScannedMember, data: bytes) -> None:
        with self._lock:
            sample = self.pending[member.key]
            sample[member.ext] = data
            if not set(sample) >= set(MEMBERS):
                return
            del self.pending[member.key]
        problems = [f"{member.key}: {p}" for p in sample_problems(member.key, self.split, sample)]
        with self._lock:
            self.decoded += 1
            self.problems += problems


def _shard_lists(out: Path, splits: list[str], check: Check) -> dict[str, list[dict]]:
    """split -> its ``shards.json`` entries (a missing or unreadable list fails ``check``)."""
    lists = {}
    for split in splits:
        path = out / f"{split}.shards.json"
        try:
            lists[split] = json.loads(path.read_text(encoding="utf-8"))["shardlist"]
        except (OSError, ValueError, KeyError) as exc:
            check.fail(f"{path.name}: {exc}")
            lists[split] = []
    return lists


def _tars(out: Path, lists: dict[str, list[dict]]) -> list[tuple[str, Path, bool]]:
    """(split, path, listed) for every listed shard and every unlisted tar named like a split's shard."""
    found = []
    for split, entries in lists.items():
        listed = {e["url"] for e in entries}
        found += [(split, out / url, True) for url in listed]
        found += [(split, p, False) for p in out.glob(f"{split}-[0-9][0-9][0-9][0-9][0-9][0-9].tar")
                  if p.name not in listed]
    return sorted(found, key=lambda t: t[1].name)


def _chosen(keys: list[str], options: VerifyOptions) -> set[str] | None:
    return None if options.full else set(seeded_order(keys, 0)[: options.sample])


def run(ctx: Context, options: VerifyOptions) -> list[Check]:
    out = ctx.workdir.path(SHARDS_DIR)
    sums = Check("checksums", "shard sha256/size match the shard lists; member offsets/sizes/sha256 match index.parquet")
    lists = _shard_lists(out, ctx.cfg.split_names, sums)
    expected = defaultdict(list)
    for clip, split in zip(ctx.splits.column("clip_id").to_pylist(), ctx.splits.column("split").to_pylist(), strict=True):
        if split is not None:
            expected[split].append(clip)
    decoders = {s: _Decoder(s, _chosen(expected[s], options)) for s in ctx.cfg.split_names}
    tars = [(split, path, listed) for split, path, listed in _tars(out, lists) if path.exists() or listed]

    def scan(item: tuple[str, Path, bool]) -> Scan | None:
        split, path, _ = item
        return scan_tar(path, split, decoders[split].want, decoders[split].add) if path.exists() else None

    with ThreadPoolExecutor(options.workers) as pool:
        scans = list(pool.map(scan, tars))
    return [shards_vs_splits(expected, tars, scans), members(tars, scans, decoders, options),
            checksums(sums, out, lists, tars, scans)]


def shards_vs_splits(expected: dict[str, list[str]], tars, scans: list[Scan | None]) -> Check:
    check = Check("shards_vs_splits", "every shard sample is in its split in splits.parquet, and vice versa")
    seen: dict[str, str] = {}
    extra = duplicated = 0
    for (split, path, _), scan in zip(tars, scans, strict=True):
        allowed = set(expected.get(split, ()))
        for key in dict.fromkeys(m.key for m in (scan.members if scan else [])):
            if key in seen:
                duplicated += 1
                check.fail(f"{key} appears in {seen[key]} and again in {path.name}")
            seen[key] = path.name
            if key not in allowed:
                extra += 1
                check.fail(f"{key} is in {path.name} but not in split {split} of splits.parquet")
    missing = [(split, key) for split, keys in expected.items() for key in keys if key not in seen]
    for split, key in missing[:MAX_EXAMPLES]:
        check.fail(f"{key} of split {split} is in no shard")
    check.counts = {"expected": sum(map(len, expected.values())), "in_shards": len(seen), "missing": len(missing),
                    "extra": extra, "duplicated": duplicated}
    return check


def members(tars, scans: list[Scan | None], decoders: dict[str, _Decoder], options: VerifyOptions) -> Check:
    check = Check("members", "every sample has exactly " + ", ".join(MEMBERS) + (
        " and all decode" if options.full else f" and a seeded {options.sample} per split decode"))
    incomplete = 0
    for (_, path, _), scan in zip(tars, scans, strict=True):
        by_key: dict[str, list[str]] = defaultdict(list)
        for m in scan.members if scan else []:
            by_key[m.key].append(m.ext)
        for key, exts in by_key.items():
            if sorted(e for e in exts if not is_presampled(e)) != sorted(MEMBERS):
                incomplete += 1
                check.fail(f"{key} in {path.name} has members {', '.join(exts)}")
    problems = [p for d in decoders.values() for p in d.problems]
    for problem in problems:
        check.fail(problem)
    check.counts = {"incomplete": incomplete, "decoded": sum(d.decoded for d in decoders.values()),
                    "undecodable": len(problems)}
    return check


def _index_rows(out: Path) -> dict[str, set[tuple]]:
    """shard -> {(name, header_offset, offset, size, sha256)} from index.parquet."""
    table = pq.read_table(out / INDEX_FILE)
    names = pc.binary_join_element_wise(table.column("key"), table.column("member"), ".")
    rows = defaultdict(set)
    for shard, *row in zip(table.column("shard").to_pylist(), names.to_pylist(),
                           *(table.column(c).to_pylist() for c in ("header_offset", "offset", "size", "sha256")), strict=True):
        rows[shard].add(tuple(row))
    return rows


def checksums(check: Check, out: Path, lists, tars, scans: list[Scan | None]) -> Check:
    entries = {e["url"]: e for split_entries in lists.values() for e in split_entries}
    try:
        index = _index_rows(out)
    except OSError as exc:
        check.fail(f"{INDEX_FILE}: {exc}")
        index = {}
    bad = 0
    for (_, path, listed), scan in zip(tars, scans, strict=True):
        problems = _shard_problems(path.name, listed, entries.get(path.name), scan, index.pop(path.name, set()))
        bad += bool(problems)
        for problem in problems:
            check.fail(problem)
    for shard in sorted(index):
        check.fail(f"{INDEX_FILE} lists {shard}, which is no shard of this recipe")
    check.counts = {"shards": len(tars), "members": sum(len(s.members) for s in scans if s), "bad_shards": bad}
    return check


def _shard_problems(name: str, listed: bool, entry: dict | None, scan: Scan | None, indexed: set) -> list[str]:
    if scan is None:
        return [f"{name} is listed but missing"]
    if not listed:
        return [f"{name} is not in its split's shard list"]
    out = []
    if scan.error:
        out.append(f"{name}: {scan.error}")
    if (scan.filesize, scan.sha256) != (entry["filesize"], entry["sha256"]):
        out.append(f"{name}: sha256 {scan.sha256[:12]}.. / {scan.filesize} bytes, listed "
                   f"{entry['sha256'][:12]}.. / {entry['filesize']} bytes")
    if len({m.key for m in scan.members}) != entry.get("nsamples"):
        out.append(f"{name}: {len({m.key for m in scan.members})} samples, listed {entry.get('nsamples')}")
    actual = {(m.name, m.header_offset, m.offset, m.size, m.sha256) for m in scan.members}
    for member in sorted(actual ^ indexed)[:2]:
        where = "tar" if member in actual else INDEX_FILE
        out.append(f"{name}: member {member[0]} at {member[2]} ({member[3]} bytes, sha256 {member[4][:12]}..) "
                   f"only in the {where}")
    return out
