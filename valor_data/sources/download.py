"""Fetch a corpus's official metadata files (descriptors in ``manifests/*.yaml``)."""

from __future__ import annotations

import logging
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from valor_data.errors import ManifestError
from valor_data.workdir import atomic_path

log = logging.getLogger(__name__)


def descriptor_dir() -> Path:
    """``manifests/`` beside the package (``$VALOR_MANIFESTS`` overrides)."""
    return Path(os.environ.get("VALOR_MANIFESTS") or Path(__file__).resolve().parents[2] / "manifests")


def load_descriptor(name: str) -> dict[str, Any]:
    path = descriptor_dir() / f"{name}.yaml"
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"no corpus descriptor {path} (set VALOR_MANIFESTS to the manifests/ folder)") from None


def resolve_url(url: str, base_url: str | None) -> str:
    """The descriptor's URL, or the same file name under ``base_url`` (a mirror or loopback copy)."""
    return base_url.rstrip("/") + "/" + url.rsplit("/", 1)[-1] if base_url else url


def download(url: str, dest: Path, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` atomically; a short body (Content-Length) is an error."""
    if not url.startswith(("http://", "https://")):
        raise ManifestError(f"refusing to download a non-http URL: {url}")
    log.info("downloading %s", url)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, atomic_path(dest) as tmp:
            expected = resp.headers.get("Content-Length")
            with open(tmp, "wb") as out:
                shutil.copyfileobj(resp, out, 1 << 20)
            got = tmp.stat().st_size
            if expected is not None and int(expected) != got:
                raise ManifestError(f"{url}: truncated download ({got} of {expected} bytes)")
    except urllib.error.HTTPError as exc:
        raise ManifestError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise ManifestError(f"{url}: download failed: {getattr(exc, 'reason', exc)}") from None
    return dest
