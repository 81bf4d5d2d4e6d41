"""Frames per clip and how they are resized: VALOR's settings per recipe, squash vs crop, a run that
trains on one frame count and evaluates on another."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("av")
pytest.importorskip("transformers")

from valor_data.curate import scoring  # noqa: E402
from valor_data.media.ffmpeg import run_ffmpeg  # noqa: E402
from valor_data.synth.shards import SynthShards, make_synthetic_shards  # noqa: E402
from valor_data.train import api, data, loop, video  # noqa: E402
from valor_data.train.config import TrainConfig  # noqa: E402
from valor_data.train.model import MAX_FRAMES  # noqa: E402

SMALL = {"max_text_len": 16, "text_hidden": 32, "text_layers": 1, "text_heads": 2, "text_ffn": 64,
         "vision_hidden": 32, "vision_layers": 1, "vision_heads": 2, "vision_ffn": 64, "image_size": 32,
         "frames": 2, "audio_hidden": 32, "audio_layers": 1, "audio_heads": 2, "audio_ffn": 64, "embed_dim": 16}


@pytest.fixture(scope="module")
def bars(tmp_path_factory) -> bytes:
    """A 320x180 clip: green, with a red bar on the left 60 columns and a blue one on the right 60."""
    out = tmp_path_factory.mktemp("bars") / "bars.mp4"
    run_ffmpeg(["-y", "-f", "lavfi", "-i", "color=c=green:s=320x180:r=25:d=2",
                "-vf", "drawbox=x=0:y=0:w=60:h=180:color=red:t=fill,drawbox=x=260:y=0:w=60:h=180:color=blue:t=fill",
                "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(out)], timeout=120)
    return out.read_bytes()


def _dominant(column: np.ndarray) -> str:
    """The strongest channel of a [3, H] pixel column, by its mean."""
    return "rgb"[int(column.reshape(3, -1).mean(1).argmax())]


def test_squash_keeps_the_sides_crop_loses_them(bars):
    size = 64
    squash = video.decode_frames(bars, 3, size, None, "squash")
    crop = video.decode_frames(bars, 3, size, None, "crop")
    assert squash.shape == crop.shape == (3, 3, size, size) and squash.dtype == crop.dtype == np.uint8
    for frame in squash:                   # 60 of 320 columns: 12 of 64 after squashing
        assert _dominant(frame[:, :, 2]) == "r" and _dominant(frame[:, :, -3]) == "b"
        assert _dominant(frame[:, :, size // 2]) == "g"
    for frame in crop:                     # the centre 180 columns of 320 (70..250): all green
        assert {_dominant(frame[:, :, x]) for x in range(size)} == {"g"}
    assert video.decode_frames(bars, 3, size, None).tolist() == crop.tolist()      # crop: the default
    with pytest.raises(ValueError, match="resize mode"):
        video.decode_frames(bars, 1, size, None, "stretch")


def test_recipes_set_valors_frames_and_resize():
    base = TrainConfig(preset="base")
    assert (base.recipe, base.frames, base.eval_frames, base.frame_resize) == ("pretrain", 4, 8, "squash")
    tuned = TrainConfig(preset="base", recipe="finetune")
    assert (tuned.frames, tuned.eval_frames, tuned.frame_resize) == (4, 8, "squash")
    tiny = TrainConfig()
    assert (tiny.frames, tiny.eval_frames, tiny.frame_resize) == (None, None, "crop")   # the model's frames
    mine = TrainConfig(preset="base", frames=2, eval_frames=16, frame_resize="crop")
    assert (mine.frames, mine.eval_frames, mine.frame_resize) == (2, 16, "crop")           # explicit values win
    for bad in ({"frames": 0}, {"eval_frames": MAX_FRAMES + 1}, {"frame_resize": "stretch"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            TrainConfig(**bad)


def test_sample_specs_take_the_sides_frames():
    from valor_data.train.model import model_config

    cfg = model_config("base")
    assert data.SampleSpec.of(cfg) == data.SampleSpec(8, 224, 2, 512, 42, 22050, "crop")
    assert data.SampleSpec.of(cfg, 4, "squash") == data.SampleSpec(4, 224, 2, 512, 42, 22050, "squash")


def test_cli_flags(tmp_path, capsys):
    from valor_data.cli import main
    from valor_data.commands.train import _config

    flags = {"shards": (), "eval_shards": (), "frames": 3, "eval_frames": 6, "frame_resize": "crop", "preset": "base"}
    cfg = _config(None, flags, ())
    assert (cfg.frames, cfg.eval_frames, cfg.frame_resize) == (3, 6, "crop")
    for args, why in ((["--eval-frames", "0"], "eval_frames must be in 1..32"),
                      (["--frame-resize", "stretch"], "'stretch' is not one of")):
        with pytest.raises(SystemExit) as exited:
            main(["train", str(tmp_path / "w"), *args])
        assert exited.value.code and why in capsys.readouterr().err


def test_trains_on_two_frames_and_evaluates_on_four(tmp_path):
    """A tiny run (2 training frames, squash) evaluated on 4 frames: eval.json is written, the
    decoder's memory at evaluation is 4 frames of tokens, and scoring decodes as evaluation did."""
    make_synthetic_shards(tmp_path, SynthShards(splits=(("valor32k-train", 8), ("valor32k-test", 4)), per_shard=4,
                                                seconds=2.0, seed=1))
    cfg = TrainConfig(steps=2, batch_size=4, workers=0, log_every=1, warmup_steps=1, model=SMALL, caption_samples=2,
                      eval_batch_size=4, beam_size=2, frames=2, eval_frames=4, frame_resize="squash")
    result = api.train_and_evaluate(tmp_path, cfg)
    written = json.loads((tmp_path / "train" / "eval.json").read_text())
    assert written["n"] == result["n"] == 4 and (written["frames"], written["frame_resize"]) == (4, "squash")
    assert set(written["retrieval"]) == {"tv", "ta", "tav"} and written["captioning"]["n"] == 2

    model, _, state = loop.model_from_checkpoint(tmp_path / "train" / "ckpt.pt")
    assert state["train_config"]["frames"] == 2 and model.cfg.frames == 2
    shape = model.cfg
    frames, fbank = torch.zeros(1, 4, 3, shape.image_size, shape.image_size), torch.zeros(1, 1, 512, 64)
    with torch.no_grad():
        memory = model.memory(model.encode_video(frames), model.encode_audio(fbank), "tav")
    assert memory.shape == (1, 4 * shape.frame_tokens + shape.audio_slices * shape.slice_tokens, shape.text_hidden)

    assert scoring.eval_spec(model, state) == data.SampleSpec.of(model.cfg, 4, "squash")
    old = {**state, "train_config": {k: v for k, v in state["train_config"].items()
                                     if k not in ("frames", "eval_frames", "frame_resize")}}
    assert scoring.eval_spec(model, old) == data.SampleSpec.of(model.cfg, 2, "crop")   # saved before the keys
