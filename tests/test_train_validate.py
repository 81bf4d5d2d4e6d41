"""End to end: ``valor-data train --validate`` passes aligned synthetic shards and fails broken ones.

The clips are learnable (captions name the shape, colour, motion and sound; the sound follows
the shape and colour, as what is heard follows what is seen in real clips, so that a clip's
audio can be found from its frames); the tiny preset
trains once on CPU through the real webdataset + DataLoader path (a module fixture), is judged
on the held-out clips, and the same trained model is then judged on copies of the evaluation
shards whose tar members were rewritten: every clip's audio (a), video (b) or captions (c)
taken from another clip, or (d) the audio of 30 % of the clips swapped in pairs.

Statistics (the project's rule: a test that compares a metric with chance fails by chance less
than once in 1,000 runs): every assertion below is the verdict itself, whose thresholds are
exact binomial tails (``valor_data.train.metrics``) split over its checks (Bonferroni):
``report["rates"]`` holds the probability that a sound dataset fails (sum over the checks) and
that a broken one passes (the largest over the checks), and the tests assert both are < 1e-3.
Counts and rates are Python ints and floats, never float32.
"""

import contextlib
import io
import json
import random
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from valor_data.cli import main  # noqa: E402
from valor_data.synth.shards import SynthShards, make_synthetic_shards, write_split  # noqa: E402
from valor_data.train import loop  # noqa: E402
from valor_data.train.config import TrainConfig  # noqa: E402
from valor_data.train.evaluate import evaluate_split  # noqa: E402
from valor_data.train.validate import judge  # noqa: E402

from helpers import tar_samples  # noqa: E402

TEST_CLIPS = 160
PIPELINE = """\
train:
  preset: tiny
  model: {max_text_len: 16}
  steps: 120
  batch_size: 32
  lr: 0.001
  warmup_steps: 6
  workers: 2
  log_every: 10
  caption_samples: 16
"""


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("train-validate")
    make_synthetic_shards(root, SynthShards(splits=(("valor32k-train", 240), ("valor32k-test", TEST_CLIPS)),
                                            per_shard=80, linked_sound=True))
    return root


@pytest.fixture(scope="module")
def validated(corpus, tmp_path_factory):
    """``train --validate`` once on the aligned shards: (exit code, report, what it printed)."""
    pipeline = tmp_path_factory.mktemp("pipeline") / "pipeline.yaml"
    pipeline.write_text(PIPELINE)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            main(["train", "--validate", str(corpus), "--pipeline", str(pipeline)])
            code = 0
        except SystemExit as exc:
            code = exc.code or 0
    return code, json.loads((corpus / "validation.json").read_text()), out.getvalue()


def _broken_copy(corpus: Path, out: Path, members: tuple[str, ...], share: float = 1.0) -> Path:
    """A work dir whose test split takes ``members`` (e.g. ``("flac",)``) from other clips: every
    clip from the next one (a cyclic derangement), or ``share`` of the clips swapped in pairs."""
    (out / "shards").mkdir(parents=True)
    samples = list(tar_samples(sorted((corpus / "shards").glob("valor32k-test-*.tar"))).items())
    n = len(samples)
    if share >= 1.0:
        source = [(i + 1) % n for i in range(n)]
    else:
        chosen = random.Random(0).sample(range(n), 2 * round(share * n / 2))
        source = list(range(n))
        for a, b in zip(chosen[::2], chosen[1::2], strict=True):
            source[a], source[b] = b, a
    broken = [(key, {**m, **{ext: samples[source[i]][1][ext] for ext in members}})
              for i, (key, m) in enumerate(samples)]
    write_split(out / "shards", "valor32k-test", broken, per_shard=80)
    return out


@pytest.fixture(scope="module")
def judged(corpus, validated, tmp_path_factory):
    """judge(kind) -> the verdict of the trained model on a broken copy of the evaluation shards."""
    model, tokenizer, _ = loop.model_from_checkpoint(corpus / "train" / "validate" / "ckpt.pt")
    cfg = TrainConfig(preset="tiny", model={"max_text_len": 16}, workers=2, caption_samples=2, beam_size=1)
    _, report, _ = validated
    kinds = {"audio": (("flac",), 1.0), "video": (("mp4",), 1.0), "captions": (("json", "txt"), 1.0),
             "audio30": (("flac",), 0.3)}

    def run(kind: str) -> dict:
        members, share = kinds[kind]
        root = _broken_copy(corpus, tmp_path_factory.mktemp(kind), members, share)
        result = evaluate_split(root, cfg, model, tokenizer, loop.setup_process("cpu").device, with_controls=True)
        return judge(root, result, report["loss"], cfg)
    return run


