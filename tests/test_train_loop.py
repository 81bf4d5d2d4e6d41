"""The training loop, checkpoints, resume, evaluation and the ``valor-data train`` command."""

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from test_shards_build import built_workdir  # noqa: E402, F401  (the build-shards work dir fixture)

from valor_data.cli import main  # noqa: E402
from valor_data.errors import ValorError  # noqa: E402
from valor_data.synth.shards import SynthShards, make_synthetic_shards  # noqa: E402
from valor_data.train import loop, text  # noqa: E402
from valor_data.train.api import evaluate_checkpoint  # noqa: E402
from valor_data.train.config import TrainConfig  # noqa: E402

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
    assert TrainConfig(steps=300).warmup == 30 and TrainConfig(steps=6).warmup == 1     # VALOR: 10 % warmup
    assert TrainConfig(steps=300, warmup_steps=7).warmup == 7 and TrainConfig(steps=5, warmup_ratio=0.0).warmup == 0


def test_recipes_follow_valor():
    tiny, base = TrainConfig(), TrainConfig(preset="base")
    assert (tiny.recipe, tiny.lr, tiny.vision_lr, tiny.audio_lr, tiny.text_lr) == ("tiny", 5e-4, 5e-4, 5e-4, 5e-4)
    assert (base.recipe, base.lr, base.vision_lr, base.audio_lr, base.text_lr) == ("pretrain", 1e-4, 5e-7, 1e-4, 1e-4)
    assert (base.betas, base.warmup_ratio, base.grad_clip, base.weight_decay) == ((0.9, 0.98), 0.1, 5.0, 0.01)
    tuned = TrainConfig(preset="base", recipe="finetune", lr=3e-5)
    assert (tuned.lr, tuned.vision_lr, tuned.audio_lr) == (3e-5, 5e-7, 3e-5)    # the CLIP rate is its own
    with pytest.raises(ValueError, match="recipe"):
        TrainConfig(recipe="fast")


def test_parameter_groups_have_the_configured_rates():
    from valor_data.train.model import VALOR, model_config

    model = VALOR(model_config("tiny", {**SMALL, "vocab_size": 20}))
    cfg = TrainConfig(preset="base", recipe="pretrain", audio_lr=3e-5)
    optimizer, scheduler = loop.make_optimizer(model, cfg)
    groups = {g["name"]: g for g in optimizer.param_groups}
    assert set(groups) == {f"{part}{suffix}" for part in ("text", "vision", "audio", "heads")
                           for suffix in ("", "-no-decay")}
    rates = {name: g["initial_lr"] for name, g in groups.items()}
    assert rates == {"text": 1e-4, "text-no-decay": 1e-4, "vision": 5e-7, "vision-no-decay": 5e-7,
                     "audio": 3e-5, "audio-no-decay": 3e-5, "heads": 1e-4, "heads-no-decay": 1e-4}
    assert all(g["betas"] == (0.9, 0.98) and g["eps"] == 1e-6 for g in groups.values())
    assert all(g["weight_decay"] == (0.0 if name.endswith("no-decay") else 0.01) for name, g in groups.items())
    names = {id(p): n for n, p in model.named_parameters()}
    members = {names[id(p)]: name for name, g in groups.items() for p in g["params"]}
    assert len(members) == len(names)                                      # every parameter, once
    assert members["vision.encoder.layers.0.mlp.fc1.weight"] == "vision"
    assert members["audio.embeddings.patch_embeddings.projection.weight"] == "audio"
    assert members["text.bert.encoder.layer.0.crossattention.self.query.weight"] == "text"
    assert members["token_weight.text.0.weight"] == "heads" and members["video_frame_embedding"] == "heads"
    # VALOR's rule is by name (optim/misc.py): biases and BERT's LayerNorm are not decayed; CLIP's and
    # AST's own norms and the type embeddings are (VALOR's ln_*, layernorm*, *_type_embeddings)
    assert members["text.bert.encoder.layer.0.attention.output.LayerNorm.weight"] == "text-no-decay"
    assert members["vision.encoder.layers.0.mlp.fc1.bias"] == "vision-no-decay"
    assert members["video_type_embedding"] == "heads" and members["audio.layernorm.weight"] == "audio"
    assert members["vision.encoder.layers.0.layer_norm1.weight"] == "vision"
    for _ in range(cfg.warmup):                                            # warmup: 10 % of the 300 steps
        optimizer.step()
        scheduler.step()
    assert groups["vision"]["lr"] == pytest.approx(5e-7) and groups["heads"]["lr"] == pytest.approx(1e-4)


