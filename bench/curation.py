"""The curation loop, closed (issue 17), on synthetic clips, through the real stages:

1. a fetched work dir: a captioned benchmark part (AudioSet ``balanced_train`` / ``eval``) and an
   uncaptioned pretraining pool (``unbalanced_train``), media in ``W/media``;
2. split (``--captions human``: the pool has no captions yet) + build-shards, train VALOR on
   ``valor32k-train`` and evaluate on ``valor32k-test``: the model *without* pseudo-captions;
3. ``valor-data caption`` pseudo-captions the pool with it (kept above the 20th percentile of MGA);
4. ``valor-data score --captions both`` and ``filter`` with ``min_av_score`` / ``min_caption_score``
   (the 5th percentile) on the pool (``learned_subsets``: the benchmark, which the model trained
   on, keeps its clips, so both models meet the same test split): pool clips whose sound or
   caption disagrees are cut;
5. split + build-shards ``--captions both``: ``valor1m`` holds the pseudo-captioned pool; train
   again on ``valor1m`` + ``valor32k-train`` (same steps): the model *with* them, on the same test.

Prints both models' validation R@1/5/10 (text to audio+video, every caption a query) and the
counts of each step as JSON. Usage: python bench/curation.py [--pool 240] [--steps 240] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import tarfile
import tempfile
import time
from pathlib import Path

import pyarrow as pa

from valor_data.cli import main
from valor_data.synth.shards import SynthShards, make_synthetic_shards
from valor_data.table import CLIP_SCHEMA, clip_row, read_table, to_table, write_table
from valor_data.train.api import train_and_evaluate
from valor_data.train.config import TrainConfig
from valor_data.workdir import Workdir

PIPELINE = """\
split:
  benchmark_subsets: [balanced_train]
  parts: {{valor32k-train: {train}, valor32k-test: {test}}}
filter:
  min_short_side: 48
  min_fps: 4
  duplicates: false
  min_av_score: {{percentile: 5}}
  min_caption_score: {{percentile: 5}}
  learned_subsets: [unbalanced_train]
"""


def cli(*args: str) -> None:
    try:
        main(list(args))
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise RuntimeError(f"valor-data {' '.join(args)} exited with {exc.code}") from None


def fetched_workdir(root: Path, pool: int, train: int, test: int, seed: int) -> Workdir:
    """Synthetic clips written as fetch leaves them: the benchmark part captioned, the pool not."""
    scratch = root / "render"
    lists = make_synthetic_shards(scratch, SynthShards(splits=(("bench", train + test), ("pool", pool)),
                                                       per_shard=1000, linked_sound=True, seconds=3.0, seed=seed))
    workdir, rows = Workdir.create(root / "w"), []
    for name, subset in (("bench", "balanced_train"), ("pool", "unbalanced_train")):
        with tarfile.open(lists[name].parent / f"{name}-000000.tar") as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar}
        for key in sorted({n.split(".", 1)[0] for n in members}):
            meta = json.loads(members[f"{key}.json"])
            for ext in ("mp4", "flac"):
                path = workdir.media_path(key, ext)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(members[f"{key}.{ext}"])
            rows.append(clip_row(clip_id=key, source="audioset", subset=subset, video_id=meta["video_id"],
                                 start_s=0.0, end_s=meta["end_s"], labels=meta["labels"],
                                 captions=meta["captions"] if name == "bench" else []))
    write_table(to_table(rows, CLIP_SCHEMA), workdir.manifest)
    ids = [r["clip_id"] for r in rows]
    write_table(pa.table({"clip_id": ids, "status": ["ok"] * len(ids)}), workdir.path("fetch.parquet"))
    return workdir


def train(workdir: Workdir, run: str, splits: list[str], steps: int) -> dict:
    shards = [str(workdir.path("shards", f"{s}.shards.json")) for s in splits]
    cfg = TrainConfig(preset="tiny", model={"max_text_len": 16}, steps=steps, batch_size=32, lr=0.001,
                      warmup_steps=6, workers=2, log_every=40, caption_samples=64, shards=shards)
    result = train_and_evaluate(workdir.path("runs", run), _linked(workdir, run, cfg))
    return {"retrieval_t2av": result["retrieval"]["tav"], "cider": result["captioning"]["cider"],
            "checkpoint": result["checkpoint"], "n": result["n"]}


def _linked(workdir: Workdir, run: str, cfg: TrainConfig) -> TrainConfig:
    """The run folder sees the work dir's shards (the evaluation split is found under root/shards)."""
    link = workdir.path("runs", run, "shards")
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.exists():
        link.symlink_to(workdir.path("shards"), target_is_directory=True)
    return cfg


def _members(workdir: Workdir, split: str) -> list[str]:
    return sorted(r["clip_id"] for r in read_table(workdir.path("splits.parquet")).to_pylist() if r["split"] == split)


def run(args) -> dict:
    root = Path(args.out or tempfile.mkdtemp(prefix="valor-curation-"))
    started, out = time.monotonic(), {"pool": args.pool, "train": args.train, "test": args.test, "steps": args.steps}
    workdir = fetched_workdir(root, args.pool, args.train, args.test, args.seed)
    pipeline = root / "pipeline.yaml"
    pipeline.write_text(PIPELINE.format(train=args.train, test=args.test))
    w = str(workdir.root)
    cli("split", "-w", w, "--pipeline", str(pipeline), "--captions", "human")
    cli("build-shards", "-w", w)
    test_before = _members(workdir, "valor32k-test")
    out["without"] = train(workdir, "without", ["valor32k-train"], args.steps)
    ckpt = out["without"]["checkpoint"]
    cli("caption", "-w", w, "--checkpoint", ckpt, "--workers", "2")
    pseudo = read_table(workdir.path("pseudo_captions.parquet")).to_pylist()
    out["pseudo"] = {"generated": len(pseudo), "kept": sum(r["kept"] for r in pseudo)}
    cli("score", "-w", w, "--checkpoint", ckpt, "--captions", "both", "--workers", "2")
    cli("filter", "-w", w, "--pipeline", str(pipeline), "--workers", "2")
    quality = read_table(workdir.path("quality.parquet")).to_pylist()
    out["filter"] = {reason: sum(reason in r["reasons"] for r in quality)
                     for reason in sorted({x for r in quality for x in r["reasons"]})}
    cli("split", "-w", w, "--pipeline", str(pipeline), "--captions", "both")
    cli("build-shards", "-w", w, "--captions", "both")
    out["splits"] = json.loads(workdir.path("splits.json").read_text())["counts"]
    out["same_test_split"] = _members(workdir, "valor32k-test") == test_before
    out["with"] = train(workdir, "with", ["valor1m", "valor32k-train"], args.steps)
    out["seconds"] = round(time.monotonic() - started, 1)
    return out


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=int, default=240, help="uncaptioned pretraining clips")
    parser.add_argument("--train", type=int, default=120, help="captioned benchmark training clips")
    parser.add_argument("--test", type=int, default=64, help="captioned benchmark test clips")
    parser.add_argument("--steps", type=int, default=240)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="work folder (default: a new temporary one)")
    return parser.parse_args()


if __name__ == "__main__":
    print(json.dumps(run(parse()), indent=1))
