"""Reading untrusted metadata files: UTF-8 line by line, CSV rows that fail become rejects, bounded JSON.

A bad byte, an oversized CSV field or JSON nested past the parser's depth costs the row it is in
(a reject with file, line and reason), never the file; a file that cannot be read as a whole
raises ``ManifestError`` naming it (and the byte offset for UTF-8).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from valor_data.errors import ManifestError
from valor_data.sources.common import Collected


class Utf8Lines:
    """A binary file's lines as text (BOM dropped). A line that is not UTF-8 is decoded with
    surrogate escapes and its first bad byte's file offset kept, so its row can be rejected."""

    def __init__(self, fh) -> None:
        self.fh = fh
        self.bad: dict[int, int] = {}      # line number -> byte offset of its first invalid byte
        self._line = self._offset = 0

    def __iter__(self) -> Iterator[str]:
        for raw in self.fh:
            self._line += 1
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                self.bad[self._line] = self._offset + exc.start
                text = raw.decode("utf-8", "surrogateescape")
            if self._line == 1 and text.startswith("\ufeff"):
                text = text[1:]
            self._offset += len(raw)
            yield text

    def bad_offset(self, first: int, last: int) -> int | None:
        """The offset of the first invalid byte in lines ``first..last``, or None."""
        for line in range(first, last + 1):
            if line in self.bad:
                return self.bad[line]
        return None


@contextmanager
def open_lines(path: str | Path) -> Iterator[Utf8Lines]:
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise ManifestError(f"{path}: {exc.strerror}") from None
    with fh:
        yield Utf8Lines(fh)


def csv_header(reader: csv.DictReader, path: str | Path) -> list[str]:
    """The header of a ``DictReader`` (a header that cannot be parsed is a whole-file error)."""
    try:
        return list(reader.fieldnames or [])
    except csv.Error as exc:
        raise ManifestError(f"{path}:{reader.line_num}: cannot read the CSV header: {exc}") from None


def csv_rows(reader, lines: Utf8Lines, path: str | Path, collected: Collected, subset: str | None
             ) -> Iterator[tuple[int, Any]]:
    """(line, row) for each row the csv module can read; a csv error (a field over its size limit,
    a stray quote) or invalid UTF-8 in the row becomes a reject and reading goes on."""
    lines_read = getattr(reader, "reader", reader)       # a DictReader updates its line_num only on success
    last = lines_read.line_num
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            reason = "field_too_large" if "field larger" in str(exc) else "bad_csv"
            collected.reject(subset, str(path), lines_read.line_num, reason, str(exc), "")
            last = lines_read.line_num
            continue
        first, last = last + 1, lines_read.line_num
        offset = lines.bad_offset(first, last)
        if offset is not None:
            collected.reject(subset, str(path), last, "bad_utf8", f"invalid UTF-8 at byte offset {offset}", "")
            continue
        yield last, row


def parse_json(text: str) -> tuple[Any, str | None]:
    """(value, None), or (None, why) for text that is not JSON or nests past the parser's depth."""
    try:
        return json.loads(text), None
    except json.JSONDecodeError as exc:
        return None, f"not JSON: {exc.msg} at column {exc.colno}"
    except RecursionError:
        return None, "JSON nested too deeply"


def load_json_file(path: str | Path, what: str) -> Any:
    """A whole JSON file; ManifestError naming the file (and the byte offset of bad UTF-8)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read {what}: {exc.strerror}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{path}: cannot read {what}: invalid UTF-8 at byte offset {exc.start}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path}: cannot read {what}: not JSON: {exc.msg} "
                            f"(line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:
        raise ManifestError(f"{path}: cannot read {what}: JSON nested too deeply") from None
