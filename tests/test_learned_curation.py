"""Learned curation: ``valor-data score`` finds clips whose audio or caption is another clip's,
``filter`` rejects them by score, with a tiny VALOR trained once (module fixture) on learnable
synthetic shards (the sound follows the shape and colour: a clip's audio can be told from its frames).

The held-out clips are written as a fetched work dir (``W/media``, ``manifest.parquet``,
``fetch.parquet``); 20 % get another clip's audio (one with another sound) and another 20 %
another clip's caption (one that names another shape or colour).

Statistics (the project's rule: an assertion against chance fails by chance < 1 in 1,000 runs):
ROC AUC is the Mann-Whitney U over (positives x negatives) pairs. With ``MISMATCHED`` = 20
positives against ``HELD - MISMATCHED`` = 80 negatives a scorer that knows nothing has U with
mean 800 and sd sqrt(20 * 80 * 101 / 12) = 116; AUC >= 0.95 needs U >= 1520, z >= 6.2, so chance
passes it with p < 1e-9 (normal tail; U's exact tail is lighter still). AUCs are Python floats.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from valor_data.cli import main  # noqa: E402
from valor_data.curate import checks  # noqa: E402
from valor_data.curate.config import FilterConfig  # noqa: E402
from valor_data.curate.pseudo import CaptionConfig, judge  # noqa: E402
from valor_data.curate.score import ScoreConfig, run_score, sha256_file  # noqa: E402
from valor_data.errors import ValorError  # noqa: E402
from valor_data.synth.shards import SynthShards, make_synthetic_shards  # noqa: E402
from valor_data.table import CLIP_SCHEMA, read_table, to_table, write_table  # noqa: E402
from valor_data.train import metrics  # noqa: E402
from valor_data.train.api import train_and_evaluate  # noqa: E402
from valor_data.train.config import TrainConfig  # noqa: E402
from valor_data.workdir import Workdir  # noqa: E402

from helpers import tar_samples, write_fetched  # noqa: E402

# one tiny model is rendered for and trained once for the module (4-8 minutes on a shared 2-core
# machine, setup of the first test): more than the suite's default per-test timeout allows
pytestmark = pytest.mark.timeout(1500)
HELD = 100
MISMATCHED = 20
TRAIN = TrainConfig(preset="tiny", model={"max_text_len": 16}, steps=240, batch_size=32, lr=0.001,
                    warmup_steps=6, workers=2, log_every=20, caption_samples=64)


def _words(caption: str) -> tuple[str, str, str]:
    """(colour, shape, motion) of a synthetic caption ``a <colour> <shape> moves <motion> while ...``."""
    words = caption.split()
    return words[1], words[2], words[4]


def _donor(keys: list[str], i: int, differs) -> str:
    """The next clip after ``i`` (cyclically) for which ``differs(other)`` holds."""
    for step in range(1, len(keys)):
        other = keys[(i + step) % len(keys)]
        if differs(other):
            return other
    raise AssertionError("no donor")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny model on aligned shards: (root, checkpoint, eval result, held-out samples)."""
    root = tmp_path_factory.mktemp("learned")
    lists = make_synthetic_shards(root, SynthShards(splits=(("valor32k-train", 240), ("valor32k-test", 64),
                                                            ("heldout", HELD)), per_shard=80, linked_sound=True,
                                                    seconds=3.0))
    result = train_and_evaluate(root, TRAIN)
    held = tar_samples(sorted(lists["heldout"].parent.glob("heldout-*.tar")))
    return root, Path(result["checkpoint"]), result, held


@pytest.fixture(scope="module")
def mixed(trained, tmp_path_factory):
    """The held-out clips as a fetched work dir, 20 % with another sound, 20 % another caption."""
    _, _, _, held = trained
    keys = list(held)
    meta = {k: json.loads(held[k]["json"]) for k in keys}
    audio_keys, caption_keys = keys[:MISMATCHED * 2:2], keys[1:MISMATCHED * 2:2]
    audio_from = {k: _donor(keys, keys.index(k), lambda o, k=k: meta[o]["labels"] != meta[k]["labels"])
                  for k in audio_keys}
    caption_from = {k: _donor(keys, keys.index(k), lambda o, k=k: _words(meta[o]["captions"][0])[:2]
                              != _words(meta[k]["captions"][0])[:2]) for k in caption_keys}
    workdir = write_fetched(tmp_path_factory.mktemp("mixed"), held, audio_from, caption_from)
    return workdir, set(audio_keys), set(caption_keys)


def run_cli(args: list[str]) -> None:
    """``valor-data ARGS`` in this process; fails unless it exits 0."""
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 0, args


def _score(workdir: Workdir, checkpoint: Path, distributor: str = "local", workers: int = 2, task_size: int = 50):
    return run_score(workdir, ScoreConfig(checkpoint=str(checkpoint), task_size=task_size), distributor, workers)


