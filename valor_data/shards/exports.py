"""VALOR-compatible caption files next to the shards.

``desc_<name>.json``: ``[{"video_id", "desc"}]`` as VALOR releases them (the VALOR id
when the clip has one, else the clip id; ``desc`` is the caption, or a list when a
clip has several). ``caption_ref_<name>.json`` (every name but ``train``): a COCO
caption file (``images``, ``annotations`` with ``image_id``/``id``/``caption``) that
pycocoevalcap-style scorers read as the reference; each annotation also carries ``video_id``,
the key VALOR's own scorer reads (TXH-mercury/VALOR ``cococaption/pycocotools/coco.py``
indexes ``annotations`` by ``video_id``). Clips without captions are left out.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

from valor_data.shards.config import ShardConfig
from valor_data.split import SPLITS_FILE
from valor_data.workdir import Workdir, atomic_path

log = logging.getLogger(__name__)


def _dump(path: Path, doc) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def caption_rows(workdir: Workdir, split: str) -> list[tuple[str, list[str]]]:
    """``(video id for VALOR files, captions)`` of a split's clips, sorted by clip id."""
    splits = pq.read_table(workdir.path(SPLITS_FILE), columns=["clip_id", "split"])
    keys = pc.filter(splits.column("clip_id"), pc.equal(splits.column("split"), split))
    manifest = pq.read_table(workdir.manifest, columns=["clip_id", "valor_id", "captions"])
    rows = manifest.filter(pc.is_in(manifest.column("clip_id"), value_set=keys)).to_pylist()
    rows.sort(key=lambda r: r["clip_id"])
    return [(r["valor_id"] or r["clip_id"], r["captions"] or []) for r in rows]


def coco_reference(rows: list[tuple[str, list[str]]], name: str) -> dict:
    images, annotations = [], []
    for video_id, captions in rows:
        if captions:
            images.append({"id": video_id})
            annotations += [{"image_id": video_id, "video_id": video_id, "id": len(annotations) + i, "caption": c}
                            for i, c in enumerate(captions)]
    return {"info": {"description": f"caption reference for {name}"}, "licenses": [], "type": "captions",
            "images": images, "annotations": annotations}


def write_exports(workdir: Workdir, out: Path, cfg: ShardConfig) -> list[Path]:
    """Write the caption exports of every split named in ``cfg.exports``; return their paths."""
    written = []
    for split, name in cfg.exports.items():
        rows = caption_rows(workdir, split)
        if not rows:
            log.info("no clips in %s: no desc_%s.json", split, name)
            continue
        desc = [{"video_id": vid, "desc": caps[0] if len(caps) == 1 else caps} for vid, caps in rows if caps]
        _dump(out / f"desc_{name}.json", desc)
        written.append(out / f"desc_{name}.json")
        if name != "train":
            _dump(out / f"caption_ref_{name}.json", coco_reference(rows, name))
            written.append(out / f"caption_ref_{name}.json")
    return written
