"""``valor-data demo``: the whole job, offline, on a synthetic AudioSet-style corpus.

``run_demo`` renders a corpus of learnable clips (about a tenth of them defective, sources
longer than their 10 s segments, AudioSet's official CSV layout, ontology labels, VALOR
captions) into ``W/corpus``, serves it on 127.0.0.1, and runs every stage through the same
library functions as the stage commands, with the settings of one pipeline file:

    manifest       the official metadata "downloaded" from the loopback server (as
                   ``valor-data fetch audioset --metadata-base-url``), VALOR captions joined
    fetch          every clip through yt-dlp and one ffmpeg cut (``--url-template``)
    filter, split, build-shards, verify-splits, train --validate, report

It prints each stage's counts, output paths and wall/CPU seconds, and writes them to
``W/demo.json``. Every stage skips finished work, so a rerun (or a run after a kill) goes on
where the last one stopped; the corpus settings are recorded and a different request for the
same work dir is refused.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from valor_data.config import load_section
from valor_data.errors import ConfigError
from valor_data.synth.defects import DEFECTS
from valor_data.workdir import Workdir, atomic_path

log = logging.getLogger(__name__)

DEFAULT_PIPELINE = Path(__file__).resolve().parents[1] / "pipelines" / "demo.yaml"
CORPUS_DIR = "corpus"
SUMMARY_FILE = "demo.json"

Echo = Callable[[str], None]


@dataclass
class DemoConfig:
    """The ``demo:`` section of a pipeline: the corpus, and the sizes that scale the run.

    ``parts``, ``train_steps`` and ``train_batch_size`` replace the pipeline's ``split.parts``,
    ``train.steps`` and ``train.batch_size`` when set (the presets use them).
    """

    clips: int = 300                     # learnable clips
    defect_share: float = 0.1            # defective clips as a share of all clips
    defect_kinds: list[str] = field(default_factory=lambda: list(DEFECTS))   # drawn round robin, seeded order
    seed: int = 0
    source_seconds: list[float] = field(default_factory=lambda: [12.0, 20.0])   # source length range
    subsets: dict[str, float] = field(default_factory=lambda: {"unbalanced_train": 1.0, "balanced_train": 7.0,
                                                                "eval": 2.0})    # AudioSet subset shares
    workers: int = 0                     # corpus rendering processes (0: one per CPU)
    parts: dict[str, int] | None = None  # VALOR-32K part sizes (else split.parts)
    train_steps: int | None = None       # else train.steps
    train_batch_size: int | None = None  # else train.batch_size
    require_validation: bool = True      # a failed train --validate fails the demo

    def __post_init__(self):
        if self.clips < 1 or not 0 <= self.defect_share < 1:
            raise ValueError("clips must be >= 1 and defect_share within [0, 1)")
        if len(self.source_seconds) != 2 or not 0 < self.source_seconds[0] <= self.source_seconds[1]:
            raise ValueError("source_seconds must be [min, max] with 0 < min <= max")
        self.source_seconds = [float(s) for s in self.source_seconds]
        unknown = sorted(set(self.defect_kinds) - set(DEFECTS))
        if unknown or (self.defect_share and not self.defect_kinds):
            raise ValueError(f"defect_kinds must name some of {', '.join(DEFECTS)} (unknown: {unknown})")

    @property
    def defects(self) -> dict[str, int]:
        """``{defect: count}``: ``defect_share`` of all clips, spread over a seeded order of the kinds."""
        total = round(self.clips * self.defect_share / (1 - self.defect_share))
        order = sorted(self.defect_kinds)
        random.Random(self.seed).shuffle(order)
        return dict(Counter(order[i % len(order)] for i in range(total)))


# test-sized: a couple of minutes on 2 cores; too few test clips for validation to pass (it runs, is reported)
PRESETS: dict[str, dict[str, Any]] = {
    "full": {},
    "small": {"clips": 40, "source_seconds": [12.0, 16.0], "train_steps": 6, "train_batch_size": 16,
              "defect_share": 0.13,
              "defect_kinds": ["zero_bytes", "html_page", "corrupt", "low_bitrate", "black", "duplicate_reencoded"],
              "parts": {"valor32k-train": 25, "valor32k-val": 4, "valor32k-test": 6},
              "require_validation": False},
}


def load_demo_config(pipeline: Mapping[str, Any], preset: str = "full",
                     overrides: Mapping[str, Any] | None = None) -> DemoConfig:
    """The ``demo:`` section, then the preset, then non-None ``overrides`` (flags)."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown demo preset {preset!r}; known: {', '.join(PRESETS)}")
    flags = {k: v for k, v in (overrides or {}).items() if v is not None}
    return load_section(DemoConfig, pipeline, "demo", {**PRESETS[preset], **flags})


