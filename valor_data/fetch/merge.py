"""``valor-data merge W1 W2 ... -w W``: join fetch work dirs (one per machine or partition) into W.

Every source must hold the same manifest (``--partition i/N`` runs of one manifest do). For
each clip the sources' latest fetch rows are compared: an ``ok`` row whose media checks out
(the files exist and their sizes add up to the row's ``bytes``) wins over any other, the first
source in argument order wins a tie; with no ``ok`` row the first source's row is taken.
Conflicts are listed: a clip ok in two sources with different bytes (the first kept), a clip ok
in one and failed in another (ok kept), different failures, an ok row whose media is missing
or the wrong size (recorded ``failed_transient``/``MediaMissing`` when no other source has it,
so ``fetch --retry-failed`` in W fetches it again).

Media are hard-linked into ``W/media`` (copied across file systems, or always with
``link=False``), through a temp name and a rename, and their sizes checked. The rows go into
one new task table of W, so W is a fetch work dir like any other: ``fetch.parquet`` is
rebuilt, ``fetch --status``, ``fetch --retry-failed`` and ``filter`` work on it, and merging
the same sources again writes nothing (every clip lands in W exactly once).
"""

from __future__ import annotations

import errno
import filecmp
import hashlib
import json
import os
import shutil
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from valor_data.distribute import collect, read_results, stage_lock
from valor_data.distribute.tasks import Task, latest, task_dir
from valor_data.errors import ValorError
from valor_data.fetch.outcome import OK, TRANSIENT
from valor_data.fetch.run import _running
from valor_data.table import write_table
from valor_data.workdir import Workdir, atomic_path

STAGE = "fetch"
MEDIA = ("mp4", "flac")


@dataclass(frozen=True)
class Conflict:
    clip_id: str
    kind: str          # bytes | status | media
    detail: str


@dataclass
class MergeReport:
    """What a merge wrote and what it had to decide."""

    sources: list[str]
    written: Counter = field(default_factory=Counter)    # rows added to W, by status
    unchanged: int = 0                                    # clips W already held just so
    linked: int = 0
    copied: int = 0
    conflicts: list[Conflict] = field(default_factory=list)

    def lines(self, show: int = 20) -> list[str]:
        out = [f"merged {len(self.sources)} work dir(s): {sum(self.written.values()):,} clip(s) written "
               f"({', '.join(f'{k} {v:,}' for k, v in sorted(self.written.items())) or 'none'}), "
               f"{self.unchanged:,} already in place; media: {self.linked:,} linked, {self.copied:,} copied",
               f"conflicts: {len(self.conflicts):,}"]
        out += [f"  {c.kind:<7} {c.clip_id}: {c.detail}" for c in self.conflicts[:show]]
        if len(self.conflicts) > show:
            out.append(f"  ... {len(self.conflicts) - show:,} more in fetch/merge.json")
        return out


def merge_workdirs(sources: list[Workdir], target: Workdir, link: bool = True) -> MergeReport:
    """Merge the fetch results and media of ``sources`` into ``target``; return the report."""
    roots = [s.root for s in sources]
    if not sources or len(set(roots)) != len(roots) or target.root in roots:
        raise ValorError("merge needs distinct source work dirs, none of them the target")
    report = MergeReport([str(r) for r in roots])
    with stage_lock(target, STAGE):
        busy = [str(s.root) for s in sources if _running(s)]     # probed read-only: sources may be read-only
        if busy:
            raise ValorError(f"a fetch is running in {', '.join(busy)}: merge when it has finished")
        order = _agreed_manifest(sources, target)
        results = [_results(s) for s in sources]
        tables = [{r["clip_id"]: r for r in t.to_pylist()} for t in results]
        here = read_results(target, STAGE)
        held = {r["clip_id"]: r for r in latest(here).to_pylist()} if here is not None else {}
        rows = []
        for clip_id in order:
            candidates = [(s, t[clip_id]) for s, t in zip(sources, tables, strict=True) if clip_id in t]
            if candidates:
                source, row = _choose(clip_id, candidates, report)
                if row["status"] == OK:
                    _place(clip_id, row, source, target, link, report)
                if _same(held.get(clip_id), row, target):
                    report.unchanged += 1
                else:
                    rows.append(row)
        if rows:
            _write(target, rows, [t.schema for t in results] + ([here.schema] if here is not None else []))
            report.written.update(r["status"] for r in rows)
        collect(target, STAGE)
        with atomic_path(target.path(STAGE, "merge.json")) as tmp:
            tmp.write_text(json.dumps({**asdict(report), "written": dict(report.written)}, indent=1))
    return report


def _agreed_manifest(sources: list[Workdir], target: Workdir) -> list[str]:
    """The clip ids of the one manifest every source (and the target, if it has one) holds."""
    for workdir in sources:
        if not workdir.manifest.exists():
            raise ValorError(f"{workdir.root} has no manifest.parquet: not a fetch work dir")
    first = pq.read_table(sources[0].manifest)
    others = [s.manifest for s in sources[1:]] + ([target.manifest] if target.manifest.exists() else [])
    for path in others:
        other = pq.read_table(path)
        if not other.equals(first):
            ids, mine = set(other.column("clip_id").to_pylist()), set(first.column("clip_id").to_pylist())
            diff = sorted(ids ^ mine)
            what = f"clip {diff[0]} is in one only ({len(diff):,} such)" if diff else "the same clips, other fields"
            raise ValorError(f"the manifests differ: {path} and {sources[0].manifest} ({what})")
    if not target.manifest.exists():
        with atomic_path(target.manifest) as tmp:
            shutil.copyfile(sources[0].manifest, tmp)
    return first.column("clip_id").to_pylist()


