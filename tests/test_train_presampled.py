"""Pre-sampled frames and filterbank members: the same frames, shapes and choice rule as the video path."""

import io
import json
import random
import tarfile

import numpy as np
import pytest

torch = pytest.importorskip("torch")
av = pytest.importorskip("av")
Image = pytest.importorskip("PIL.Image")

from valor_data.synth.shards import SynthShards, make_synthetic_shards  # noqa: E402
from valor_data.train import audio, data, presampled, text, video, workers  # noqa: E402

N, K, SIZE, RATE = 4, 3, 64, 22050
SPEC = data.SampleSpec(frames=N, image_size=SIZE, audio_slices=2, slice_frames=128, max_text_len=16, audio_rate=RATE)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Three synthetic clips (4 s, 25 fps, a keyframe every 0.5 s as fetch writes them): their members."""
    root = tmp_path_factory.mktemp("presampled")
    make_synthetic_shards(root, SynthShards(splits=(("s", 3),), seconds=4.0, width=128, height=96, fps=25.0,
                                            keyframe_s=0.5, per_shard=3, seed=4))
    samples: dict[str, dict[str, bytes]] = {}
    with tarfile.open(root / "shards" / "s-000000.tar") as tar:
        for member in tar:
            key, ext = member.name.split(".", 1)
            samples.setdefault(key, {})[ext] = tar.extractfile(member).read()
    return samples


@pytest.fixture(scope="module")
def members(clips):
    return {key: {presampled.FRAMES_EXT: presampled.frames_member(m["mp4"], N, K, SIZE),
                  presampled.fbank_ext(RATE): presampled.fbank_member(m["flac"], RATE)} for key, m in clips.items()}


def _jpeg_roundtrip(frames: np.ndarray) -> np.ndarray:
    out = []
    for frame in frames:
        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(frame.transpose(1, 2, 0))).save(buffer, "JPEG", quality=90)
        out.append(np.asarray(Image.open(buffer).convert("RGB")).transpose(2, 0, 1))
    return np.stack(out)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def test_candidates_span_their_segment_and_hold_the_test_time_frame():
    for total, n, k in ((100, 4, 3), (250, 8, 3), (31, 8, 5), (7, 8, 3), (2, 4, 2)):
        grid = presampled.candidates(total, n, k)
        assert [row[k // 2] for row in grid] == video.frame_indices(total, n, None)
        for (first, last), row in zip(video.segments(total, n), grid, strict=True):
            assert all(first <= i <= min(last, total - 1) for i in row) and row == sorted(row)
            if last - first + 1 >= k:
                assert len(set(row)) == k          # distinct frames when the segment has room
    assert presampled.candidates(100, 4, 3)[0] == [4, 12, 20]


def test_eval_frames_are_the_video_paths_frames_through_jpeg(clips, members):
    for key, m in clips.items():
        from_video = video.decode_frames(m["mp4"], N, SIZE, None)
        found = presampled.frames({**m, **members[key]}, SPEC, None)
        assert found.shape == from_video.shape == (N, 3, SIZE, SIZE) and found.dtype == np.uint8
        assert (found == _jpeg_roundtrip(from_video)).all(), key      # the same frames, JPEG's error only
        assert min(_psnr(found[i], from_video[i]) for i in range(N)) > 22.0   # q90 on noise-textured frames


def test_training_draws_every_candidate_of_every_segment(clips, members):
    """200 draws of 3 candidates: a given candidate is missed with probability (2/3)^200 < 1e-35,
    so over 3 candidates x 4 segments this fails by chance less than 1e-33."""
    key = next(iter(clips))
    blob = members[key][presampled.FRAMES_EXT]
    line, _, body = blob.partition(b"\n")
    lengths = np.cumsum([0, *json.loads(line)["length"]])
    stored = [np.asarray(Image.open(io.BytesIO(body[lengths[i]:lengths[i + 1]])).convert("RGB")).transpose(2, 0, 1)
              for i in range(N * K)]
    seen: set[tuple[int, int]] = set()
    rng = random.Random(7)
    for _ in range(200):
        frames = presampled.read_frames(blob, N, SIZE, rng)
        for segment in range(N):
            picks = [c for c in range(K) if (stored[segment * K + c] == frames[segment]).all()]
            assert picks, f"segment {segment}: a frame that is no candidate of it"
            seen.add((segment, picks[0]))
    assert seen == {(s, c) for s in range(N) for c in range(K)}


def test_other_shapes_and_settings_fall_back_to_the_media(clips, members):
    key = next(iter(clips))
    m, extra = clips[key], members[key]
    other = data.SampleSpec(frames=N + 1, image_size=SIZE, audio_slices=2, slice_frames=128, audio_rate=RATE)
    assert (presampled.frames({**m, **extra}, other, None) == video.decode_frames(m["mp4"], N + 1, SIZE, None)).all()
    assert presampled.fbank_ext(16000) != presampled.fbank_ext(RATE)
    stale = {presampled.fbank_ext(16000): presampled.fbank_member(m["flac"], 16000)}   # made under other settings
    computed = audio.audio_slices(audio.read_flac(m["flac"], RATE), 2, 128, None, RATE)
    assert torch.equal(presampled.fbank({**m, **stale}, SPEC, None), computed)


def test_members_serve_only_their_resize_mode(clips, members):
    """A member written ``crop`` (as every member was before the mode was recorded) is not used for
    ``squash``: the frames come from the mp4, squashed; a ``squash`` member serves ``squash``."""
    key = next(iter(clips))
    m, crop_member = clips[key], members[key][presampled.FRAMES_EXT]
    squash = data.SampleSpec(frames=N, image_size=SIZE, audio_slices=2, slice_frames=128, audio_rate=RATE,
                             resize="squash")
    squashed = video.decode_frames(m["mp4"], N, SIZE, None, "squash")
    cropped = video.decode_frames(m["mp4"], N, SIZE, None)
    assert (squashed != cropped).any()                                  # a 4:3 picture: the modes differ
    assert json.loads(crop_member.partition(b"\n")[0])["resize"] == "crop"
    assert presampled.read_frames(crop_member, N, SIZE, None, "squash") is None
    assert (presampled.frames({**m, presampled.FRAMES_EXT: crop_member}, squash, None) == squashed).all()
    line, _, body = crop_member.partition(b"\n")
    legacy = json.dumps({k: v for k, v in json.loads(line).items() if k != "resize"}).encode() + b"\n" + body
    assert (presampled.frames({**m, presampled.FRAMES_EXT: legacy}, SPEC, None) == _jpeg_roundtrip(cropped)).all()
    assert presampled.read_frames(legacy, N, SIZE, None, "squash") is None          # no mode recorded: crop
    squash_member = presampled.frames_member(m["mp4"], N, K, SIZE, resize="squash")
    assert (presampled.frames({**m, presampled.FRAMES_EXT: squash_member}, squash, None)
            == _jpeg_roundtrip(squashed)).all()
    assert presampled.read_frames(squash_member, N, SIZE, None, "crop") is None


def test_the_filterbank_member_is_keyed_by_every_audio_setting(monkeypatch):
    before = presampled.fbank_ext(RATE)
    for name, value in (("MEL_BINS", 128), ("SHIFT_MS", 12.5), ("FRAME_MS", 20.0), ("PREEMPHASIS", 0.9),
                        ("LOW_FREQ", 0.0)):
        with monkeypatch.context() as patch:
            patch.setattr(audio, name, value)
            assert presampled.fbank_ext(RATE) != before, name
    assert presampled.fbank_ext(RATE) == before


def test_stored_filterbank_matches_the_computed_one(clips, members):
    for key, m in clips.items():
        stored = presampled.fbank({**m, **members[key]}, SPEC, None)
        computed = audio.audio_slices(audio.read_flac(m["flac"], RATE), 2, 128, None, RATE)
        assert stored.shape == computed.shape == (2, 128, audio.MEL_BINS)
        assert float((stored - computed).abs().max()) < 5e-3      # float16 storage
        for seed in range(3):                                     # the same random slices
            a = presampled.fbank({**m, **members[key]}, SPEC, random.Random(seed))
            b = audio.audio_slices(audio.read_flac(m["flac"], RATE), 2, 128, random.Random(seed), RATE)
            assert float((a - b).abs().max()) < 5e-3


def _tar(path, clips, members=None):
    with tarfile.open(path, "w") as tar:
        for key, m in clips.items():
            for ext, blob in {**m, **((members or {}).get(key) or {})}.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(blob)
                tar.addfile(info, io.BytesIO(blob))
    return str(path)


def test_the_loader_reads_the_members(clips, members, tmp_path):
    tokenizer = text.make_tokenizer(text.build_vocab(m["txt"].decode() for m in clips.values()))
    plain, fast = _tar(tmp_path / "plain-000000.tar", clips), _tar(tmp_path / "fast-000000.tar", clips, members)
    got = {}
    for name, url in (("plain", plain), ("fast", fast)):
        batch = next(iter(data.make_loader(data.ShardStream([url], SPEC, tokenizer, 3, train=False), 1, prefetch=2)))
        got[name] = batch
    assert got["plain"]["key"] == got["fast"]["key"]
    assert got["plain"]["frames"].shape == got["fast"]["frames"].shape == (3, N, 3, SIZE, SIZE)
    assert got["plain"]["fbank"].shape == got["fast"]["fbank"].shape
    assert min(_psnr(a.numpy(), b.numpy()) for a, b in zip(got["plain"]["frames"], got["fast"]["frames"],
                                                           strict=True)) > 22.0
    assert float((got["plain"]["fbank"] - got["fast"]["fbank"]).abs().max()) < 5e-3
    train = next(iter(data.make_loader(data.ShardStream([fast], SPEC, tokenizer, 3, train=True, shuffle_buffer=3), 0)))
    assert train["frames"].shape == (3, N, 3, SIZE, SIZE)


def test_default_workers_follow_the_machine():
    assert workers.default_workers(cores=16, local_procs=1) == 8
    assert workers.default_workers(cores=16, local_procs=4) == 3
    assert workers.default_workers(cores=2, local_procs=1) == 1
    assert workers.default_workers(cores=1, local_procs=1) == 0
    assert workers.pin_memory(None, "cuda") and not workers.pin_memory(None, "cpu")
    assert not workers.pin_memory(False, "cuda")
    from valor_data.train.config import TrainConfig

    assert TrainConfig().workers == workers.default_workers() and TrainConfig(workers=3).workers == 3
    assert TrainConfig().prefetch == workers.PREFETCH and TrainConfig().pin_memory is None


def test_the_build_setting_is_off_by_default_and_checked(tmp_path):
    from click.testing import CliRunner

    from valor_data.cli import cli
    from valor_data.shards.config import ShardConfig

    assert ShardConfig().presampled() is None                   # existing shards stay byte-identical
    assert ShardConfig(presampled_frames=3).presampled() == {"frames": 3, "segments": 4, "size": 224,   # base's
                                                             "resize": "squash", "quality": 90,        # training
                                                             "audio_rate": 22050}
    result = CliRunner().invoke(cli, ["build-shards", "-w", str(tmp_path / "w"), "--presampled-frames", "-1"])
    assert result.exit_code != 0 and "presampled_frames must be >= 0" in str(result.exception)
    result = CliRunner().invoke(cli, ["build-shards", "-w", str(tmp_path / "w"), "--presampled-resize", "stretch"])
    assert result.exit_code != 0 and "'stretch' is not one of" in result.output