def scaled_pipeline(pipeline: Mapping[str, Any], cfg: DemoConfig) -> dict[str, Any]:
    """The pipeline with the demo's sizes applied to its ``split`` and ``train`` sections."""
    out = {name: dict(section) if isinstance(section, Mapping) else section for name, section in pipeline.items()}
    split, train = out.setdefault("split", {}), out.setdefault("train", {})
    if cfg.parts is not None:
        split["parts"] = dict(cfg.parts)
    for key, value in (("steps", cfg.train_steps), ("batch_size", cfg.train_batch_size)):
        if value is not None:
            train[key] = value
    return out


@dataclass
class StageRun:
    """One stage of the demo: what it printed and what it cost."""

    name: str
    wall_s: float = 0.0
    cpu_s: float = 0.0            # this process and every child it waited for (pool workers, ffmpeg)
    lines: list[str] = field(default_factory=list)


@dataclass
class DemoResult:
    workdir: str
    stages: list[StageRun] = field(default_factory=list)
    verified: bool = False
    validation_passed: bool | None = None
    require_validation: bool = True
    report: str = ""

    @property
    def ok(self) -> bool:
        return self.verified and (self.validation_passed or not self.require_validation)

    @property
    def wall_s(self) -> float:
        return sum(s.wall_s for s in self.stages)

    @property
    def cpu_s(self) -> float:
        return sum(s.cpu_s for s in self.stages)


def _cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class _Stages:
    """Times each stage, prints its lines as they come, keeps them for ``W/demo.json``."""

    def __init__(self, result: DemoResult, echo: Echo):
        self.result, self.echo = result, echo

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[StageRun]:
        run = StageRun(name)
        self.echo(f"== {name}")
        wall, cpu = time.monotonic(), _cpu()
        yield run
        run.wall_s, run.cpu_s = round(time.monotonic() - wall, 1), round(_cpu() - cpu, 1)
        self.echo(f"   ({run.wall_s:.1f} s wall, {run.cpu_s:.1f} s CPU)")
        self.result.stages.append(run)

    def say(self, run: StageRun, lines: list[str]) -> None:
        for line in lines:
            run.lines.append(line)
            self.echo(f"   {line}")


def make_demo_corpus(workdir: Workdir, cfg: DemoConfig) -> tuple[Path, list[str]]:
    """Render the corpus into ``W/corpus`` unless it is there already; (folder, lines to print)."""
    from valor_data.synth.corpus import SynthConfig, make_corpus, read_truth

    folder = workdir.path(CORPUS_DIR)
    wanted = {"clips": cfg.clips, "defects": cfg.defects, "seed": cfg.seed, "source_seconds": cfg.source_seconds,
              "subsets": cfg.subsets}
    record = folder / "demo-corpus.json"
    if record.exists():
        made = json.loads(record.read_text(encoding="utf-8"))
        if made != wanted:
            raise ConfigError(f"{workdir.root} holds a demo made with other settings ({made}); "
                              "use another work dir or remove this one")
    else:
        synth = SynthConfig(clips=cfg.clips, defects=cfg.defects, seed=cfg.seed,
                            source_seconds=tuple(cfg.source_seconds), subsets=dict(cfg.subsets), workers=cfg.workers)
        make_corpus(folder, synth)
        with atomic_path(record) as tmp:
            tmp.write_text(json.dumps(wanted), encoding="utf-8")
    truth = read_truth(folder)
    kinds = Counter(clip["kind"] for clip in truth)
    sources = [clip["source_seconds"] for clip in truth]
    lines = [f"{len(truth):,} clips: {kinds['clean']:,} learnable, {len(truth) - kinds['clean']:,} "
             f"defective ({', '.join(f'{k} {n}' for k, n in sorted(kinds.items()) if k != 'clean')})",
             f"sources {min(sources):.0f}-{max(sources):.0f} s, subsets "
             + ", ".join(f"{s} {sum(c['subset'] == s for c in truth):,}" for s in sorted({c['subset'] for c in truth})),
             f"corpus: {folder}"]
    return folder, lines


