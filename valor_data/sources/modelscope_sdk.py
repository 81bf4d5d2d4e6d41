"""Youku-mPLUG's files through the ModelScope SDK, an optional extra (``pip install valor-data[modelscope]``).

``fetch youku --modelscope`` downloads each manifest row's ``:FILE`` from the dataset
``modelscope/Youku-AliceMind`` with the SDK's dataset file download (which carries the login that
``modelscope login`` stored) into ``W/raw/youku/<:FILE>``; the fetch then reads them in place. A
file already there is not downloaded again, so a rerun resumes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from valor_data.errors import ManifestError
from valor_data.sources.youku import MODELSCOPE_DATASET

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'valor-data[modelscope]' (or pip install modelscope)"
LOGIN_HINT = ("run `modelscope login --token <token>` or set MODELSCOPE_API_TOKEN "
              "(the token is at https://modelscope.cn/my/myaccesstoken)")


@dataclass
class SdkDownload:
    """What one pass over the files did."""

    downloaded: int = 0
    present: int = 0
    failed: list[str] = field(default_factory=list)    # "<file>: <error>"

    def line(self) -> str:
        first = f" (first: {self.failed[0]})" if self.failed else ""
        return (f"modelscope: {self.downloaded:,} downloaded, {self.present:,} already present, "
                f"{len(self.failed):,} failed{first}")


def sdk():
    """The SDK's (ModelScopeConfig, dataset_file_download), both there since modelscope 1.16.1;
    ManifestError saying how to install it."""
    try:
        from modelscope.hub.api import ModelScopeConfig
        from modelscope.hub.file_download import dataset_file_download
    except ImportError as exc:
        raise ManifestError(f"--modelscope needs the ModelScope SDK, which cannot be imported ({exc}): "
                            f"{INSTALL_HINT}") from None
    return ModelScopeConfig, dataset_file_download


def check_login(config) -> None:
    """ManifestError unless a token or the cookies ``modelscope login`` stored are there."""
    if not os.environ.get("MODELSCOPE_API_TOKEN") and config.get_cookies() is None:
        raise ManifestError(f"--modelscope: not logged in to ModelScope: {LOGIN_HINT}")


def download_files(files: Iterable[str], root: Path, limit: int | None = None,
                   dataset: str = MODELSCOPE_DATASET, revision: str = "master") -> SdkDownload:
    """Download the missing ``files`` (``:FILE`` paths) under ``root``, at most ``limit`` of them.

    A file that fails is recorded and left missing: its clip then fails fetch as ``FileNotFound``,
    and ``fetch youku --modelscope --retry-failed FileNotFound`` tries it again.
    """
    config, download = sdk()
    check_login(config)
    done = SdkDownload()
    for file in files:
        if (root / file).is_file():
            done.present += 1
            continue
        if limit is not None and done.downloaded + len(done.failed) >= limit:
            break
        try:
            download(dataset, file, revision=revision, local_dir=str(root))
        except Exception as exc:   # noqa: BLE001 - the SDK raises its own, requests' and OS errors alike
            done.failed.append(f"{file}: {type(exc).__name__}: {exc}"[:300])
            log.warning("modelscope: %s", done.failed[-1])
            continue
        done.downloaded += 1
    return done
