"""The dataset card: ``W/shards/README.md`` with Hugging Face YAML front matter.

One ``configs`` entry per split (its tars as the data files), then counts, the
sample format, how to load it, the recipe and thresholds used, and licence notes. A Chinese
dataset (Youku-mPLUG) gets the card in Chinese first, then the same in English.
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
LICENCES_ZH = {
    "youku": ("Youku-mPLUG 由其作者按其自有条款发布，仅供研究使用；视频的版权归其在优酷上的所有者所有。"
              "使用或再分发这些分片之前，请阅读并遵守原始许可。"),
    "audioset": ("AudioSet 片段列表与标签由 Google 以 CC BY 4.0 发布；视频与音频摘自 YouTube，版权归上传者所有，"
                 "本说明不授予任何许可。"),
    "urls": "媒体来自所给的 URL 列表，适用其所有者的条款。",
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


def _overview(title: str, shards: dict, chinese: bool) -> list[str]:
    lines = ([] if chinese else [f"# {title}", ""]) + [
        "Built with valor-data. Every sample is one clip: `{key}.mp4` (H.264 + AAC, "
        "short side <= 360), `{key}.flac` (16 kHz mono), `{key}.json` (clip_id, valor_id, source, subset, "
        "video_id, url, start_s, end_s, labels, label_names, captions, caption_source, language, category, "
        "category_index, split, quality) and `{key}.txt` (the first caption, UTF-8). The key is the clip id."]
    if chinese:
        lines += ["", "Youku-mPLUG: `video_id` is the CSV's own file name (so every sample maps back to its "
                  "CSV row), `captions` hold the Chinese titles or captions and `.txt` the first of them, "
                  "byte for byte as published; `category` and `category_index` are the category's name and "
                  "its index among the 45 of `classname.json`. Each published subset is kept as one split; "
                  "broken, too short or too long, static and duplicate clips are filtered out (thresholds under "
                  "Recipe) with their reasons recorded in the work dir's tables."]
    return lines + [""] + _split_table(shards, "| split | samples | shards | bytes |")


def _split_table(shards: dict, header: str) -> list[str]:
    lines = [header, "|---|---:|---:|---:|"]
    for split, records in shards.items():
        lines.append(f"| {split} | {sum(r.nsamples for r in records):,} | {len(records)} | "
                     f"{sum(r.filesize for r in records):,} |")
    return lines + [""]


def _code(shards: dict) -> list[str]:
    example = next((split for split, records in shards.items() if records), "SPLIT")
    return ["```python", "import webdataset as wds",
            f"ds = wds.WebDataset(['{example}-000000.tar'])  # every url is in {example}.shards.json",
            "from datasets import load_dataset",
            f"ds = load_dataset('webdataset', data_files={{'{_hf_split(example, [])}': '{example}-*.tar'}}, "
            "streaming=True)", "```", ""]


def _chinese(title: str, shards: dict, sources: list[str]) -> list[str]:
    """The card's Chinese half (the English half follows it)."""
    intro = [f"# {title}", "", "[中文](#中文说明) | [English](#english)", "", "## 中文说明", "",
            "由 valor-data 构建。每个样本对应一个视频片段：`{key}.mp4`（H.264 + AAC，短边不超过 360）、"
            "`{key}.flac`（16 kHz 单声道）、`{key}.json`（clip_id、source、subset、video_id（即 CSV 中的文件名，"
            "可据此对回 CSV 的行）、url、captions（全部中文标题或描述）、language、category（类别名称）、"
            "category_index（在 45 个类别中的序号，与 classname.json 一致）、split、quality（过滤指标））和 "
            "`{key}.txt`（第一条中文标题或描述，UTF-8，与 CSV 中的文字逐字节一致）。键即片段 ID。", "",
            "发布的每个子集（预训练、分类、检索、描述的 train/val/test）原样作为一个划分；"
            "损坏、时长不合要求、静止画面和重复的片段已被过滤（阈值见英文部分的 Recipe），原因记录在工作目录的表中。", ""]
    loading = ["### 加载", ""] + _code(shards) + [
        "Hugging Face 用 torchcodec 解码 `mp4`/`flac`；若要原始字节，请为它们传入 `Value('binary')` 的 "
        "`features`。`index.parquet` 给出每个成员所在的分片、偏移、大小和 sha256；`SHA256SUMS` 可用 "
        "`sha256sum -c` 校验；`valor-data verify-splits` 会重新检查全部内容。", ""]
    licence = ["### 许可", ""] + [LICENCES_ZH.get(s, LICENCES_ZH["urls"]) for s in sources]
    return (intro + _split_table(shards, "| 划分 | 样本数 | 分片数 | 字节数 |") + loading + licence
            + ["", "## English", ""])


