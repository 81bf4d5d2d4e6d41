"""End to end: ``valor-data train --validate`` learns aligned synthetic shards; the control stays at chance.

The clips are learnable (captions name the shape, colour, motion and sound); the tiny preset
trains on CPU through the real webdataset + DataLoader path, and is evaluated on held-out clips.
"""

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from valor_data.cli import main  # noqa: E402
from valor_data.train.config import TrainConfig  # noqa: E402
from valor_data.train.synthetic import SynthShards, make_synthetic_shards  # noqa: E402
from valor_data.train.validate import verdict  # noqa: E402

PIPELINE = """\
train:
  preset: tiny
  model: {max_text_len: 16}
  steps: 60
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
    make_synthetic_shards(root, SynthShards(splits=(("valor32k-train", 240), ("valor32k-test", 80)), per_shard=60))
    return root


@pytest.mark.slow
def test_validate_learns_aligned_shards_and_the_control_stays_at_chance(corpus, tmp_path):
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(PIPELINE)
    try:
        main(["train", "--validate", str(corpus), "--pipeline", str(pipeline)])
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    report = json.loads((corpus / "validation.json").read_text())
    chance = report["chance"]
    aligned, control = report["metrics"]["retrieval"]["tav"], report["control"]["retrieval"]["tav"]
    assert report["metrics"]["n"] == 80 and chance["r1"] == pytest.approx(1 / 80)
    assert aligned["r1"] >= 5 * chance["r1"], report["reasons"]
    assert control["r1"] <= 2 * chance["r1"], report["reasons"]
    assert control["r5"] <= 2 * chance["r5"], report["reasons"]
    assert report["loss"]["last"] < report["loss"]["first"]
    assert report["passed"] and code == 0, report["reasons"]
    for run in ("validate", "validate-control"):
        assert (corpus / "train" / run / "ckpt.pt").is_file()
        assert len((corpus / "train" / run / "log.jsonl").read_text().splitlines()) == 6
    # a dataset whose captions do not belong to its clips (the control) fails validation
    passed, reasons = verdict(report["control"], report["control"], report["control_loss"], TrainConfig())
    assert not passed and any(r.startswith("FAIL") and "R@5" in r for r in reasons)
    # too few evaluation clips cannot pass, whatever the scores
    passed, reasons = verdict(report["metrics"], report["control"], report["loss"], TrainConfig(min_eval_clips=81))
    assert not passed and reasons[0].startswith("FAIL: 80 evaluation clips")
