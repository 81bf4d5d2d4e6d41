"""The manifest stage: read a corpus's metadata into ``manifest.parquet`` + ``rejects.parquet``."""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from valor_data.errors import ManifestError
from valor_data.sources import audioset, urls, youku
from valor_data.sources.common import Collected
from valor_data.sources.download import download, load_descriptor, resolve_url
from valor_data.sources.ontology import load_ontology
from valor_data.sources.valor_captions import join_captions
from valor_data.table import read_table, write_table
from valor_data.workdir import Workdir

log = logging.getLogger(__name__)

PathLike = str | os.PathLike


@dataclass
class ManifestSummary:
    """What a manifest run read, kept and rejected."""

    rows_read: int = 0
    kept: int = 0
    rejected: Counter = field(default_factory=Counter)
    per_subset: Counter = field(default_factory=Counter)
    captions_matched: int = 0
    captions_unmatched: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"rows read {self.rows_read:,}  kept {self.kept:,}  rejected {sum(self.rejected.values()):,}"]
        out += [f"  warning: {w}" for w in self.warnings]
        out += [f"  subset {name}: {n:,}" for name, n in sorted(self.per_subset.items())]
        out += [f"  rejected {reason}: {n:,}" for reason, n in self.rejected.most_common()]
        if self.captions_matched or self.captions_unmatched:
            out.append(f"captions joined onto {self.captions_matched:,} clips; "
                       f"{len(self.captions_unmatched):,} caption ids matched no clip"
                       + (f" (e.g. {', '.join(self.captions_unmatched[:3])})" if self.captions_unmatched else ""))
        return out


def _finish(workdir: Workdir, collected: Collected, rows_read: int) -> ManifestSummary:
    if collected.n_clips == 0:
        write_table(collected.reject_table(), workdir.rejects)
        first = collected.rejects[0] if collected.rejects else None
        hint = (f" (first reject: {first['file']}:{first['line']} {first['reason']}; every reason in "
                f"{workdir.rejects})") if first else ""
        raise ManifestError(f"no usable rows{hint}")
    table = collected.clip_table()
    write_table(table, workdir.manifest)
    write_table(collected.reject_table(), workdir.rejects)
    summary = ManifestSummary(rows_read=rows_read, kept=table.num_rows, rejected=collected.reasons(),
                              per_subset=Counter(table.column("subset").to_pylist()))
    log.info("wrote %s (%d clips) and %s", workdir.manifest, table.num_rows, workdir.rejects)
    return summary


def _read_files(workdir: Workdir, collected: Collected, files: Iterable[tuple[str | None, PathLike]],
                read: Callable[[str | None, PathLike], int]) -> int:
    """``read`` each (subset, path); a file refused as a whole (or a strict-mode reject) still
    writes ``rejects.parquet`` with every reason found so far, then the error is raised."""
    rows = 0
    for subset, path in files:
        try:
            rows += read(subset, path)
        except ManifestError as exc:
            from_a_row = collected.strict and collected.rejects    # strict: the first reject raised
            if not from_a_row:
                collected.refuse(subset, str(path), str(exc))
            write_table(collected.reject_table(), workdir.rejects)
            raise ManifestError(f"{exc} (reasons so far in {workdir.rejects})") from None
    return rows


def download_audioset(workdir: Workdir, subsets: list[str], base_url: str | None = None
                      ) -> tuple[dict[str, Path], Path, Path]:
    """Fetch the official segment CSVs, class index and ontology into ``W/raw/audioset``.

    Each segment file is checked against the descriptor's row count (and the
    ``num_segs=`` its header declares, when reading it), so a truncated download fails.
    """
    desc = load_descriptor("audioset")
    raw = workdir.path("raw", "audioset")
    unknown = sorted(set(subsets) - set(desc["segments"]))
    if unknown:
        raise ManifestError(f"unknown AudioSet subset(s) {unknown}; known: {sorted(desc['segments'])}")
    csvs = {}
    for subset in subsets:
        entry = desc["segments"][subset]
        csvs[subset] = download(resolve_url(entry["url"], base_url), raw / entry["file"])
    labels = download(resolve_url(desc["labels"]["url"], base_url), raw / desc["labels"]["file"])
    onto = download(resolve_url(desc["ontology"]["url"], base_url), raw / desc["ontology"]["file"])
    return csvs, labels, onto