def _loading(shards: dict) -> list[str]:
    return ["## Loading", ""] + _code(shards) + [
            "Hugging Face decodes `mp4`/`flac` with torchcodec; to get raw bytes instead, pass `features` with "
            "`Value('binary')` for them. `index.parquet` gives every member's shard, byte offset, size and sha256 "
            "(random access); `<split>.shards.json` lists shards with sample counts and sha256; `SHA256SUMS` "
            "works with `sha256sum -c`; `valor-data verify-splits` rechecks all of it.", ""]


def _membership(official: dict) -> str:
    """One sentence saying where split membership came from."""
    if official.get("membership") != "official":
        how = official.get("membership", "drawn by seeded hash")
        return (f"Split membership: {how}" + (" (not VALOR's own files: scores are not comparable with the paper's)."
                                              if how == "drawn by seeded hash" else "."))
    parts = "; ".join(f"{name}: {p['in_split']:,} of {p['listed']:,} listed clips ({p['missing']:,} missing, "
                      f"{sum(p['rejected'].values()):,} rejected; see `splits_official.parquet`)"
                      for name, p in official["splits"].items())
    return f"Split membership: VALOR's official files, exactly (no clip replaced). {parts}."


def _recipe(summary, pipeline: dict, cfg: ShardConfig) -> list[str]:
    outcome = {"config": summary.config, "counts": summary.counts, "targets": summary.targets,
               "dropped": summary.reasons, "label_deviation": summary.label_deviation,
               "membership": summary.official}
    lines = ["## Recipe", "", _membership(summary.official), "", "Split settings and outcome (`splits.json`):", "",
             "```json",
             json.dumps(outcome, indent=1, ensure_ascii=False), "```", ""]
    stages = {k: v for k, v in pipeline.items() if isinstance(v, dict) and k in ("fetch", "filter")}
    stages["shards"] = asdict(cfg)
    return lines + ["Settings and thresholds of the other stages (fetch and filter as given in the pipeline YAML):",
                    "", "```yaml", yaml.safe_dump(stages, sort_keys=False, allow_unicode=True).rstrip(), "```", ""]


def _captions(workdir: Workdir, cfg: ShardConfig) -> list[str]:
    """Where each split's captions come from (``caption_source`` in every sample's json)."""
    from valor_data.curate.captions import caption_sources

    rows = [f"| {split} | {n['human']:,} | {n['pseudo']:,} | {n['none']:,} |"
            for split, n in caption_sources(workdir, cfg.captions).items()]
    return ["## Captions", "", f"Captions: `{cfg.captions}` (`human`: the manifest's; `pseudo`: generated by a "
            "trained model, `valor-data caption`, kept above its MGA score, see `pseudo_captions.parquet`; "
            "`both`: human where a clip has them). Each sample's json says which (`caption_source`).", "",
            "| split | human | pseudo | none |", "|---|---:|---:|---:|", *rows, ""]


def write_card(workdir: Workdir, out: Path, cfg: ShardConfig, shards: dict, pipeline: dict) -> Path:
    """Write ``out/README.md``."""
    summary = read_summary(workdir)
    sources, languages = _manifest_facts(workdir)
    meta = front_matter(cfg.title, languages, shards, SplitConfig(**summary.config).pretrain_splits,
                        "-".join(sources) + "-terms" if sources else "see-card")
    text = "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n\n"
    licence = ["## Licence", ""] + [LICENCES.get(s, LICENCES["urls"]) for s in sources] + [""]
    chinese = "zh" in languages
    head = _chinese(cfg.title, shards, sources) if chinese else []
    text += "\n".join(head + _overview(cfg.title, shards, chinese) + _captions(workdir, cfg) + _loading(shards)
                      + _recipe(summary, pipeline, cfg) + licence)
    with atomic_path(out / "README.md") as tmp:
        tmp.write_text(text, encoding="utf-8")
    return out / "README.md"
