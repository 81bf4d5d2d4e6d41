"""Make a labelled synthetic corpus: clean clips, defective clips, truth and manifests.

Output folder::

    OUT/media/<video_id>.<ext>          source videos (longer than their segment by default)
    OUT/truth.jsonl                     one line per clip: content, caption, kind (clean or defect)
    OUT/<subset>_segments.csv           AudioSet official layout (comment lines, num_segs=)
    OUT/valor_captions.json             VALOR desc form: [{"video_id": <valor_id>, "desc": caption}]
    OUT/class_labels_indices.csv, OUT/ontology.json   the AudioSet classes the sounds use

Video ids look like YouTube ids (11 characters of ``[A-Za-z0-9_-]``, some starting with
``-``), so the corpus goes through the AudioSet code paths unchanged.

With ``lang="zh"`` the corpus is laid out like Youku-mPLUG instead: whole clips named
``videos/<category> 片段NNNN.<ext>`` (Chinese and a space, as real file names have), Chinese
titles and captions, a category per clip (from its sound, so it is learnable), and the
published CSVs (``pretrain.csv``, ``classification_*.csv`` with some empty labels and some labels
given as the category index, ``retrieval_*.csv``, ``captioning_*.csv`` whose val/test captions are
list literals). Some titles carry what real ones do and a careless reader would change: leading
and trailing spaces, an ideographic space, quotes and commas, full-width brackets, an emoji
(``title_zh`` in truth.jsonl is the text exactly as published). ``checksums="sha256"`` (or md5,
sha1) adds that column to every CSV, as a mirror might.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import random
import string
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from tqdm import tqdm

from valor_data.ids import valor_id
from valor_data.sources.youku import CATEGORY_INDEX
from valor_data.synth import defects
from valor_data.synth.content import SOUNDS, Content, random_content
from valor_data.synth.render import EXTENSIONS, RenderSpec

log = logging.getLogger(__name__)

_ID_CHARS = string.ascii_letters + string.digits + "-_"
# (container, video codec, audio codec, sample rate) combinations a clean clip may use
FORMATS = {
    "mp4": [("mp4", "h264", "aac", 44100)],
    "varied": [("mp4", "h264", "aac", 44100), ("mp4", "h264", "aac", 48000), ("mp4", "mpeg4", "mp3", 44100),
               ("matroska", "h264", "opus", 48000), ("webm", "vp9", "opus", 48000),
               ("matroska", "mpeg4", "vorbis", 32000)],
}
SIZES = [(320, 240), (426, 240), (480, 270), (480, 360)]
# Youku-mPLUG categories the synthetic Chinese set uses, decided by the sound
YOUKU_CATEGORY = {"beep": "科技", "hum": "汽车", "siren": "纪录片", "tick": "生活百科",
                  "white_noise": "游戏", "pink_noise": "旅游"}
YOUKU_SUBSETS = {"pretrain": 3.0, "classification_train": 3.0, "classification_val": 1.0,
                 "classification_test": 1.0, "retrieval_train": 1.0, "retrieval_test": 1.0,
                 "captioning_train": 1.0, "captioning_val": 1.0, "captioning_test": 1.0}
# how some published titles look around the caption (by clip number): text a reader must not touch
TITLE_FORMS = ["{}", "{} 🎬", " {}", '{}, "1080P"', "{}\u3000", "{}", "【原创】{}（高清）", "{}"]


@dataclass
class SynthConfig:
    """What to make. Defects are ``{name: count}`` with names from ``defects.DEFECTS``."""

    clips: int = 50
    defects: dict[str, int] = field(default_factory=dict)
    seed: int = 0
    source_seconds: tuple[float, float] = (30.0, 60.0)
    segment_seconds: float = 10.0
    short_fraction: float = 0.1          # clean clips whose segment ends early at the end of the source
    formats: str = "mp4"                 # mp4 | varied
    size: tuple[int, int] | None = None  # (width, height) of every clean clip (default: varied, 320x240+)
    fps: float | None = None             # frame rate of every clean clip (default: 24, 25 or 30)
    checksums: str | None = None         # zh: add this checksum column (md5 | sha1 | sha256) to the CSVs
    subsets: dict[str, float] | None = None   # default: balanced_train (en) or YOUKU_SUBSETS (zh)
    lang: str = "en"                     # en: AudioSet layout; zh: Youku-mPLUG layout
    workers: int = 0                     # 0: one per CPU
    linked_sound: bool = True            # the sound follows the shape and colour (the picture predicts the sound)

    def __post_init__(self):
        if self.lang not in ("en", "zh"):
            raise ValueError("lang must be 'en' (AudioSet layout) or 'zh' (Youku-mPLUG layout)")
        if self.subsets is None:
            self.subsets = dict(YOUKU_SUBSETS) if self.lang == "zh" else {"balanced_train": 1.0}
        unknown = set(self.defects) - set(defects.DEFECTS)
        if unknown:
            raise ValueError(f"unknown defect(s) {sorted(unknown)}; known: {', '.join(defects.DEFECTS)}")
        if self.formats not in FORMATS:
            raise ValueError(f"formats must be one of {sorted(FORMATS)}")
        if self.checksums not in (None, "md5", "sha1", "sha256"):
            raise ValueError("checksums must be md5, sha1 or sha256")


@dataclass
class SynthClip:
    """One clip of the corpus and everything known about it (a line of truth.jsonl)."""

    video_id: str
    file: str
    kind: str                     # "clean" or a defect name
    subset: str
    start_s: float
    end_s: float
    source_seconds: float
    caption: str
    caption_zh: str
    label: str
    label_name: str
    content: dict
    render: dict
    duplicate_of: str | None = None
    category: str | None = None          # zh (Youku) sets: the category of the clip
    label_blank: bool = False            # zh: published with an empty label (a reject)
    title_zh: str | None = None          # zh: the title or caption exactly as the CSV publishes it
                                         # (captioning val/test publish a list literal instead)

    @property
    def valor_id(self) -> str:
        return valor_id(self.video_id, self.start_s, self.end_s)


def _video_id(rng: random.Random, used: set[str]) -> str:
    while True:
        vid = "".join(rng.choice(_ID_CHARS) for _ in range(11))
        if rng.random() < 0.1:
            vid = "-" + vid[1:]
        if vid not in used:
            used.add(vid)
            return vid


def _segment(rng: random.Random, cfg: SynthConfig, kind: str) -> tuple[float, float, float]:
    """(source length, start, end) in whole seconds; whole files for the Youku layout."""
    lo, hi = cfg.source_seconds
    seg = cfg.segment_seconds
    source = float(rng.randint(int(max(lo, seg)), int(max(hi, seg))))
    if cfg.lang == "zh":
        source = float(rng.randint(2, 4)) if kind == "too_short" else source
        return source, 0.0, source
    start = float(rng.randint(0, int(source - seg)))
    if kind == "too_short":
        return float(start + rng.randint(2, 4)), start, start + seg
    if kind == "clean" and source > seg and rng.random() < cfg.short_fraction:
        start = source - rng.randint(4, int(seg) - 1)
        return source, start, source
    return source, start, start + seg


def _plan(cfg: SynthConfig) -> list[tuple[SynthClip, RenderSpec]]:
    rng = random.Random(cfg.seed)
    kinds = ["clean"] * cfg.clips + [d for d, n in sorted(cfg.defects.items()) for _ in range(n)]
    rng.shuffle(kinds)
    subsets = list(cfg.subsets)
    weights = [cfg.subsets[s] for s in subsets]
    used: set[str] = set()
    plan = []
    for i, kind in enumerate(kinds):
        content: Content = random_content(rng, cfg.linked_sound)
        container, vcodec, acodec, rate = rng.choice(FORMATS[cfg.formats])
        width, height = rng.choice(SIZES)
        width, height = cfg.size or (width, height)
        source, start, end = _segment(rng, cfg, kind)
        fps = float(rng.choice([24, 25, 30]))
        spec = RenderSpec(content=content, duration=source, width=width, height=height,
                          fps=cfg.fps or fps, vcodec=vcodec, acodec=acodec,
                          container=container, sample_rate=rate, channels=rng.choice([1, 2]),
                          seed=cfg.seed * 100_003 + i)
        spec = defects.adjust_spec(kind, spec)
        ext = EXTENSIONS[spec.container]
        category = YOUKU_CATEGORY[content.sound] if cfg.lang == "zh" else None
        if cfg.lang == "zh":
            vid = file = f"videos/{category} 片段{i:04d}.{ext}"
        else:
            vid = _video_id(rng, used)
            file = f"media/{vid}.{ext}"
        mid, name = content.label
        subset = rng.choices(subsets, weights)[0]
        clip = SynthClip(video_id=vid, file=file, kind=kind, subset=subset, start_s=start, end_s=end,
                         source_seconds=source, caption=content.caption("en"),
                         caption_zh=content.caption("zh"), label=mid, label_name=name,
                         content=content.as_dict(), render=_render_dict(spec), category=category,
                         label_blank=subset.startswith("classification") and i % 10 == 9,
                         title_zh=TITLE_FORMS[i % len(TITLE_FORMS)].format(content.caption("zh"))
                         if cfg.lang == "zh" else None)
        plan.append((clip, spec))
    return _link_duplicates(plan, rng)


def _render_dict(spec: RenderSpec) -> dict:
    out = asdict(spec)
    out.pop("content")
    return out


def _link_duplicates(plan: list[tuple[SynthClip, RenderSpec]], rng: random.Random):
    """Point each duplicate at a clean original and copy its content, caption and segment."""
    originals = [c for c, _ in plan if c.kind == "clean"]
    out = []
    for clip, spec in plan:
        if clip.kind in defects.DUPLICATES:
            if not originals:
                raise ValueError("duplicates need at least one clean clip to copy")
            orig = rng.choice(originals)
            clip = replace(clip, duplicate_of=orig.video_id, caption=orig.caption, caption_zh=orig.caption_zh,
                           title_zh=orig.title_zh,
                           label=orig.label, label_name=orig.label_name, content=orig.content,
                           category=orig.category, start_s=orig.start_s, end_s=orig.end_s,
                           source_seconds=orig.source_seconds)
        out.append((clip, spec))
    return out


def make_corpus(out: str | os.PathLike, cfg: SynthConfig) -> list[SynthClip]:
    """Render the corpus into ``out`` and write truth and manifests; return the clips."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plan = _plan(cfg)
    by_id = {clip.video_id: (clip, spec) for clip, spec in plan}
    first = [(c, s) for c, s in plan if c.kind not in defects.DUPLICATES]
    dups = [(c, s) for c, s in plan if c.kind in defects.DUPLICATES]

    def make(item: tuple[SynthClip, RenderSpec]) -> None:
        clip, spec = item
        target = out / clip.file
        if clip.kind in defects.DUPLICATES:
            original, _ = by_id[clip.duplicate_of]
            defects.make_duplicate(clip.kind, out / original.file, target)
        else:
            defects.produce(clip.kind, spec, target)

    workers = cfg.workers or os.cpu_count() or 1
    with ThreadPoolExecutor(workers) as pool:   # each job is an ffmpeg subprocess
        for batch in (first, dups):
            list(tqdm(pool.map(make, batch), total=len(batch), desc="synth", unit="clip", leave=False))
    clips = [clip for clip, _ in plan]
    write_truth(out, clips)
    if cfg.lang == "zh":
        write_youku_layout(out, clips, cfg.checksums)
    else:
        write_audioset_layout(out, clips, cfg.seed)
    log.info("made %d clips in %s: %s", len(clips), out, dict(Counter(c.kind for c in clips)))
    return clips