def build_audioset(workdir: Workdir, csvs: Mapping[str, PathLike] | Iterable[tuple[str, PathLike]],
                   labels: PathLike | None = None, ontology: PathLike | None = None,
                   captions: list[PathLike] = (), url_template: str = audioset.YOUTUBE_URL,
                   strict: bool = False, check_expected: bool = False) -> ManifestSummary:
    """AudioSet segment CSVs (``{subset: path}`` or (subset, path) pairs: two files of one subset
    are both read, a segment in both kept once) -> the clip table, captions joined if given.

    A header's ``num_segs=`` that disagrees with the rows is a warning (a subset of an official
    file keeps its header), fatal with ``strict`` or ``check_expected``. With ``check_expected``
    (downloads) a subset's only file is also checked against the row count in
    ``manifests/audioset.yaml``, so a truncated copy is caught either way.
    """
    onto = load_ontology(labels, ontology)
    if not onto.known:
        log.warning("no class index or ontology given: MIDs are checked for shape only")
    pairs = list(csvs.items() if isinstance(csvs, Mapping) else csvs)
    expected = {k: v["rows"] for k, v in load_descriptor("audioset")["segments"].items()} if check_expected else {}
    files_per_subset = Counter(subset for subset, _ in pairs)
    collected, warnings = Collected("audioset", strict=strict), []

    def read(subset: str, path: PathLike) -> int:
        rows, declared = audioset.read_segments(path, collected, onto, subset, url_template)
        if declared is not None and declared != rows:
            message = f"{path}: header declares num_segs={declared} but the file holds {rows} rows"
            if strict or check_expected:
                raise ManifestError(message + " (truncated or altered download?)")
            warnings.append(message + " (read all of them; --strict refuses such a file)")
            log.warning("%s", warnings[-1])
        want = expected.get(subset) if files_per_subset[subset] == 1 else None
        if declared is None and want is not None and rows != want:
            raise ManifestError(f"{path}: expected {want:,} rows for {subset}, found {rows:,} (truncated?)")
        return rows

    rows_read = _read_files(workdir, collected, pairs, read)
    summary = _finish(workdir, collected, rows_read)
    summary.warnings = warnings
    if captions:
        joined = join_valor_captions(workdir, list(captions))
        summary.captions_matched = joined.captions_matched
        summary.captions_unmatched = joined.captions_unmatched
    return summary


def join_valor_captions(workdir: Workdir, paths: list[PathLike]) -> ManifestSummary:
    """Join VALOR caption files onto the work dir's existing manifest."""
    if not workdir.manifest.exists():
        raise ManifestError(f"{workdir.manifest} does not exist: build the AudioSet manifest first")
    joined = join_captions(read_table(workdir.manifest), paths)
    if joined.malformed:
        log.warning("%d caption ids are not VALOR ids, e.g. %s", len(joined.malformed), joined.malformed[:3])
    write_table(joined.table, workdir.manifest)
    return ManifestSummary(rows_read=joined.table.num_rows, kept=joined.table.num_rows,
                           captions_matched=joined.matched, captions_unmatched=joined.unmatched)


def build_youku(workdir: Workdir, csvs: list[tuple[str | None, PathLike]], base_url: str,
                strict: bool = False) -> ManifestSummary:
    """Youku-mPLUG CSVs (``(subset or None, path)``; subset from the file name) -> clip table.
    ``base_url``: a preset (``modelscope``), an http(s) URL or a local directory."""
    base = youku.resolve_base(base_url)
    collected = Collected("youku", strict=strict)
    rows_read = _read_files(workdir, collected, csvs,
                            lambda subset, path: youku.read_youku_csv(path, collected, base, subset))
    return _finish(workdir, collected, rows_read)


def build_urls(workdir: Workdir, files: list[tuple[str | None, PathLike]], strict: bool = False
               ) -> ManifestSummary:
    """URL lists (``(subset or None, path)``; default subset ``urls``) -> clip table."""
    collected = Collected("urls", strict=strict)
    rows_read = _read_files(workdir, collected, files,
                            lambda subset, path: urls.read_url_list(path, collected, subset or "urls"))
    return _finish(workdir, collected, rows_read)
