"""Make sure the work dir has a manifest before fetching: reuse, copy one in, or build it.

``valor-data fetch audioset`` works from nothing: without ``W/manifest.parquet`` (and
without ``--manifest``) it downloads the official AudioSet metadata (or a mirror's copy)
and builds the clip table, exactly as ``valor-data manifest audioset --download`` does.
"""

from __future__ import annotations

import filecmp
import logging
import os
import shutil

from valor_data import manifest as lib
from valor_data.errors import ConfigError, ManifestError
from valor_data.sources import modelscope_sdk, youku
from valor_data.sources.audioset import YOUTUBE_URL
from valor_data.table import read_table
from valor_data.workdir import Workdir, atomic_path

log = logging.getLogger(__name__)

PathLike = str | os.PathLike


def use_manifest(workdir: Workdir, path: PathLike) -> None:
    """Copy an existing clip table to ``W/manifest.parquet`` (refusing to replace a different one)."""
    if not os.path.isfile(path):
        raise ManifestError(f"--manifest {path}: no such file")
    target = workdir.manifest
    if target.exists():
        if os.path.samefile(path, target) or filecmp.cmp(path, target, shallow=False):
            return
        raise ConfigError(f"{target} already holds another manifest; use a new work dir or remove it first")
    with atomic_path(target) as tmp:
        shutil.copyfile(path, tmp)
    log.info("copied %s to %s", path, target)


def audioset_manifest(workdir: Workdir, subsets: list[str], base_url: str | None = None,
                      url_template: str = YOUTUBE_URL) -> lib.ManifestSummary | None:
    """Build the AudioSet manifest from the official metadata unless the work dir has one."""
    if workdir.manifest.exists():
        log.info("using the existing %s", workdir.manifest)
        return None
    csvs, labels, ontology = lib.download_audioset(workdir, subsets, base_url)
    return lib.build_audioset(workdir, csvs, labels, ontology, url_template=url_template, check_expected=True)


def youku_manifest(workdir: Workdir, csvs: list[tuple[str | None, PathLike]], base_url: str | None
                   ) -> lib.ManifestSummary | None:
    """Build the Youku-mPLUG manifest from its CSVs unless the work dir has one. ``base_url``: a
    preset (``modelscope``), an http(s) mirror, or a local directory (files read in place)."""
    if workdir.manifest.exists():
        return None
    if not csvs:
        raise ManifestError(f"{workdir.manifest} does not exist: give the Youku-mPLUG CSVs and --base-url")
    return lib.build_youku(workdir, csvs, base_url or "")


def youku_modelscope(workdir: Workdir, csvs: list[tuple[str | None, PathLike]], base_url: str | None,
                     limit: int | None = None) -> modelscope_sdk.SdkDownload:
    """``fetch youku --modelscope``: the manifest's files come through the ModelScope SDK into
    ``W/raw/youku`` (the manifest's local base), the missing ones downloaded now (at most ``limit``)."""
    modelscope_sdk.sdk()                      # a missing SDK is said before anything is written
    if base_url:
        raise ConfigError("--modelscope downloads into WORKDIR/raw/youku: leave out --base-url")
    root = workdir.path("raw", "youku")
    root.mkdir(parents=True, exist_ok=True)
    youku_manifest(workdir, csvs, str(root))
    base = str(root.resolve())
    rows = read_table(workdir.manifest, columns=["video_id", "url"]).to_pylist()
    files = [r["video_id"] for r in rows if r["url"] == youku.file_url(base, r["video_id"])]
    if not files:
        raise ConfigError(f"{workdir.manifest} was not built for --modelscope (its files are not under {root})")
    done = modelscope_sdk.download_files(files, root, limit)
    log.info("%s", done.line())
    return done


def urls_manifest(workdir: Workdir, files: list[tuple[str | None, PathLike]]) -> lib.ManifestSummary | None:
    """Build the manifest from URL lists unless the work dir has one."""
    if workdir.manifest.exists():
        return None
    if not files:
        raise ManifestError(f"{workdir.manifest} does not exist: give URL list files")
    return lib.build_urls(workdir, files)