def write_truth(out: Path, clips: list[SynthClip]) -> Path:
    path = out / "truth.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        for clip in clips:
            fh.write(json.dumps({**asdict(clip), "valor_id": clip.valor_id}, ensure_ascii=False) + "\n")
    return path


def read_truth(folder: str | os.PathLike) -> list[dict]:
    """The truth lines of a corpus made by ``make_corpus``."""
    with open(Path(folder) / "truth.jsonl", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def write_audioset_layout(out: Path, clips: list[SynthClip], seed: int) -> None:
    """Segment CSVs per subset (official layout), VALOR captions, class index and ontology."""
    for subset in sorted({c.subset for c in clips}):
        rows = [c for c in clips if c.subset == subset]
        labels = {c.label for c in rows}
        lines = [f"# Segments csv created by valor-data synth (seed {seed})",
                 f"# num_ytids={len(rows)}, num_segs={len(rows)}, num_unique_labels={len(labels)}, "
                 f"num_positive_labels={len(rows)}",
                 "# YTID, start_seconds, end_seconds, positive_labels"]
        lines += [f'{c.video_id}, {c.start_s:.3f}, {c.end_s:.3f}, "{c.label}"' for c in rows]
        (out / f"{subset}_segments.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    desc = [{"video_id": c.valor_id, "desc": c.caption} for c in clips]
    (out / "valor_captions.json").write_text(json.dumps(desc, indent=0), encoding="utf-8")
    classes = sorted({(mid, name) for _, _, mid, name in SOUNDS.values()})
    csv_lines = ["index,mid,display_name"] + [f'{i},{mid},"{name}"' for i, (mid, name) in enumerate(classes)]
    (out / "class_labels_indices.csv").write_text("\n".join(csv_lines) + "\n", encoding="utf-8")
    nodes = [{"id": mid, "name": name, "description": "", "citation_uri": "", "positive_examples": [],
              "child_ids": [], "restrictions": []} for mid, name in classes]
    (out / "ontology.json").write_text(json.dumps(nodes, indent=1), encoding="utf-8")


def write_youku_layout(out: Path, clips: list[SynthClip], checksums: str | None = None) -> None:
    """Youku-mPLUG's published CSVs, one per subset present (``<subset>.csv``), plus a checksum
    column of each file when ``checksums`` names an algorithm."""
    for subset in sorted({c.subset for c in clips}):
        kind = subset.split("_")[0]
        header = {"pretrain": ["video_id:FILE", "title"],
                  "classification": ["video_id:FILE", "title", "label"],
                  "retrieval": ["clip_name:FILE", "caption"],
                  "captioning": ["video_id:FILE", "golden_caption"]}[kind]
        with open(out / f"{subset}.csv", "w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(header + ([checksums] if checksums else []))
            for n, clip in enumerate(c for c in clips if c.subset == subset):
                writer.writerow(_youku_row(out, clip, subset, n, checksums))


def _youku_row(out: Path, clip: SynthClip, subset: str, n: int, checksums: str | None) -> list[str]:
    """One CSV row: file, text (a list literal for val/test captions), label (name, or index for
    every fourth clip, or blank), checksum."""
    kind = subset.split("_")[0]
    text = clip.title_zh
    if kind == "captioning" and not subset.endswith("train"):
        text = repr([clip.caption_zh, Content(**clip.content).caption("zh", variant=1)])
    row = [clip.file, text]
    if kind == "classification":
        label = str(CATEGORY_INDEX[clip.category]) if n % 4 == 1 else clip.category
        row.append("" if clip.label_blank else label)
    if checksums:
        row.append(hashlib.new(checksums, (out / clip.file).read_bytes()).hexdigest())
    return row


def write_url_list(folder: str | os.PathLike, base_url: str, path: str | os.PathLike,
                   segments: bool = True) -> Path:
    """A CSV URL list (url, caption, start, end, id) for a corpus served at ``base_url``."""
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["url", "caption", "start", "end", "id"])
        for clip in read_truth(folder):
            start, end = (clip["start_s"], clip["end_s"]) if segments else ("", "")
            writer.writerow([f"{base_url.rstrip('/')}/{clip['file']}", clip["caption"], start, end,
                             clip["video_id"]])
    return Path(path)
