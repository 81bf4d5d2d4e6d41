"""The training loop, checkpoints, resume, evaluation and the ``valor-data train`` command."""

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from test_shards_build import built_workdir  # noqa: E402, F401  (the build-shards work dir fixture)

from valor_data.cli import main  # noqa: E402
from valor_data.errors import ValorError  # noqa: E402
from valor_data.train import loop, text  # noqa: E402
from valor_data.train.api import evaluate_checkpoint  # noqa: E402
from valor_data.train.config import TrainConfig  # noqa: E402
from valor_data.train.synthetic import SynthShards, make_synthetic_shards  # noqa: E402

SMALL = {"max_text_len": 16, "text_hidden": 32, "text_layers": 1, "text_heads": 2, "text_ffn": 64,
         "vision_hidden": 32, "vision_layers": 1, "vision_heads": 2, "vision_ffn": 64, "image_size": 32,
         "frames": 2, "audio_hidden": 32, "audio_layers": 1, "audio_heads": 2, "audio_ffn": 64, "embed_dim": 16}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("train-loop")
    make_synthetic_shards(root, SynthShards(splits=(("valor32k-train", 8), ("valor32k-test", 4)), per_shard=4,
                                            seconds=2.0, seed=1))
    return root


def _cli(*args: str) -> int:
    """Run ``valor-data`` in-process; its exit status."""
    try:
        main(list(args))
    except SystemExit as exc:
        return exc.code or 0
    return 0


def _cfg(**kw):
    return TrainConfig(**{"steps": 2, "batch_size": 4, "workers": 0, "log_every": 1, "warmup_steps": 1,
                          "model": SMALL, "caption_samples": 2, "eval_batch_size": 4, "beam_size": 2, **kw})


def test_lr_schedule():
    assert [round(loop.lr_factor(s, 2, 6), 3) for s in range(7)] == [0.5, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0]


def test_train_is_seeded_saves_and_resumes(workdir, tmp_path):
    first = loop.train(workdir, _cfg(), tmp_path / "a")
    again = loop.train(workdir, _cfg(), tmp_path / "b")
    assert [h["loss"] for h in first.history] == [h["loss"] for h in again.history]
    assert first.step == 2 and (tmp_path / "a" / "ckpt.pt").is_file() and (tmp_path / "a" / "vocab.txt").is_file()
    lines = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2]
    assert {"loss", "mga_tv", "mga_ta", "mga_tav", "mgc_tv", "mgc_ta", "mgc_tav", "samples_per_s", "memory_gb",
            "lr"} <= set(lines[0])
    resumed = loop.train(workdir, _cfg(steps=3), tmp_path / "a")
    assert resumed.step == 3 and len(resumed.history) == 3
    assert resumed.history[:2] == first.history
    state = loop.load_checkpoint(tmp_path / "a" / "ckpt.pt")
    assert state["step"] == 3 and state["vocab"] == text.read_vocab(tmp_path / "a" / "vocab.txt")
    done = loop.train(workdir, _cfg(steps=3), tmp_path / "a")         # complete: nothing to do
    assert done.step == 3 and len(done.history) == 3


def test_evaluate_checkpoint(workdir, tmp_path):
    loop.train(workdir, _cfg(steps=1), tmp_path / "train")
    result = evaluate_checkpoint(workdir, _cfg(), str(tmp_path / "train" / "ckpt.pt"))
    assert result["n"] == 4 and result["chance"]["r1"] == 0.25
    assert set(result["retrieval"]) == {"tv", "ta", "tav"}
    assert {"bleu4", "rouge_l", "cider"} <= set(result["captioning"]) and result["captioning"]["n"] == 2
    assert "classification" not in result                            # the VALOR json has no categories
    assert (tmp_path / "train" / "eval-valor32k-test.json").is_file()


def test_vocabulary_sources(workdir, tmp_path):
    proc = loop.Process()
    built, classes = loop.vocabulary_and_classes(
        _cfg(), [str(p) for p in sorted((workdir / "shards").glob("valor32k-train-*.tar"))], tmp_path, proc)
    assert built[:5] == text.SPECIALS and {"circle", "square", "triangle"} & set(built)
    assert classes == ()                                                # VALOR clips: no categories, no head
    given = tmp_path / "given.txt"
    (tmp_path / "empty").mkdir()
    text.write_vocab(text.SPECIALS + ["hello"], given)
    assert loop.vocabulary_and_classes(_cfg(vocab=str(given)), [], tmp_path, proc)[0][-1] == "hello"
    with pytest.raises(ValorError, match="vocabulary not found"):
        loop.vocabulary_and_classes(_cfg(text_init=str(given.parent / "empty")), [], tmp_path, proc)
    assert text.build_vocab(["一个红色的圆形"])[5:] == sorted("一个红色的圆形")


