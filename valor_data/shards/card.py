"""The dataset card: ``W/shards/README.md`` with Hugging Face YAML front matter.

One ``configs`` entry per split (its tars as the data files), then counts, the
sample format, how to load it, the recipe and thresholds used, and licence notes.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

from valor_data.shards.config import ShardConfig
from valor_data.split import SplitConfig, read_summary
from valor_data.workdir import Workdir, atomic_path

LICENCES = {
    "audioset": (
        "The AudioSet segment lists and labels are published by Google under CC BY 4.0. The video "
        "and audio are excerpts of YouTube videos: their copyright stays with the uploaders and this "
        "card grants no licence to them. Check that your use (research, fair use or dealing where you "
        "are) is permitted, honour takedown requests, and remove clips whose videos were deleted. "
        "VALOR captions come under the VALOR authors' terms."),
    "youku": (
        "Youku-mPLUG is released by its authors for research use under their own terms; the videos "
        "remain the property of their owners on Youku. Read and follow the original licence before "
        "using or redistributing these shards."),
    "urls": "The media come from the URL lists given; their owners' terms apply.",
}
HF_SPLITS = {"train": "train", "val": "validation", "test": "test"}


def _hf_split(split: str, pretrain: list[str]) -> str:
    return "train" if split in pretrain else HF_SPLITS.get(split.rsplit("-", 1)[-1], "train")


def front_matter(title: str, languages: list[str], shards: dict, pretrain: list[str], license_name: str) -> dict:
    configs = [{"config_name": split, "data_files": [{"split": _hf_split(split, pretrain), "path": f"{split}-*.tar"}]}
               for split, records in shards.items() if records]
    total = sum(r.nsamples for records in shards.values() for r in records)
    size = next(s for n, s in [(1e3, "n<1K"), (1e4, "1K<n<10K"), (1e5, "10K<n<100K"), (1e6, "100K<n<1M"),
                               (float("inf"), "1M<n<10M")] if total < n)
    return {"pretty_name": title, "license": "other", "license_name": license_name, "language": languages or ["en"],
            "task_categories": ["video-text-to-text", "audio-classification"], "size_categories": [size],
            "tags": ["webdataset", "video", "audio", "captioning"], "configs": configs}


def _manifest_facts(workdir: Workdir) -> tuple[list[str], list[str]]:
    table = pq.read_table(workdir.manifest, columns=["source", "language"])
    sources = sorted(s for s in pc.unique(table.column("source")).to_pylist() if s)
    languages = sorted(s for s in pc.unique(table.column("language")).to_pylist() if s)
    return sources, languages


def _overview(title: str, shards: dict) -> list[str]:
    lines = [f"# {title}", "", "Built with valor-data. Every sample is one clip: `{key}.mp4` (H.264 + AAC, "
             "short side <= 360), `{key}.flac` (16 kHz mono), `{key}.json` (clip_id, valor_id, source, subset, "
             "video_id, url, start_s, end_s, labels, label_names, captions, language, category, category_index, "
             "split, quality) and `{key}.txt` (the first caption, UTF-8). The key is the clip id.", "",
             "| split | samples | shards | bytes |", "|---|---:|---:|---:|"]
    for split, records in shards.items():
        lines.append(f"| {split} | {sum(r.nsamples for r in records):,} | {len(records)} | "
                     f"{sum(r.filesize for r in records):,} |")
    return lines + [""]


def _loading(shards: dict) -> list[str]:
    example = next((split for split, records in shards.items() if records), "SPLIT")
    return ["## Loading", "", "```python", "import webdataset as wds",
            f"ds = wds.WebDataset(['{example}-000000.tar'])  # every url is in {example}.shards.json",
            "from datasets import load_dataset",
            f"ds = load_dataset('webdataset', data_files={{'{_hf_split(example, [])}': '{example}-*.tar'}}, "
            "streaming=True)", "```", "",
            "Hugging Face decodes `mp4`/`flac` with torchcodec; to get raw bytes instead, pass `features` with "
            "`Value('binary')` for them. `index.parquet` gives every member's shard, byte offset, size and sha256 "
            "(random access); `<split>.shards.json` lists shards with sample counts and sha256; `SHA256SUMS` "
            "works with `sha256sum -c`; `valor-data verify-splits` rechecks all of it.", ""]


def _recipe(summary, pipeline: dict, cfg: ShardConfig) -> list[str]:
    outcome = {"config": summary.config, "counts": summary.counts, "targets": summary.targets,
               "dropped": summary.reasons, "label_deviation": summary.label_deviation}
    lines = ["## Recipe", "", "Split settings and outcome (`splits.json`):", "", "```json",
             json.dumps(outcome, indent=1, ensure_ascii=False), "```", ""]
    stages = {k: v for k, v in pipeline.items() if isinstance(v, dict) and k in ("fetch", "filter")}
    stages["shards"] = asdict(cfg)
    return lines + ["Settings and thresholds of the other stages (fetch and filter as given in the pipeline YAML):",
                    "", "```yaml", yaml.safe_dump(stages, sort_keys=False, allow_unicode=True).rstrip(), "```", ""]


def write_card(workdir: Workdir, out: Path, cfg: ShardConfig, shards: dict, pipeline: dict) -> Path:
    """Write ``out/README.md``."""
    summary = read_summary(workdir)
    sources, languages = _manifest_facts(workdir)
    meta = front_matter(cfg.title, languages, shards, SplitConfig(**summary.config).pretrain_splits,
                        "-".join(sources) + "-terms" if sources else "see-card")
    text = "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n\n"
    licence = ["## Licence", ""] + [LICENCES.get(s, LICENCES["urls"]) for s in sources] + [""]
    text += "\n".join(_overview(cfg.title, shards) + _loading(shards) + _recipe(summary, pipeline, cfg) + licence)
    with atomic_path(out / "README.md") as tmp:
        tmp.write_text(text, encoding="utf-8")
    return out / "README.md"