def _results(workdir: Workdir) -> pa.Table:
    """The latest fetch row per clip of a source (from its task tables: fetch.parquet is derived)."""
    table = read_results(workdir, STAGE)
    if table is None:
        raise ValorError(f"{workdir.root} has no fetch results (W/fetch/tasks/*.parquet): fetch there first")
    return latest(table)


def _choose(clip_id: str, candidates: list[tuple[Workdir, dict]], report: MergeReport
            ) -> tuple[Workdir | None, dict]:
    """The first ok row whose media check out (else the first row); list the disagreements."""
    good, bad = [], []
    for workdir, row in candidates:
        if row["status"] == OK:
            (good if _media_ok(workdir, clip_id, row) else bad).append(workdir)
    for workdir in bad:
        report.conflicts.append(Conflict(clip_id, "media", f"ok in {workdir.root}, but its media are missing or "
                                         "not the row's bytes"))
    if bad and not good:
        return None, _missing(clip_id, next(r for w, r in candidates if w is bad[0]))
    chosen, row = next((w, r) for w, r in candidates if not good or w is good[0])
    for workdir, other in candidates:
        if workdir is chosen or workdir in bad:
            continue
        if other["status"] != row["status"]:
            report.conflicts.append(Conflict(clip_id, "status", f"{row['status']} in {chosen.root}, "
                                             f"{other['status']} in {workdir.root}: the {row['status']} row kept"))
        elif row["status"] == OK and _digest(workdir, clip_id) != _digest(chosen, clip_id):
            report.conflicts.append(Conflict(clip_id, "bytes", f"ok in {chosen.root} and {workdir.root} with "
                                             f"different media: {chosen.root}'s kept"))
    return chosen, dict(row)


def _missing(clip_id: str, row: dict) -> dict:
    """The row of an ok clip whose media no source has whole: fetch it again (--retry-failed)."""
    return {"clip_id": clip_id, "status": TRANSIENT, "error_class": "MediaMissing", "bytes": 0,
            "attempts": row.get("attempts"), "method": row.get("method"), "formats": row.get("formats"),
            "error": "merge: ok in a source work dir, but its media are missing or the wrong size there"}


def _digest(workdir: Workdir, clip_id: str) -> tuple:
    out = []
    for ext in MEDIA:
        path = workdir.media_path(clip_id, ext)
        out.append(hashlib.sha1(path.read_bytes()).hexdigest() if path.exists() else None)
    return tuple(out)


def _media_ok(workdir: Workdir, clip_id: str, row: dict) -> bool:
    """The row's media exist in ``workdir`` and add up to its ``bytes``."""
    mp4 = workdir.media_path(clip_id, "mp4")
    if not mp4.is_file():
        return False
    flac = workdir.media_path(clip_id, "flac")
    size = mp4.stat().st_size + (flac.stat().st_size if flac.is_file() else 0)
    return size == row["bytes"]


def _place(clip_id: str, row: dict, source: Workdir, target: Workdir, link: bool, report: MergeReport) -> None:
    """Link or copy the clip's media from ``source`` into ``target`` and check their sizes."""
    for ext in MEDIA:
        path, final = source.media_path(clip_id, ext), target.media_path(clip_id, ext)
        if path.is_file():
            _put(path, final, link, report)
        elif final.exists():
            final.unlink()
    if not _media_ok(target, clip_id, row):
        raise ValorError(f"{clip_id}: the media placed in {target.root} are not {row['bytes']:,} bytes")


def _put(source: Path, final: Path, link: bool, report: MergeReport) -> None:
    """``final`` becomes ``source``'s bytes (a hard link, else a copy) via a temp name and a rename."""
    if final.exists() and (os.path.samefile(source, final) or filecmp.cmp(source, final, shallow=False)):
        return
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        if link:
            try:
                os.link(source, tmp)
                report.linked += 1
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                    raise
                link = False
        if not link:
            shutil.copyfile(source, tmp)
            report.copied += 1
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def _same(held: dict | None, row: dict, target: Workdir) -> bool:
    """W already holds this outcome (and, for ok, media of the right size)."""
    if held is None or held["status"] != row["status"] or held.get("bytes") != row.get("bytes"):
        return False
    return row["status"] != OK or _media_ok(target, row["clip_id"], row)


def _write(target: Workdir, rows: list[dict], schemas: list[pa.Schema]) -> None:
    """The merged rows as W's next task table (in manifest order)."""
    folder = task_dir(target, STAGE)
    files = sorted(folder.glob("task-*.parquet")) if folder.exists() else []
    index = int(files[-1].stem.split("-")[1]) + 1 if files else 0
    schema = pa.unify_schemas(schemas, promote_options="permissive")
    write_table(pa.Table.from_pylist(rows, schema=schema), Task(STAGE, index, str(target.root), ()).result_path)
