"""What every source reader produces: clip rows and reject rows."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

import pyarrow as pa

from valor_data.errors import ManifestError
from valor_data.table import CLIP_SCHEMA, REJECT_SCHEMA, clip_row, to_table

_URL_BREAKERS = re.compile(r"[\x00-\x20\x7f]")


def url_problem(url: str) -> str | None:
    """Why a URL cannot be fetched as written: whitespace, CR/LF, NUL or another control character
    must be percent-encoded (a server or ffmpeg would read them as the end of the URL or a header)."""
    match = _URL_BREAKERS.search(url)
    return None if match is None else f"URL holds {match.group()!r} at position {match.start()}: {url[:80]!r}"


@dataclass
class Collected:
    """Clips (kept column-wise: millions of rows stay compact) and rejects, deduplicated."""

    source: str
    strict: bool = False
    rejects: list[dict] = field(default_factory=list)
    _columns: dict[str, list] = field(default_factory=lambda: {n: [] for n in CLIP_SCHEMA.names})
    _seen: dict[str, str] = field(default_factory=dict)

    @property
    def n_clips(self) -> int:
        return len(self._columns["clip_id"])

    def add_clip(self, origin: str, **fields) -> bool:
        """Add a clip unless its clip_id was seen; a duplicate becomes a reject."""
        row = clip_row(source=self.source, origin=origin, **fields)
        first = self._seen.get(row["clip_id"])
        if first is not None:
            file, _, line = origin.rpartition(":")
            self.reject(row["subset"], file, int(line), "duplicate_segment",
                        f"same clip as {first} ({row['clip_id']})", "")
            return False
        self._seen[row["clip_id"]] = origin
        for name, column in self._columns.items():
            column.append(row[name])
        return True

    def reject(self, subset: str | None, file: str, line: int, reason: str, detail: str,
               raw: str) -> None:
        """Record a row that cannot be trusted; fatal in strict mode (the reject is kept first, so
        ``rejects.parquet`` still says why)."""
        self.rejects.append(dict(source=self.source, subset=subset, file=file, line=line,
                                 reason=reason, detail=detail, raw=raw[:500]))
        if self.strict:
            raise ManifestError(f"{file}:{line}: {reason}: {detail}")

    def refuse(self, subset: str | None, file: str, detail: str) -> None:
        """Record a file that cannot be read as a whole (line 0)."""
        self.rejects.append(dict(source=self.source, subset=subset, file=file, line=0,
                                 reason="file_refused", detail=detail, raw=""))

    def reasons(self) -> Counter:
        return Counter(r["reason"] for r in self.rejects)

    def clip_table(self) -> pa.Table:
        return pa.table(self._columns, schema=CLIP_SCHEMA)

    def reject_table(self) -> pa.Table:
        return to_table(self.rejects, REJECT_SCHEMA)
