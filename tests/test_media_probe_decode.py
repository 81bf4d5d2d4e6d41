"""PyAV probing and one-pass reading: container sniffing, sparse keyframe-aware sampling,
whole-audio decoding in any sample format, and counted (never raised) decode problems."""

from __future__ import annotations

import random
from pathlib import Path

import av
import av.logging
import numpy as np
import pytest

from valor_data.media.decode import THUMB_H, THUMB_W, Problems, frame_samples, libav_errors, read_media
from valor_data.media.ffmpeg import run_ffmpeg
from valor_data.media.probe import ProbeError, describe, looks_like_text, open_media

SECONDS = 4.0


def _encode(out: Path, gop: int, extra_video: list[str] | None = None) -> Path:
    run_ffmpeg(["-y", "-f", "lavfi", "-i", f"testsrc2=s=320x240:r=25:d={SECONDS}",
                "-f", "lavfi", "-i", f"sine=f=440:r=44100:d={SECONDS}",
                *(extra_video or []), "-c:v", "libx264", "-preset", "ultrafast", "-g", str(gop),
                "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k", "-shortest", "-movflags", "+faststart", str(out)],
               timeout=120)
    return out


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("media")
    files = {"short_gop": _encode(folder / "short_gop.mp4", 10), "long_gop": _encode(folder / "long_gop.mp4", 250)}
    files["wav"] = folder / "tone.wav"
    run_ffmpeg(["-y", "-f", "lavfi", "-i", "aevalsrc=0.5*sin(2*PI*440*t)|0.25*sin(2*PI*440*t):s=16000:d=2",
                "-c:a", "pcm_s16le", str(files["wav"])], timeout=60)
    broken = bytearray(files["long_gop"].read_bytes())
    rng = random.Random(1)
    for _ in range(40):
        at = rng.randrange(len(broken) // 4, len(broken) - 300)
        broken[at: at + 200] = bytes(rng.randrange(256) for _ in range(200))
    files["scrambled"] = folder / "scrambled.mp4"
    files["scrambled"].write_bytes(bytes(broken))
    return files


def _slots(n: int, seconds: float = SECONDS) -> list[tuple[float, float]]:
    return [(i * seconds / n, (i + 1) * seconds / n) for i in range(n)]


def test_open_media_names_what_is_wrong(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "page.mp4").write_bytes(b"<!DOCTYPE html><html><body>403 Forbidden</body></html>\n")
    (tmp_path / "noise.mkv").write_bytes(bytes(random.Random(0).randrange(256) for _ in range(4096)))
    for name, reason in [("empty.mp4", "empty_file"), ("page.mp4", "not_media"), ("noise.mkv", "unreadable")]:
        with pytest.raises(ProbeError) as info:
            open_media(tmp_path / name)
        assert info.value.reason == reason
    with pytest.raises(FileNotFoundError):
        open_media(tmp_path / "absent.mp4")


def test_looks_like_text():
    assert looks_like_text(b"  <html>") and looks_like_text(b'{"error": 1}') and looks_like_text(b"a,b\n1,2\n")
    assert not looks_like_text(b"\x00\x00\x00\x18ftypmp42") and not looks_like_text(b"\x1aE\xdf\xa3\x9fB")


def test_describe_reads_the_container_not_the_extension(media, tmp_path):
    disguised = tmp_path / "clip.webm"                     # an MP4 under a WebM name
    disguised.write_bytes(media["short_gop"].read_bytes())
    with open_media(disguised) as container:
        info = describe(container, disguised)
    assert "mp4" in info.container
    assert (info.video.width, info.video.height, info.video.codec) == (320, 240, "h264")
    assert info.audio.sample_rate == 44100 and info.audio.channels == 1
    assert info.declared_duration_s == pytest.approx(SECONDS, abs=0.1)


@pytest.mark.parametrize("name", ["short_gop", "long_gop"])
def test_read_media_takes_one_frame_per_slot(media, name):
    slots = _slots(8)
    with open_media(media[name]) as container:
        decoded = read_media(container, slots)
    assert decoded.problems.count == 0
    assert len(decoded.thumbs) == 8 and decoded.thumbs[0].shape == (THUMB_H, THUMB_W)
    for (start, end), when in zip(slots, decoded.thumb_times, strict=True):
        assert start - 1e-3 <= when < end
    assert decoded.video_packets == 100 and decoded.video_bytes > 0
    assert decoded.video_end_s - decoded.video_start_s == pytest.approx(SECONDS, abs=0.05)
    # testsrc2 moves: consecutive samples differ
    assert all(np.abs(a.astype(int) - b).mean() > 1 for a, b in zip(decoded.thumbs, decoded.thumbs[1:], strict=False))


def test_sampling_is_sparse_when_keyframes_allow(media):
    with open_media(media["short_gop"]) as container:
        short = read_media(container, _slots(8))
    with open_media(media["long_gop"]) as container:
        long = read_media(container, _slots(8))
    assert short.video_keyframes == 10 and long.video_keyframes == 1
    assert short.frames_decoded <= 8 * 3         # a keyframe in (nearly) every slot
    assert long.frames_decoded >= 80             # one keyframe: decode up to the last slot


def test_audio_is_decoded_whole_in_float(media):
    with open_media(media["short_gop"]) as container:
        decoded = read_media(container, [])
    assert decoded.audio.dtype == np.float32 and decoded.audio.shape[0] == 1
    assert decoded.sample_rate == 44100
    assert decoded.audio.shape[1] / 44100 == pytest.approx(SECONDS, abs=0.1)
    assert decoded.thumbs == [] and decoded.frames_decoded == 0


def test_integer_pcm_is_scaled_and_kept_per_channel(media):
    with open_media(media["wav"]) as container:
        decoded = read_media(container, [])
        assert decoded.audio.shape == (2, 32000)
        assert np.abs(decoded.audio).max(axis=1) == pytest.approx([0.5, 0.25], abs=0.01)
    with av.open(str(media["wav"])) as container:
        frame = next(container.decode(audio=0))
        assert frame.format.name == "s16"
        samples = frame_samples(frame)
        assert len(samples) == 2 and samples[0].dtype == np.float32


def test_a_layout_change_mid_stream_is_mixed_down(tmp_path):
    parts = []
    for channels, freq in ((1, 440), (2, 880), (1, 440)):      # ADTS AAC: mono, stereo, mono again
        out = tmp_path / f"{len(parts)}.aac"
        run_ffmpeg(["-y", "-f", "lavfi", "-i", f"sine=f={freq}:r=44100:d=1", "-ac", str(channels),
                    "-c:a", "aac", str(out)], timeout=60)
        parts.append(out.read_bytes())
    joined = tmp_path / "joined.aac"
    joined.write_bytes(b"".join(parts))
    problems = Problems()
    with libav_errors(problems), open_media(joined) as container:
        decoded = read_media(container, [], problems=problems)
    assert decoded.audio.shape[0] == 1 and decoded.sample_rate == 44100
    assert decoded.audio.shape[1] / 44100 == pytest.approx(3.0, abs=0.2)
    assert problems.count == 0


def test_corruption_is_counted_not_raised(media):
    problems = Problems()
    with libav_errors(problems):
        with open_media(media["scrambled"]) as container:
            decoded = read_media(container, _slots(8), problems=problems)
    assert problems.count > 0 and problems.first
    assert decoded.audio is not None          # the rest of the file was still read


def test_libav_errors_restores_the_log_level(media):
    before = av.logging.get_level()
    with libav_errors(Problems()):
        assert av.logging.get_level() == av.logging.ERROR
    assert av.logging.get_level() == before