@pytest.fixture(scope="module")
def scored(trained, mixed):
    workdir = mixed[0]
    summary = _score(workdir, trained[1])
    return summary, read_table(workdir.path("scores.parquet"))


def auc(positive: list[float], negative: list[float]) -> float:
    """P(a positive scores lower than a negative), ties half: the rank (Mann-Whitney) formula."""
    pairs = sum(1.0 if p < n else 0.5 if p == n else 0.0 for p in positive for n in negative)
    return pairs / (len(positive) * len(negative))


def confusion(positive: list[float], negative: list[float], threshold: float) -> dict[str, int]:
    return {"caught": sum(p < threshold for p in positive), "missed": sum(p >= threshold for p in positive),
            "false_alarms": sum(n < threshold for n in negative), "kept": sum(n >= threshold for n in negative)}


def _split(rows: list[dict], metric: str, bad: set[str]) -> tuple[list[float], list[float]]:
    return ([float(r[metric]) for r in rows if r["clip_id"] in bad],
            [float(r[metric]) for r in rows if r["clip_id"] not in bad])


def test_scores_find_swapped_audio_and_captions(scored, mixed):
    summary, table = scored
    _, swapped_audio, swapped_caption = mixed
    rows = table.to_pylist()
    assert summary.clips == table.num_rows == HELD and summary.statuses == {"ok": HELD}
    assert all(r["captions"] == 1 and len(r["tav"]) == 1 and r["loglik_first"] < 0 and r["task_clips"] == 50
               for r in rows)
    found = {}
    for name, metric, bad in (("audio", "av_score", swapped_audio), ("caption", "tav_max", swapped_caption)):
        positive, negative = _split(rows, metric, bad)
        threshold = sorted(negative)[len(negative) // 20]          # keeps 95 % of the other clips
        found[name] = {"auc": auc(positive, negative), **confusion(positive, negative, threshold)}
    print(json.dumps(found))
    assert found["audio"]["auc"] >= 0.95 and found["caption"]["auc"] >= 0.95, found


FILTER = """\
filter:
  min_short_side: 48
  min_fps: 4
  duplicates: false
  min_av_score: {percentile: 20}
  min_caption_score: {percentile: 20}
"""


def test_filter_rejects_by_score_with_reasons_and_explain(scored, mixed, tmp_path, capsys):
    from valor_data.curate import agreement

    workdir, swapped_audio, swapped_caption = mixed
    pipeline = tmp_path / "filter.yaml"
    pipeline.write_text(FILTER)
    run_cli(["filter", "-w", str(workdir.root), "--pipeline", str(pipeline), "--workers", "2"])
    quality = {r["clip_id"]: r for r in read_table(workdir.path("quality.parquet")).to_pylist()}
    av = {k for k, r in quality.items() if "av_mismatch" in r["reasons"]}
    cap = {k for k, r in quality.items() if "caption_mismatch" in r["reasons"]}
    assert {x for r in quality.values() for x in r["reasons"]} == {"av_mismatch", "caption_mismatch"}
    assert len(av) == len(cap) == HELD // 5                                  # the 20th percentile
    assert len(av & swapped_audio) >= 15 and len(cap & swapped_caption) >= 15, (av, cap)
    clip = sorted(av)[0]
    capsys.readouterr()
    run_cli(["filter", "-w", str(workdir.root), "--pipeline", str(pipeline), "--explain", clip])
    shown = capsys.readouterr().out
    bound = agreement.percentile(scored[1].column("av_score").to_pylist(), 20)
    assert f"{clip}: reject" in shown and "av_mismatch" in shown and f"< {bound:.4g} (min_av_score)" in shown
    assert "learned scores (valor-data score)" in shown and "loglik_max" in shown
    # without scores.parquet a configured threshold is an error; without a threshold nothing is judged
    bare = Workdir.create(tmp_path / "bare")
    config = FilterConfig(min_av_score={"percentile": 20})
    with pytest.raises(ValorError, match="run valor-data score first"):
        agreement.read_scores(bare, config)
    assert agreement.read_scores(bare, FilterConfig()) is None
    assert checks.judge({"av_score": -50.0, "tav_max": -1.0}, FilterConfig()) == []
    pool_only = FilterConfig(min_av_score=0.0, learned_subsets=["unbalanced_train"])   # the benchmark is spared
    assert checks.judge({"av_score": -50.0, "subset": "balanced_train"}, pool_only) == []
    assert checks.judge({"av_score": -50.0, "subset": "unbalanced_train"}, pool_only) == ["av_mismatch"]


def test_local_workers_and_ray_give_identical_scores(trained, mixed, scored, tmp_path):
    ray = pytest.importorskip("ray")
    workdir = Workdir.create(tmp_path / "ray")
    for name in ("manifest.parquet", "fetch.parquet"):
        shutil.copyfile(mixed[0].path(name), workdir.path(name))
    os.symlink(mixed[0].path("media"), workdir.path("media"))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        _score(workdir, trained[1], distributor="ray")
    finally:
        ray.shutdown()
    assert read_table(workdir.path("scores.parquet")).to_pylist() == scored[1].to_pylist()
    assert _score(workdir, trained[1]).scored_now == 0                # a rerun finds every clip scored


def test_sigkill_mid_run_then_rerun_scores_every_clip_once(trained, mixed, tmp_path):
    workdir = Workdir.create(tmp_path / "killed")
    for name in ("manifest.parquet", "fetch.parquet"):
        shutil.copyfile(mixed[0].path(name), workdir.path(name))
    os.symlink(mixed[0].path("media"), workdir.path("media"))
    args = ["score", "-w", str(workdir.root), "--checkpoint", str(trained[1]), "--workers", "1", "--task-size", "10"]
    log = open(tmp_path / "killed.log", "wb")
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from valor_data.cli import main; main(sys.argv[1:])",
                             *args], stdout=log, stderr=subprocess.STDOUT)
    tasks = workdir.path("scores", "tasks")
    deadline = time.monotonic() + 300
    while not (tasks.is_dir() and any(tasks.glob("task-*.parquet"))) and proc.poll() is None:
        assert time.monotonic() < deadline, "no task finished"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    log.close()
    done_at_kill = len(list(tasks.glob("task-*.parquet")))
    assert 0 < done_at_kill < 10, (tmp_path / "killed.log").read_text()
    run_cli(args)
    ids = [c for p in sorted(tasks.glob("task-*.parquet")) for c in pq.read_table(p).column("clip_id").to_pylist()]
    assert len(ids) == len(set(ids)) == HELD
    final = read_table(workdir.path("scores.parquet"))
    assert final.num_rows == HELD and set(final.column("status").to_pylist()) == {"ok"}


