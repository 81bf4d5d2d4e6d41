"""AudioSet labels: the 527-class index and the 632-class ontology (with parents)."""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass, field

from valor_data.errors import ManifestError
from valor_data.sources.reading import load_json_file, open_lines

MID_RE = re.compile(r"^/[a-z]/[0-9a-z_]+$")


@dataclass
class Ontology:
    """MID -> name, the 527 labelled classes with their index, and the class tree."""

    names: dict[str, str] = field(default_factory=dict)
    index: dict[str, int] = field(default_factory=dict)      # the 527 classes of the CSVs
    children: dict[str, list[str]] = field(default_factory=dict)

    @property
    def known(self) -> bool:
        """False when no label file was given: MIDs can then only be checked for shape."""
        return bool(self.names)

    def parents(self, mid: str) -> list[str]:
        return [p for p, kids in self.children.items() if mid in kids]

    def name(self, mid: str) -> str:
        return self.names.get(mid, mid)


def load_ontology(labels_csv: str | os.PathLike | None = None,
                  ontology_json: str | os.PathLike | None = None) -> Ontology:
    """Read ``class_labels_indices.csv`` and/or ``ontology.json`` (either may be None)."""
    onto = Ontology()
    if ontology_json is not None:
        _read_ontology_json(ontology_json, onto)
    if labels_csv is not None:
        _read_class_index(labels_csv, onto)
    return onto


def _read_ontology_json(path: str | os.PathLike, onto: Ontology) -> None:
    """``ontology.json``: a list of ``{"id", "name", "child_ids"}`` objects."""
    nodes = load_json_file(path, "ontology")
    if not isinstance(nodes, list):
        raise ManifestError(f"{path}: cannot read ontology: expected a list of classes, found a "
                            f"{type(nodes).__name__}")
    for i, node in enumerate(nodes):
        ok = isinstance(node, dict) and isinstance(node.get("id"), str) and isinstance(node.get("name"), str)
        kids = node.get("child_ids", []) if ok else None
        if not ok or not isinstance(kids, list) or not all(isinstance(k, str) for k in kids):
            raise ManifestError(f"{path}: cannot read ontology: item {i} is not "
                                "{'id': str, 'name': str, 'child_ids': [str]}")
        onto.names[node["id"]] = node["name"]
        onto.children[node["id"]] = list(kids)


def _read_class_index(path: str | os.PathLike, onto: Ontology) -> None:
    """``class_labels_indices.csv``: ``index,mid,display_name``."""
    with open_lines(path) as lines:
        reader = csv.DictReader(lines)
        try:
            for row in reader:
                onto.index[row["mid"]] = int(row["index"])
                onto.names[row["mid"]] = row["display_name"]
        except (KeyError, ValueError, TypeError, csv.Error) as exc:
            raise ManifestError(f"{path}:{reader.line_num}: cannot read class index: "
                                f"{type(exc).__name__}: {exc}") from None
        bad = lines.bad_offset(1, reader.line_num)
        if bad is not None:
            raise ManifestError(f"{path}: cannot read class index: invalid UTF-8 at byte offset {bad}")
