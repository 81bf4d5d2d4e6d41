"""Clip ids: stable, unique, safe as a file name and as a WebDataset key.

A clip id only holds ``[A-Za-z0-9_-]`` (no dots: WebDataset splits a key at its first
dot). AudioSet clips use ``<YTID>_<start in ms>``; other sources get an ASCII slug of
their own id plus a short hash of the full identity, so that any id (Chinese file
names, ``../x``, ``;rm -rf``) maps to a safe, stable name.
"""

from __future__ import annotations

import hashlib
import re

from valor_data.errors import UnsafePathError

YTID_RE = re.compile(r"^[A-Za-z0-9_-]{11}$")
CLIP_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_SLUG_BAD = re.compile(r"[^A-Za-z0-9_-]+")


def is_youtube_id(value: str) -> bool:
    """True for an 11-character YouTube id (may start with '-' and contain '_')."""
    return bool(YTID_RE.match(value))


def audioset_clip_id(ytid: str, start_s: float) -> str:
    """``<YTID>_<start ms>``, e.g. ``--PJHxphWEs_30000``."""
    if not is_youtube_id(ytid):
        raise UnsafePathError(f"not a YouTube id: {ytid!r}")
    return f"{ytid}_{round(start_s * 1000)}"


def hashed_clip_id(identity: str, name: str) -> str:
    """A safe id for any source: ``<ASCII slug of name>_<12 hex of sha1(identity)>``.

    ``identity`` is everything that makes the clip unique (source, subset, id, times);
    ``name`` only makes the id readable (its file stem is slugged, may end up empty).
    """
    digest = hashlib.sha1(identity.encode("utf-8")).hexdigest()[:12]
    stem = name.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0].rsplit(".", 1)[0]
    slug = _SLUG_BAD.sub("_", stem).strip("_-")[:40]
    return f"{slug}_{digest}" if slug else digest


def valor_id(ytid: str, start_s: float, end_s: float) -> str:
    """VALOR's own id, ``<YTID>_<start>.000_<end>.000``."""
    return f"{ytid}_{start_s:.3f}_{end_s:.3f}"


def parse_valor_id(value: str) -> tuple[str, float, float]:
    """Split a VALOR id from the right (YouTube ids contain '_')."""
    parts = value.rsplit("_", 2)
    if len(parts) != 3:
        raise ValueError(f"not a VALOR id: {value!r}")
    ytid, start, end = parts
    if not is_youtube_id(ytid):
        raise ValueError(f"not a VALOR id (bad YouTube id): {value!r}")
    return ytid, float(start), float(end)


def check_clip_id(clip_id: str) -> str:
    """Return ``clip_id`` if it is safe as a file name and WebDataset key, else raise."""
    if not isinstance(clip_id, str) or not CLIP_ID_RE.match(clip_id):
        raise UnsafePathError(f"unsafe clip id: {clip_id!r}")
    return clip_id