def test_cli_train_then_eval_only(workdir, tmp_path, capsys):
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text("train:\n  model: " + json.dumps(SMALL) + "\n  batch_size: 4\n  workers: 0\n"
                        "  warmup_steps: 1\n  caption_samples: 2\n  beam_size: 1\n")
    work = tmp_path / "w"
    (work / "shards").parent.mkdir(parents=True, exist_ok=True)
    (work / "shards").symlink_to(workdir / "shards")
    assert _cli("train", str(work), "--pipeline", str(pipeline), "--steps", "1", "--log-every", "1") == 0
    out = capsys.readouterr().out
    assert "t2av: R@1" in out and "av2t: R@1" in out and "BLEU-4" in out and "classification" not in out
    assert (work / "train" / "ckpt.pt").is_file() and (work / "train" / "eval.json").is_file()
    assert _cli("train", "-w", str(work), "--pipeline", str(pipeline), "--eval-only", "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert result["split"] == "valor32k-test" and result["n"] == 4
    assert _cli("train", str(work), "--text-init", str(tmp_path / "missing-bert")) == 1
    assert "no such checkpoint folder" in capsys.readouterr().err


def test_chinese_captions_and_categories(tmp_path):
    make_synthetic_shards(tmp_path, SynthShards(splits=(("youku-classification-train", 4),
                                                        ("youku-classification-test", 4)),
                                                seconds=2.0, language="zh", categories=True, seed=2))
    cfg = _cfg(steps=1, train_split="youku-classification-train", eval_split="youku-classification-test")
    run = loop.train(tmp_path, cfg)
    vocab = text.read_vocab(tmp_path / "train" / "vocab.txt")
    assert "红" in vocab or "蓝" in vocab or "绿" in vocab or "黄" in vocab     # character-level
    assert "移" in vocab and "移动" not in vocab
    from valor_data.train.evaluate import evaluate_split

    classes = json.loads((tmp_path / "train" / "classes.json").read_text(encoding="utf-8"))
    assert classes and all(["circle", "square", "triangle"][i] == name for i, name in classes)   # the shape
    assert run.model_cfg.classes == tuple(i for i, _ in classes) and run.model.classifier.out_features == len(classes)
    assert run.history[0]["class"] > 0                                   # the head is trained
    result = evaluate_split(tmp_path, cfg, run.model, run.tokenizer, torch.device("cpu"))
    scores = result["classification"]
    assert scores["n"] == 4 and 0.0 <= scores["top1"] <= scores["top5"] <= 1.0 and scores["classes"] == len(classes)
    assert scores["chance"]["top1"] >= 1 / len(classes)
    assert set(result["retrieval_c2t"]) == {"tv", "ta", "tav"} and result["retrieval_c2t"]["tav"]["n"] == 4
    again = evaluate_checkpoint(tmp_path, cfg, str(tmp_path / "train" / "ckpt.pt"))   # the head comes back
    assert again["classification"] == scores
    example = result["captioning"]["examples"][0]
    assert " " not in example["reference"] and " " not in example["generated"]


def test_cli_config_layers(tmp_path):
    from valor_data.commands.train import _config

    pipeline = tmp_path / "p.yaml"
    pipeline.write_text("train:\n  steps: 7\n  model: {frames: 2}\n")
    cfg = _config(str(pipeline), {"shards": ("a.tar",), "eval_shards": (), "lr": 0.01, "steps": None},
                  ("fine_grained=false", "image_size=96"))
    assert cfg.steps == 7 and cfg.lr == 0.01 and cfg.shards == ["a.tar"] and cfg.eval_shards == []
    assert cfg.model == {"frames": 2, "fine_grained": False, "image_size": 96}


def test_trains_on_what_build_shards_writes(built_workdir, tmp_path):  # noqa: F811
    """The real shard builder's output (a read-only work dir) through training and evaluation."""
    cfg = _cfg(steps=1)
    run = loop.train(built_workdir, cfg, tmp_path / "run")
    from valor_data.train.evaluate import evaluate_split

    listing = json.loads((built_workdir / "shards" / "valor32k-test.shards.json").read_text())
    result = evaluate_split(built_workdir, cfg, run.model, run.tokenizer, torch.device("cpu"))
    assert result["n"] == sum(entry["nsamples"] for entry in listing["shardlist"])
    assert not (built_workdir / "train").exists()