@contextlib.contextmanager
def serve(workdir: Workdir, folder: Path) -> Iterator[str]:
    """Serve the corpus on 127.0.0.1, on the port an earlier run used (its manifest's URLs name it)."""
    from valor_data.synth.server import LoopbackServer

    record = workdir.path(CORPUS_DIR, "demo-server.json")
    port = json.loads(record.read_text(encoding="utf-8"))["port"] if record.exists() else 0
    try:
        server = LoopbackServer(folder, port)
    except OSError as exc:
        raise ConfigError(f"cannot serve the demo corpus on port {port} again ({exc}); "
                          "the manifest's URLs name that port: free it or start a new work dir") from None
    with server:
        if not record.exists():
            with atomic_path(record) as tmp:
                tmp.write_text(json.dumps({"port": int(server.url.rsplit(":", 1)[1])}), encoding="utf-8")
        yield server.url


def run_demo(workdir: Workdir, cfg: DemoConfig, pipeline: Mapping[str, Any] | None = None,
             echo: Echo = print) -> DemoResult:
    """Corpus -> manifest -> fetch -> filter -> split -> build-shards -> verify-splits -> train --validate -> report."""
    pipeline = scaled_pipeline(pipeline or {}, cfg)
    result = DemoResult(str(workdir.root), require_validation=cfg.require_validation)
    stages = _Stages(result, echo)
    with stages.stage("corpus") as run:
        folder, lines = make_demo_corpus(workdir, cfg)
        stages.say(run, lines)
    with serve(workdir, folder) as url:
        echo(f"serving the corpus at {url}")
        _manifest(workdir, folder, url, stages)
        _fetch(workdir, pipeline, stages)
    _filter(workdir, pipeline, stages)
    _split_and_shards(workdir, pipeline, stages)
    result.verified = _verify(workdir, stages)
    result.validation_passed = _validate(workdir, pipeline, stages)
    result.report = _report(workdir, pipeline, stages)
    _write_summary(workdir, result, cfg)
    _conclude(result, echo)
    return result


def _manifest(workdir: Workdir, folder: Path, url: str, stages: _Stages) -> None:
    from valor_data import manifest as lib
    from valor_data.fetch import prepare

    with stages.stage("manifest") as run:
        subsets = sorted(p.name[: -len("_segments.csv")] for p in folder.glob("*_segments.csv"))
        built = prepare.audioset_manifest(workdir, subsets, url, url + "/media/{video_id}.mp4")
        if built is None:
            stages.say(run, [f"using the existing {workdir.manifest}"])
            return
        joined = lib.join_valor_captions(workdir, [folder / "valor_captions.json"])
        built.captions_matched, built.captions_unmatched = joined.captions_matched, joined.captions_unmatched
        stages.say(run, built.lines() + [f"metadata: {workdir.path('raw', 'audioset')}",
                                         f"tables: {workdir.manifest}  {workdir.rejects}"])


