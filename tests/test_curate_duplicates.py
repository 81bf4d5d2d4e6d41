"""The near-duplicate index, verification, grouping and keep rule on constructed signatures."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from valor_data.curate import duplicates
from valor_data.curate.config import FilterConfig

K = 8
rng = np.random.default_rng(0)


def _random_hashes(n: int) -> np.ndarray:
    return rng.integers(1, 2**63, size=(n, K), dtype=np.int64).astype(np.uint64)


def _flip(hashes: np.ndarray, bits: int) -> np.ndarray:
    """Each hash with ``bits`` random bits flipped."""
    out = hashes.copy()
    for index in np.ndindex(out.shape):
        for bit in rng.choice(64, bits, replace=False):
            out[index] ^= np.uint64(1) << np.uint64(int(bit))
    return out


def test_index_finds_copies_without_comparing_all_pairs():
    n, planted = 20_000, 40
    hashes = _random_hashes(n)
    originals = rng.choice(n - planted, planted, replace=False)
    for offset, original in enumerate(originals):
        hashes[n - planted + offset] = _flip(hashes[original], 2)       # 2 bits: always found
    pairs = duplicates.candidate_pairs(hashes, max_bucket=1000)
    found = {tuple(p) for p in pairs.tolist()}
    expected = {tuple(sorted((int(o), n - planted + i))) for i, o in enumerate(originals)}
    assert expected <= found
    assert len(found) < 2 * planted            # unrelated 64-bit hashes almost never share a key


def test_uninformative_and_overcrowded_keys_are_ignored():
    hashes = _random_hashes(60)
    hashes[:30, 0] = np.uint64(12345678987654321)      # one frame shared by 30 clips
    hashes[40:, :] = 0                                  # blank clips: no information
    hashes[59] = 0
    assert len(duplicates.candidate_pairs(hashes, max_bucket=10)) == 0
    assert len(duplicates.candidate_pairs(hashes, max_bucket=100)) == 30 * 29 // 2


def _sigs(n: int, audio: list[np.ndarray] | None = None) -> duplicates.Signatures:
    hashes = pa.array([list(h) for h in _random_hashes(n).tolist()], pa.list_(pa.uint64()))
    tiny = pa.array([rng.integers(0, 256, K * 64).astype(np.uint8).tobytes() for _ in range(n)], pa.binary())
    words = pa.array([list(a) for a in audio] if audio else [[]] * n, pa.list_(pa.uint32()))
    return duplicates.Signatures.from_arrow(hashes, tiny, words, K)


def test_verification_needs_matching_pictures_and_sound():
    config = FilterConfig()
    sound = rng.integers(0, 2**32, 50, dtype=np.uint64).astype(np.uint32)
    other = rng.integers(0, 2**32, 50, dtype=np.uint64).astype(np.uint32)
    sigs = _sigs(4, [sound, sound, other, other])                     # 0 and 1 sound alike
    sigs.hashes[1] = sigs.hashes[0]
    sigs.tiny[1] = np.clip(sigs.tiny[0].astype(int) + 1, 0, 255)     # a re-encode: pixels barely move
    sigs.hashes[2] = sigs.hashes[0]                                   # same hashes, other pixels
    sigs.hashes[3] = sigs.hashes[0]
    sigs.tiny[3] = sigs.tiny[0]                                       # same pictures, other sound
    pairs = duplicates.candidate_pairs(sigs.hashes, 1000)
    assert len(pairs) == 6
    assert duplicates.verified_pairs(sigs, config).tolist() == [[0, 1]]


def test_audio_offsets_are_tolerated():
    words = rng.integers(0, 2**32, 60, dtype=np.uint64).astype(np.uint32)
    assert duplicates.audio_ber(words, words[2:]) == 0.0
    assert duplicates.audio_ber(words, rng.integers(0, 2**32, 60, dtype=np.uint64).astype(np.uint32)) > 0.4
    assert duplicates.audio_ber(words[:5], words[:5]) is None


def test_groups_keep_one_clip_by_the_documented_rule():
    rows = [
        {"clip_id": "a", "short_side": 360, "video_bitrate": 300_000, "duration_s": 10.0, "quality_reasons": []},
        {"clip_id": "b", "short_side": 216, "video_bitrate": 900_000, "duration_s": 10.0, "quality_reasons": []},
        {"clip_id": "c", "short_side": 480, "video_bitrate": 900_000, "duration_s": 10.0,
         "quality_reasons": ["black"]},
        {"clip_id": "d", "short_side": 360, "video_bitrate": 500_000, "duration_s": 10.0, "quality_reasons": []},
        {"clip_id": "e", "short_side": 360, "video_bitrate": 500_000, "duration_s": 10.0, "quality_reasons": []},
        {"clip_id": "f", "short_side": 360, "video_bitrate": 100, "duration_s": 10.0, "quality_reasons": []},
    ]
    sigs = _sigs(6)
    for i in (1, 2, 3):                                   # a, b, c, d are copies of one another
        sigs.hashes[i], sigs.tiny[i] = sigs.hashes[0], sigs.tiny[0]
    sigs.hashes[4] = sigs.hashes[5]                       # e and f: same hashes, different pixels
    out = duplicates.group(rows, sigs, FilterConfig())
    assert [o["dup_group"] for o in out] == [0, 0, 0, 0, None, None]
    # c is largest but fails quality; a and d tie on size, d has the higher bitrate
    assert [o["dup_keep"] for o in out] == [False, False, False, True, True, True]
    assert [o["dup_of"] for o in out] == ["d", "d", "d", None, None, None]


def _row(clip_id: str, has_audio: bool = True, short_side: int = 360, reasons: tuple = ()) -> dict:
    return {"clip_id": clip_id, "has_audio": has_audio, "short_side": short_side, "video_bitrate": 500_000,
            "duration_s": 10.0, "quality_reasons": list(reasons)}


def _same_picture_other_sound(n_sound: int) -> duplicates.Signatures:
    """``n_sound`` clips with one picture and each its own soundtrack, then one with no audio."""
    sounds = [rng.integers(0, 2**32, 50, dtype=np.uint64).astype(np.uint32) for _ in range(n_sound)]
    sigs = _sigs(n_sound + 1, sounds + [np.zeros(0, np.uint32)])
    sigs.hashes[:], sigs.tiny[:] = sigs.hashes[0], sigs.tiny[0]
    for i in range(1, n_sound):                          # unrelated soundtracks: bit error rate ~0.5
        assert duplicates.audio_ber(sigs.audio(0), sigs.audio(i)) > FilterConfig().dup_max_audio_ber
    return sigs


def test_a_clip_without_audio_does_not_chain_different_soundtracks():
    """13 clips share a picture but not their sound, a 14th has the picture and no audio:
    connected components made one group of 14 with one survivor."""
    sigs = _same_picture_other_sound(13)
    rows = [_row(f"s{i:02d}") for i in range(13)] + [_row("v", has_audio=False, short_side=720)]
    out = duplicates.group(rows, sigs, FilterConfig())
    assert sum(o["dup_keep"] for o in out) == 13           # every soundtrack survives
    assert [o["dup_of"] for o in out] == [None] * 13 + ["s00"]   # the video-only copy goes, though larger
    assert [o["dup_group"] for o in out] == [0] + [None] * 12 + [0]


def test_a_video_only_best_clip_rejected_for_quality_leaves_the_next_best():
    sigs = _same_picture_other_sound(2)
    sigs.audio_words[50:100] = sigs.audio_words[:50]      # s00 and s01 now sound alike too
    rows = [_row("s00", reasons=("black",)), _row("s01", short_side=240), _row("v", has_audio=False, short_side=720)]
    out = duplicates.group(rows, sigs, FilterConfig())
    assert [o["dup_of"] for o in out] == ["s01", None, "s01"]
    assert [o["dup_keep"] for o in out] == [False, True, False]


def test_groups_are_mutual_and_do_not_follow_chains():
    # 0-1, 1-2 but not 0-2: 2 is not a duplicate of 0, so it is not grouped with it; 5-6 alone
    pairs = np.array([[0, 1], [1, 2], [5, 6]])
    assert duplicates.mutual_groups(list(range(8)), pairs) == [[0, 1], [5, 6]]
    assert duplicates.mutual_groups([1, 0, 2, 3, 4, 5, 6, 7], pairs) == [[1, 0], [5, 6]]
    full = np.array([[0, 1], [0, 2], [1, 2]])
    assert duplicates.mutual_groups([2, 1, 0], full) == [[2, 1, 0]]


def test_signatures_from_arrow_columns_pad_short_clips():
    tiny = bytes(range(64)) * 2
    sigs = duplicates.Signatures.from_arrow(
        pa.array([[5, 6], [], None], pa.list_(pa.uint64())), pa.array([tiny, b"", None], pa.binary()),
        pa.array([[1, 2], None, []], pa.list_(pa.uint32())), K)
    assert sigs.hashes.shape == (3, K) and sigs.hashes[0, :2].tolist() == [5, 6] and not sigs.hashes[1:].any()
    assert sigs.tiny[0, 1, 63] == 63 and not sigs.tiny[1:].any()
    assert sigs.audio(0).tolist() == [1, 2] and len(sigs.audio(1)) == len(sigs.audio(2)) == 0
    sliced = duplicates.Signatures.from_arrow(pa.array([[1], [7, 8]], pa.list_(pa.uint64()))[1:],
                                              pa.array([tiny[:64], tiny], pa.binary())[1:],
                                              pa.array([[3], [4]], pa.list_(pa.uint32()))[1:], K)
    assert sliced.hashes[0, :2].tolist() == [7, 8] and sliced.tiny[0, 1, 0] == 0 and sliced.audio(0).tolist() == [4]
