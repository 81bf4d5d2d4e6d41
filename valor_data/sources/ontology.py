"""AudioSet labels: the 527-class index and the 632-class ontology (with parents)."""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from valor_data.errors import ManifestError

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
        try:
            nodes = json.loads(Path(ontology_json).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ManifestError(f"{ontology_json}: cannot read ontology: {exc}") from None
        for node in nodes:
            onto.names[node["id"]] = node["name"]
            onto.children[node["id"]] = list(node.get("child_ids", []))
    if labels_csv is not None:
        try:
            with open(labels_csv, encoding="utf-8-sig", newline="") as fh:
                for row in csv.DictReader(fh):
                    onto.index[row["mid"]] = int(row["index"])
                    onto.names[row["mid"]] = row["display_name"]
        except (OSError, KeyError, ValueError) as exc:
            raise ManifestError(f"{labels_csv}: cannot read class index: {exc}") from None
    return onto