def _fetch(workdir: Workdir, pipeline: Mapping[str, Any], stages: _Stages) -> None:
    from valor_data.fetch import load_fetch_config, run_fetch

    with stages.stage("fetch") as run:
        summary = run_fetch(workdir, load_fetch_config(pipeline))
        stages.say(run, summary.lines() + [f"media: {workdir.path('media')}",
                                           f"table: {workdir.path('fetch.parquet')}"])


def _filter(workdir: Workdir, pipeline: Mapping[str, Any], stages: _Stages) -> None:
    from valor_data.curate.config import FilterConfig
    from valor_data.curate.run import run_filter

    with stages.stage("filter") as run:
        summary = run_filter(workdir, load_section(FilterConfig, pipeline, "filter"))
        stages.say(run, summary.lines() + [f"tables: {workdir.path('quality.parquet')}  "
                                           f"{workdir.path('signatures.parquet')}"])


def _split_and_shards(workdir: Workdir, pipeline: Mapping[str, Any], stages: _Stages) -> None:
    from valor_data.shards.build import build_shards
    from valor_data.shards.config import ShardConfig
    from valor_data.split import SplitConfig, run_split

    with stages.stage("split") as run:
        summary = run_split(workdir, load_section(SplitConfig, pipeline, "split"))
        stages.say(run, summary.lines() + [f"tables: {workdir.path('splits.parquet')}  "
                                           f"{workdir.path('splits.json')}"])
    with stages.stage("build-shards") as run:
        built = build_shards(workdir, load_section(ShardConfig, pipeline, "shards"), dict(pipeline))
        stages.say(run, built.lines() + [f"shards: {workdir.path('shards')}"])


def _verify(workdir: Workdir, stages: _Stages) -> bool:
    from valor_data.shards.verify import verify

    with stages.stage("verify-splits") as run:
        report = verify(workdir)
        stages.say(run, report.lines())
    return report.ok


def _validate(workdir: Workdir, pipeline: Mapping[str, Any], stages: _Stages) -> bool:
    from valor_data.train import api
    from valor_data.train.config import TrainConfig

    with stages.stage("train --validate") as run:
        report = api.validate(workdir.root, load_section(TrainConfig, pipeline, "train"))
        metrics = report["metrics"]["retrieval"]["tav"]
        stages.say(run, report["reasons"] + [
            f"t2av R@1 {metrics['r1']:.3f} R@5 {metrics['r5']:.3f} R@10 {metrics['r10']:.3f} on "
            f"{report['metrics']['n']} {report['eval_split']} clips (chance R@5 {report['chance']['r5']:.3f})",
            f"{'PASSED' if report['passed'] else 'FAILED'}: {workdir.path('validation.json')}",
            f"runs: {workdir.path('train')}"])
    return bool(report["passed"])


def _report(workdir: Workdir, pipeline: Mapping[str, Any], stages: _Stages) -> str:
    from valor_data.curate.config import FilterConfig
    from valor_data.report.html import build_report

    with stages.stage("report") as run:
        path = build_report(workdir, load_section(FilterConfig, pipeline, "filter"))
        stages.say(run, [f"report: {path}", f"figures: {path.parent}/*.png"])
    return str(path)


def _write_summary(workdir: Workdir, result: DemoResult, cfg: DemoConfig) -> None:
    data = {**asdict(result), "ok": result.ok, "wall_s": round(result.wall_s, 1), "cpu_s": round(result.cpu_s, 1),
            "config": asdict(cfg)}
    with atomic_path(workdir.path(SUMMARY_FILE)) as tmp:
        tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


def _conclude(result: DemoResult, echo: Echo) -> None:
    echo("== done")
    echo(f"   {result.wall_s:.0f} s wall, {result.cpu_s:.0f} s CPU; stage times in "
         f"{Path(result.workdir) / SUMMARY_FILE}")
    echo(f"   verify-splits {'passed' if result.verified else 'FAILED'}; validation "
         + ("passed" if result.validation_passed else "FAILED" + ("" if result.require_validation
                                                                    else " (not required at this size)")))
    echo(f"   open {result.report}")
