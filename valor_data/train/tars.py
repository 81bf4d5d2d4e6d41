"""Reading shards that may be damaged: every problem names its shard (and clip) and is counted.

- ``shard_samples``: webdataset's tar reading, one shard at a time, with a ``handler=`` that
  collects what broke instead of raising; at the end of each shard one warning says how many
  clips it gave against its shard list's ``nsamples`` and why the rest is missing (a random
  or truncated tar, a damaged header that ends the tar early, a clip without its media).
- ``text_members``: the json/txt members of one tar (for vocabularies and the control).
- ``Received`` + ``check_complete``: evaluation counts the clips that reach it per shard and
  fails when more are missing than ``eval_max_missing`` allows.

Expected counts come from the ``<split>.shards.json`` beside the tars (``expected_samples``).
"""

from __future__ import annotations

import json
import logging
import tarfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from valor_data.errors import ValorError

log = logging.getLogger(__name__)

REQUIRED = ("mp4", "flac")          # a clip without these cannot be decoded at all
MAX_REASONS = 3


def expected_samples(urls: Iterable[str]) -> dict[str, int]:
    """``nsamples`` per tar path, from the shard lists (``*.shards.json``) in the tars' folders."""
    wanted = {str(Path(u).resolve()): u for u in urls}
    found: dict[str, int] = {}
    for folder in sorted({Path(u).parent for u in wanted}):
        for listing in sorted(folder.glob("*.shards.json")):
            try:
                entries = json.loads(listing.read_text(encoding="utf-8")).get("shardlist") or []
                sizes = {str((folder / e["url"]).resolve()): int(e["nsamples"]) for e in entries}
            except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
                log.warning("shard list %s is unreadable (%s): its shards are not counted", listing, exc)
                continue
            found.update({wanted[path]: n for path, n in sizes.items() if path in wanted})
    return found


def _reason(exn: BaseException) -> str:
    """An exception as one line, without the stream objects webdataset appends to its args."""
    first = " ".join(str(exn.args[0]).split(" @ ", 1)[0].split()) if exn.args else ""
    return f"{type(exn).__name__}: {first}" if first else type(exn).__name__


class ShardErrors:
    """A webdataset ``handler=`` for one shard: remember the error and carry on (webdataset then
    tries the next member, or gives up the shard when the tar itself cannot be read further)."""

    def __init__(self):
        self.reasons: list[str] = []

    def __call__(self, exn: BaseException) -> bool:
        self.reasons.append(_reason(exn))
        return True


def shard_samples(sources: Iterable[dict], expected: dict[str, int], select: Callable[[str], bool],
                  reported: set[str] | None = None) -> Iterator[dict]:
    """Complete samples (``REQUIRED`` members present) of each ``{"url"}`` in turn; a shard that
    is damaged or short of its listed ``nsamples`` is reported once (``reported``: urls done)."""
    import webdataset as wds

    reported = set() if reported is None else reported
    for source in sources:
        url, errors, good, partial = source["url"], ShardErrors(), 0, []
        opened = {"url": url}
        for sample in wds.tarfile_samples(iter([opened]), handler=errors, select_files=select):
            if all(ext in sample for ext in REQUIRED):
                good += 1
                yield sample
            else:
                partial.append(f"{sample['__key__']} (no {' or '.join(e for e in REQUIRED if e not in sample)})")
        if "stream" in opened:
            opened["stream"].close()
        if url not in reported and (errors.reasons or partial or expected.get(url, good) != good):
            reported.add(url)
            log.warning("%s", shard_report(url, good, expected.get(url), errors.reasons, partial))


def shard_report(url: str, good: int, expected: int | None, reasons: list[str], partial: list[str]) -> str:
    """One line: which shard, clips read against the shard list, and why the rest is missing."""
    of = f" of {expected}" if expected is not None else ""
    why = list(dict.fromkeys(reasons))[:MAX_REASONS]
    if partial:
        why.append(f"{len(partial)} clip(s) without media: {', '.join(partial[:MAX_REASONS])}")
    if not why and expected is not None and good < expected:
        why.append("the tar ends early (a damaged member header?)")
    if not why and expected is not None:
        why.append("more clips than its shard list says")
    return f"shard {Path(url).name}: read {good}{of} clips; skipped: {'; '.join(why)}"


def text_members(url: str, expected: int | None = None,
                 exts: tuple[str, ...] = ("json", "txt")) -> dict[str, dict[str, bytes]]:
    """{key: {ext: bytes}} of the ``exts`` members of one tar, media skipped over (seeking); a tar
    that cannot be read (further), or that holds fewer clips than ``expected``, gives what came
    before, with a warning naming it."""
    members: dict[str, dict[str, bytes]] = {}
    reasons = []
    try:
        with tarfile.open(url) as tar:
            for member in tar:
                key, _, ext = member.name.rsplit("/", 1)[-1].partition(".")
                if ext in exts and member.isreg():
                    members.setdefault(key, {})[ext] = tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        reasons.append(_reason(exc))
    if reasons or (expected is not None and len(members) != expected):
        log.warning("reading captions: %s", shard_report(url, len(members), expected, reasons, []))
    return members


class Received:
    """Batches passed through unchanged, counting the clips of each shard (``batch["shard"]``)."""

    def __init__(self, batches: Iterable[dict]):
        self.batches = batches
        self.per_shard: Counter = Counter()

    def __iter__(self) -> Iterator[dict]:
        for batch in self.batches:
            self.per_shard.update(batch["shard"])
            yield batch


def check_complete(urls: list[str], received: Counter, max_missing: float, limit: int = 0) -> dict:
    """Clips expected (shard lists), received and missing; ``ValorError`` when the missing share
    exceeds ``max_missing`` (a share of the expected clips). ``limit``: a deliberately cut evaluation."""
    expected = expected_samples(urls)
    total, read = sum(expected.values()), sum(received.values())
    short = {Path(u).name: f"{received.get(u, 0)} of {n}" for u, n in expected.items() if received.get(u, 0) < n}
    summary = {"expected": total, "received": read, "missing": max(0, total - read), "short_shards": short,
               "unlisted_shards": sorted(Path(u).name for u in urls if u not in expected)}
    if summary["unlisted_shards"]:
        log.warning("%d evaluation tars have no shard list beside them: missing clips cannot be counted there",
                    len(summary["unlisted_shards"]))
    if limit and read >= limit:
        return summary
    if total and summary["missing"] > max_missing * total:
        shown = ", ".join(f"{name} {got}" for name, got in list(short.items())[:MAX_REASONS])
        raise ValorError(f"evaluation read {read} of {total} clips: {summary['missing']} missing, more than "
                         f"eval_max_missing {max_missing:g} allows ({shown}); the warnings above say why")
    return summary