def test_gradients_are_clipped_before_the_step():
    layer = torch.nn.Linear(4, 3)
    optimizer = torch.optim.SGD(layer.parameters(), lr=1.0)
    layer.weight.grad, layer.bias.grad = torch.full((3, 4), 3.0), torch.full((3,), 4.0)
    before = layer.weight.detach().clone()
    norm = loop.clip_and_step(layer, optimizer, 5.0)
    assert norm.item() == pytest.approx((12 * 9 + 3 * 16) ** 0.5)              # the norm before clipping
    clipped = torch.cat([layer.weight.grad.flatten(), layer.bias.grad]).norm().item()
    assert clipped == pytest.approx(5.0, rel=1e-5)
    assert torch.allclose(before - layer.weight.detach(), layer.weight.grad)   # the step used the clipped one
    layer.weight.grad, layer.bias.grad = torch.full((3, 4), 3.0), torch.full((3,), 4.0)
    assert loop.clip_and_step(layer, optimizer, 0.0).item() == pytest.approx(norm.item())   # 0: no clipping
    assert layer.bias.grad.eq(4.0).all()


@pytest.mark.slow
def test_base_preset_trains_two_steps_on_cpu_without_the_network(workdir, tmp_path, monkeypatch):
    """Random init (no checkpoint folders): BERT-base, CLIP ViT-B/16 and AST-base widths; two frames,
    one audio slice and batch 1 keep it light. Any attempt to reach a non-loopback host fails the test."""
    import socket

    reached = []

    def guard(original):
        def call(self_or_host, *args, **kwargs):
            address = args[0] if args else None
            host = address[0] if isinstance(address, tuple) else self_or_host if isinstance(self_or_host, str) else None
            if host not in (None, "127.0.0.1", "localhost", "::1"):
                reached.append(host)
                raise OSError(f"test: network access to {host}")
            return original(self_or_host, *args, **kwargs)
        return call

    monkeypatch.setattr(socket.socket, "connect", guard(socket.socket.connect))
    monkeypatch.setattr(socket, "getaddrinfo", guard(socket.getaddrinfo))
    cfg = TrainConfig(preset="base", steps=2, batch_size=1, workers=0, log_every=1, shuffle_buffer=4, frames=2,
                      model={"frames": 2, "audio_slices": 1})
    run = loop.train(workdir, cfg, tmp_path / "base")
    assert not reached and run.step == 2 and run.model_cfg.text_hidden == 768 and run.model_cfg.image_size == 224
    assert run.model_cfg.memory_tokens == 2 * 197 + 129
    assert [round(r["lr"], 12) for r in run.history] == [5e-5, 0.0]           # after each step: pretrain's 1e-4 decays
    assert all(r["grad_norm"] > 0 for r in run.history)


def test_train_is_seeded_saves_and_resumes(workdir, tmp_path):
    first = loop.train(workdir, _cfg(), tmp_path / "a")
    again = loop.train(workdir, _cfg(), tmp_path / "b")
    assert [h["loss"] for h in first.history] == [h["loss"] for h in again.history]
    assert first.step == 2 and (tmp_path / "a" / "ckpt.pt").is_file() and (tmp_path / "a" / "vocab.txt").is_file()
    lines = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2]
    assert {"loss", "mga_tv", "mga_ta", "mga_tav", "mgc_tv", "mgc_ta", "mgc_tav", "samples_per_s", "memory_gb",
            "lr", "grad_norm"} <= set(lines[0])
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


def test_captions_are_cleaned_as_valor():
    assert text.clean("A  Red, square MOVES left!  (pink-noise)") == "a red square moves left pinknoise"
    vocab = text.build_vocab(["A red square.", "a RED circle, moving!"])
    assert vocab[5:] == ["a", "red", "circle", "moving", "square"]                 # no punctuation tokens
    tokenizer = text.make_tokenizer(vocab)
    ids, mask = text.encode(tokenizer, ["A red, SQUARE!"], 42)                     # VALOR's 40 tokens + 2
    assert ids.shape == (1, 42) and text.decode(tokenizer, ids[0].tolist()) == "a red square"
    long_ids, _ = text.encode(tokenizer, [" ".join(["red"] * 60)], 42)
    assert (long_ids[0] == vocab.index("red")).sum() == 40


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
