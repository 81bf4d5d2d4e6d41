"""Frame sampling: uniform segments, and keyframe seeks that pick the same frames as one pass."""

import io
import random
import tarfile

import pytest

av = pytest.importorskip("av")

from valor_data.synth.shards import SynthShards, make_synthetic_shards  # noqa: E402
from valor_data.train import video  # noqa: E402


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """One mp4 as rendered (one keyframe) and one re-encoded as fetch does (a keyframe per 0.5 s, B-frames)."""
    out = {}
    for name, keyframe_s in (("sparse", None), ("dense", 0.5)):
        root = tmp_path_factory.mktemp(name)
        make_synthetic_shards(root, SynthShards(splits=(("s", 1),), seconds=4.0, width=160, height=120, fps=25.0,
                                                keyframe_s=keyframe_s, seed=3))
        with tarfile.open(next((root / "shards").glob("*.tar"))) as tar:
            out[name] = next(tar.extractfile(m).read() for m in tar if m.name.endswith(".mp4"))
    return out


def _keyframes(data):
    with av.open(io.BytesIO(data)) as container:
        return sum(p.is_keyframe for p in container.demux(container.streams.video[0]))


def test_frame_indices():
    assert video.frame_indices(40, 4, None) == [4, 14, 24, 34]
    rng = random.Random(0)
    for _ in range(20):
        picks = video.frame_indices(40, 4, rng)
        assert all(10 * i <= p < 10 * (i + 1) for i, p in enumerate(picks))
    assert video.frame_indices(2, 4, None) == [0, 0, 1, 1]


def test_seeking_picks_the_frames_one_pass_picks(clips):
    data = clips["dense"]
    assert _keyframes(data) >= 8 and _keyframes(clips["sparse"]) == 1
    for wanted in ([3, 37, 50, 98], [0, 12, 13, 25, 26, 51, 74, 99]):
        with av.open(io.BytesIO(data)) as container:
            stream = container.streams.video[0]
            packets = list(container.demux(stream))
            one_pass = [f.to_ndarray(format="rgb24") for f in video.in_one_pass(packets, wanted)]
            seeked = [f.to_ndarray(format="rgb24") for f in video.by_seeking(container, stream, wanted)]
        assert all((a == b).all() for a, b in zip(one_pass, seeked, strict=True)), wanted


@pytest.mark.parametrize("kind", ["sparse", "dense"])
def test_decode_frames_shape(clips, kind):
    frames = video.decode_frames(clips[kind], 8, 64, random.Random(1))
    assert frames.shape == (8, 3, 64, 64) and frames.dtype.name == "uint8"
    again = video.decode_frames(clips[kind], 8, 64, None)
    assert again.shape == (8, 3, 64, 64) and (again == video.decode_frames(clips[kind], 8, 64, None)).all()


def test_missing_tail_frames_repeat_the_last(clips):
    with av.open(io.BytesIO(clips["sparse"])) as container:
        packets = list(container.demux(container.streams.video[0]))
        frames = video.in_one_pass(packets, [99, 500])
    assert frames[0].pts == frames[1].pts                         # frame 500 does not exist: the last one