def test_unreadable_media_is_an_error_row_not_a_crash(trained, mixed, tmp_path):
    workdir = Workdir.create(tmp_path / "bad")
    keys = read_table(mixed[0].manifest).column("clip_id").to_pylist()[:3]
    samples = {k: {"mp4": mixed[0].media_path(k, "mp4").read_bytes(), "flac": mixed[0].media_path(k, "flac").read_bytes(),
                   "json": json.dumps({"video_id": k, "end_s": 3.0, "captions": ["a red circle"]}).encode()}
               for k in keys}
    samples[keys[1]]["mp4"] = b"<html>not a video</html>"
    write_fetched(workdir.root, samples, {}, {})
    workdir.media_path(keys[2], "flac").unlink()
    summary = _score(workdir, trained[1], workers=1)
    rows = {r["clip_id"]: r for r in read_table(workdir.path("scores.parquet")).to_pylist()}
    assert summary.statuses == {"ok": 1, "error": 2} and rows[keys[0]]["av_score"] is None   # one clip: no peers
    assert "no audio file" in rows[keys[2]]["error"] and rows[keys[1]]["error"]
    assert not math.isnan(rows[keys[0]]["tav_first"])


TRUTH_SOUNDS = {"Beep, bleep": "beep", "Hum": "hum", "Siren": "siren", "Tick": "tick", "White noise": "white",
                "Pink noise": "pink"}


def truth_agreement(caption: str, meta: dict) -> float:
    """The share of the clip's four truths (colour, shape, motion, sound word) its caption names."""
    colour, shape, motion = _words(meta["captions"][0])
    words = set(caption.split())
    return sum(w in words for w in (colour, shape, motion, TRUTH_SOUNDS[meta["label_names"][0]])) / 4


@pytest.fixture(scope="module")
def captioned(trained, tmp_path_factory):
    """The held-out clips without captions, pseudo-captioned (kept: the best 80 % by MGA)."""
    workdir = write_fetched(tmp_path_factory.mktemp("uncaptioned"), trained[3], {}, {}, captions=False)
    run_cli(["caption", "-w", str(workdir.root), "--checkpoint", str(trained[1]), "--min-score", "p20",
             "--workers", "2", "--task-size", "50"])
    return workdir, read_table(workdir.path("pseudo_captions.parquet"))