def _failed(report: dict) -> list[str]:
    return [r for r in report["reasons"] if r.startswith("FAIL")]


@pytest.mark.slow
def test_validate_passes_aligned_shards_and_reports_both_error_rates(corpus, validated):
    code, report, out = validated
    assert report["metrics"]["n"] == TEST_CLIPS and report["chance"]["r5"] == 5 / TEST_CLIPS
    # the verdict's own error rates, from exact binomial tails: both below 1 in 1,000
    assert report["rates"]["sound_fails"] < 1e-3 and report["rates"]["broken_passes"] < 1e-3
    assert report["passed"] and code == 0, _failed(report)
    assert all(type(report["metrics"]["per_clip"][g]["r5"]) is float
               for g in ("tv", "ta", "tav", "va"))
    # each control drops what it breaks and keeps what it does not
    assert set(report["controls"]) >= {"captions", "audio", "video"}
    assert any("captions deranged: video-to-audio unchanged" in r for r in report["reasons"])
    assert (corpus / "train" / "validate" / "ckpt.pt").is_file()
    assert len((corpus / "train" / "validate" / "log.jsonl").read_text().splitlines()) == 12
    assert "a sound dataset fails with probability" in out and "PASSED" in out


@pytest.mark.slow
@pytest.mark.parametrize("kind, named", [
    ("audio", ("text-to-audio", "video-to-audio")),
    ("video", ("text-to-video", "video-to-audio")),
    ("captions", ("text-to-video", "text-to-audio", "text-to-audio+video")),
    ("audio30", ("text-to-audio",)),
])
def test_validate_fails_broken_shards_naming_the_modality(judged, kind, named):
    report = judged(kind)
    failed = _failed(report)
    assert not report["passed"] and report["rates"]["broken_passes"] < 1e-3
    for name in named:
        assert any(line.startswith(f"FAIL: {name}") for line in failed), (name, failed)
    if kind.startswith("audio"):
        assert any("audio does not belong to" in line for line in failed)
        assert not any(line.startswith("FAIL: text-to-video") for line in failed), failed   # video is fine
    if kind == "video":
        assert not any(line.startswith("FAIL: text-to-audio R@") for line in failed), failed
    if kind == "captions":
        assert not any(line.startswith("FAIL: video-to-audio") for line in failed), failed


def test_verdict_fails_too_few_clips_and_no_controls_pass_without_alignment(tmp_path):
    """The verdict on hand-made scores: 20 clips cannot reach both error rates."""
    from valor_data.train.validate import verdict

    def scores(n, r5_hits, lower):
        return {"n": n, "candidates": n, "hits": {"r1": 0, "r5": r5_hits, "r10": r5_hits}, "lower_half": lower,
                "r5": r5_hits / n}
    n = 20
    good = {g: scores(n, n, 0) for g in ("tv", "ta", "tav", "va")}
    chance = {g: scores(n, 1, n // 2) for g in ("tv", "ta", "tav", "va")}
    controls = {"captions": {**chance, "va": good["va"]}, "audio": {**chance, "tv": good["tv"]},
                "video": {**chance, "ta": good["ta"]}}
    result = {"n": n, "per_clip": good, "controls": controls}
    losses = {"drop": 0.5, "first": 2.0, "last": 1.0}
    passed, reasons, rates = verdict(result, losses, TrainConfig())
    assert not passed and reasons[0].startswith("FAIL: 20 evaluation clips") and rates["broken_passes"] > 1e-3
    # 400 clips: enough; a control that keeps its group above chance fails and says why
    n = 400
    good = {g: scores(n, n, 0) for g in ("tv", "ta", "tav", "va")}
    chance = {g: scores(n, 5, n // 2) for g in ("tv", "ta", "tav", "va")}
    controls = {"captions": {**chance, "va": good["va"]}, "audio": {**chance, "tv": good["tv"], "ta": good["ta"]},
                "video": {**chance, "ta": good["ta"]}}
    passed, reasons, _ = verdict({"n": n, "per_clip": good, "controls": controls}, losses, TrainConfig())
    failed = [r for r in reasons if r.startswith("FAIL")]
    assert not passed and len(failed) == 1 and "audio deranged: text-to-audio" in failed[0]
    assert "does not need each clip's own audio" in failed[0]