def test_pseudo_captions_match_the_test_cider_and_mga_filtering_raises_agreement(trained, captioned):
    _, _, result, held = trained
    workdir, table = captioned
    rows = table.to_pylist()
    assert len(rows) == HELD and sum(r["kept"] for r in rows) == HELD - HELD // 5     # the 20th percentile
    assert {r["checkpoint_sha256"] for r in rows} == {sha256_file(trained[1])}
    # the threshold is applied to the stored scores: another one regenerates nothing
    judge(workdir, CaptionConfig(min_score=None), table.column("clip_id"))
    assert all(read_table(workdir.path("pseudo_captions.parquet")).column("kept").to_pylist())
    judge(workdir, CaptionConfig(min_score={"percentile": 20}), table.column("clip_id"))
    assert all(r["status"] == "ok" and r["caption"] and r["checkpoint_sha256"] for r in rows)
    meta = {k: json.loads(v["json"]) for k, v in held.items()}
    kept = [r for r in rows if r["kept"]]
    side = {}
    for name, part in (("unfiltered", rows), ("kept", kept), ("rejected", [r for r in rows if not r["kept"]])):
        scores = metrics.caption_scores([r["caption"] for r in part], [meta[r["clip_id"]]["captions"] for r in part])
        side[name] = {"n": len(part), "cider": scores["cider"],
                      "truth": sum(truth_agreement(r["caption"], meta[r["clip_id"]]) for r in part) / len(part)}
    side["test_split_cider"] = result["captioning"]["cider"]
    print(json.dumps(side))
    assert side["kept"]["cider"] >= side["test_split_cider"], side
    assert side["kept"]["truth"] > side["unfiltered"]["truth"] > side["rejected"]["truth"], side


def test_split_and_shards_take_pseudo_captions_on_request(captioned, mixed, tmp_path):
    workdir, table = captioned
    kept = {r["clip_id"]: r["caption"] for r in table.to_pylist() if r["kept"]}
    human = read_table(mixed[0].manifest).to_pylist()[:10]          # ten clips keep human captions
    manifest = read_table(workdir.manifest).to_pylist()
    for row in manifest[:10]:
        row["captions"] = next(h["captions"] for h in human if h["clip_id"] == row["clip_id"])
    write_table(to_table(manifest, CLIP_SCHEMA), workdir.manifest)
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text("split:\n  pretrain_subsets: [unbalanced_train]\n  parts: {valor32k-train: 0}\n")
    run_cli(["split", "-w", str(workdir.root), "--pipeline", str(pipeline), "--captions", "human"])
    assert read_table(workdir.path("splits.parquet")).column("reason").to_pylist().count("no_caption") == HELD - 10
    run_cli(["split", "-w", str(workdir.root), "--pipeline", str(pipeline), "--captions", "both"])
    splits = read_table(workdir.path("splits.parquet")).to_pylist()
    in_split = {r["clip_id"] for r in splits if r["split"]}
    assert len(in_split) == 10 + len(set(kept) - {r["clip_id"] for r in manifest[:10]})
    assert {r["reason"] for r in splits if not r["split"]} <= {"no_caption"}
    run_cli(["build-shards", "-w", str(workdir.root), "--captions", "both"])
    docs = {}
    for tar_path in sorted(workdir.path("shards").glob("valor1m-*.tar")):
        with tarfile.open(tar_path) as tar:
            for member in tar:
                if member.name.endswith(".json"):
                    doc = json.loads(tar.extractfile(member).read())
                    docs[doc["clip_id"]] = doc
    assert set(docs) == in_split
    for clip_id, doc in docs.items():
        source = "human" if clip_id in {r["clip_id"] for r in manifest[:10]} else "pseudo"
        assert doc["caption_source"] == source
        assert doc["captions"] == ([kept[clip_id]] if source == "pseudo" else doc["captions"])
    card = workdir.path("shards", "README.md").read_text()
    assert f"| valor1m | 10 | {len(in_split) - 10} | 0 |" in card


def test_report_draws_score_histograms_and_the_lowest_clips(scored, mixed):
    from valor_data.curate import agreement
    from valor_data.report.data import load
    from valor_data.report.html import build_report
    from valor_data.report.scores import lowest_sheet, score_histograms

    workdir = mixed[0]
    config = FilterConfig(min_av_score={"percentile": 20})
    data = load(workdir, config)
    hist = score_histograms(data)
    lines = [line.get_xdata()[0] for ax in hist.axes for line in ax.get_lines()]
    assert lines == [pytest.approx(agreement.percentile(scored[1].column("av_score").to_pylist(), 20))]
    sheet = lowest_sheet(data)
    lowest = sorted(scored[1].to_pylist(), key=lambda r: (r["av_score"], r["clip_id"]))[:6]
    titles = [ax.get_title() for ax in sheet.axes[:6]]
    assert [t.split("\n")[0] for t in titles] == [r["clip_id"][:22] for r in lowest]
    assert sum(len(ax.get_lines()) for ax in sheet.axes) == 12            # a waveform under every frame
    page = build_report(workdir, config).read_text()
    assert 'id="fig-scores"' in page and 'id="fig-lowest"' in page
    assert workdir.path("report", "lowest.png").stat().st_size > 0
