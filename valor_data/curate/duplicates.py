"""Find near-duplicate clips from their signatures, without comparing all pairs.

1. Index: every informative frame hash is cut into four 16-bit bands, and each pair of
   bands (6 pairs) makes a 32-bit key. Two frames whose hashes differ in at most 2 bits
   (what re-encoding and rescaling usually do) always share a key; unrelated frames
   almost never do. Clips sharing a key are candidates; keys shared by more than
   ``dup_max_bucket`` clips (black frames with a logo, test cards) are ignored. Cost:
   a sort of 6 keys per frame, O(N log N), not O(N^2).
2. Verify: the aligned sampled frames of both clips must look the same (8x8 luma mean
   absolute difference <= ``dup_max_tiny_diff``) for at least ``dup_min_frames`` of the
   frames both show, and, when both have audio, their fingerprints must agree
   (bit error rate <= ``dup_max_audio_ber`` at the best offset within +-0.3 s).
3. Group, without chaining: clips are taken in keep order (a clip that passes the quality
   checks, then one with audio, then the largest short side, then the highest video
   bitrate, then the longest, then the smallest clip_id), and each joins the first group
   all of whose members it was verified against, or starts one. A group is a set of mutual duplicates, so a clip that
   lacks a modality (no audio, so no audio comparison) cannot tie together clips whose
   sound differs. Each group keeps its first clip: the best, and one that passes the
   quality checks whenever any member does.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from valor_data.curate.config import FilterConfig

log = logging.getLogger(__name__)

BANDS = 4                       # 64-bit hashes -> four 16-bit bands
MIN_FRAMES_COMPARED = 2         # fewer informative frames in common: not judged a duplicate
AUDIO_MAX_SHIFT = 3             # fingerprint words (100 ms each) of offset tried
AUDIO_MIN_WORDS = 10            # shorter overlaps are not compared
_BAND_PAIRS = list(itertools.combinations(range(BANDS), 2))


@dataclass
class Signatures:
    """The signatures of N clips, as arrays (row i is clip i)."""

    hashes: np.ndarray          # (N, K) uint64, 0 = no information
    tiny: np.ndarray            # (N, K, 64) uint8 8x8 thumbnails
    audio_words: np.ndarray     # uint32 fingerprint words of all clips, concatenated ...
    audio_offsets: np.ndarray   # ... clip i's are audio_words[audio_offsets[i]:audio_offsets[i + 1]]

    def audio(self, i: int) -> np.ndarray:
        return self.audio_words[self.audio_offsets[i]: self.audio_offsets[i + 1]]

    @classmethod
    def from_arrow(cls, hashes: pa.Array, tiny: pa.Array, audio: pa.Array, frames: int) -> Signatures:
        """From list<uint64>, binary (64 bytes a frame) and list<uint32> columns, without Python rows."""
        n = len(hashes)
        h = np.zeros((n, frames), np.uint64)
        t = np.zeros((n, frames, 64), np.uint8)
        h_off, h_values = _lists(hashes)
        t_off, t_bytes = _binary(tiny)
        counts = np.minimum(np.minimum(np.diff(h_off), np.diff(t_off) // 64), frames)
        rows = np.repeat(np.arange(n), counts)
        cols = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
        h[rows, cols] = h_values[np.repeat(h_off[:-1], counts) + cols]
        blocks = np.repeat(t_off[:-1] // 64, counts) + cols
        t[rows, cols] = t_bytes[: len(t_bytes) // 64 * 64].reshape(-1, 64)[blocks]
        a_off, a_values = _lists(audio)
        return cls(h, t, a_values.astype(np.uint32), a_off)


def _lists(column: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, flat values) of a list column, nulls as empty lists."""
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    column = pc.fill_null(column, pa.scalar([], column.type)) if column.null_count else column
    flat = pc.list_flatten(column).to_numpy(zero_copy_only=False)
    return (column.offsets.to_numpy() - column.offsets[0].as_py()).astype(np.int64), flat


def _binary(column: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, bytes) of a binary column, nulls as empty."""
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    column = pc.fill_null(column, b"") if column.null_count else column
    offsets = np.frombuffer(column.buffers()[1], np.int32, len(column) + 1, column.offset * 4).astype(np.int64)
    data = np.frombuffer(column.buffers()[2], np.uint8) if column.buffers()[2] is not None else np.zeros(0, np.uint8)
    return offsets - offsets[0], data[offsets[0]: offsets[-1]]


def _keys(hashes: np.ndarray, first: int, second: int) -> np.ndarray:
    mask = np.uint64(0xFFFF)
    return (((hashes >> np.uint64(16 * first)) & mask) << np.uint64(16)) | ((hashes >> np.uint64(16 * second)) & mask)


def candidate_pairs(hashes: np.ndarray, max_bucket: int) -> np.ndarray:
    """(P, 2) clip index pairs (i < j) sharing at least one banded key."""
    clips, frames = np.nonzero(hashes)
    values = hashes[clips, frames]
    found = [np.zeros((0, 2), np.int64)]
    skipped = 0
    for first, second in _BAND_PAIRS:
        order = np.lexsort((clips, _keys(values, first, second)))
        keys, members = _keys(values, first, second)[order], clips[order]
        fresh = np.ones(len(keys), bool)
        fresh[1:] = (keys[1:] != keys[:-1]) | (members[1:] != members[:-1])   # one entry per clip and key
        keys, members = keys[fresh], members[fresh]
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        sizes = np.diff(np.r_[starts, len(keys)])
        skipped += int((sizes > max_bucket).sum())
        for size in np.unique(sizes[(sizes >= 2) & (sizes <= max_bucket)]):
            rows = starts[sizes == size][:, None] + np.arange(size)[None, :]    # (buckets, size)
            left, right = np.triu_indices(size, 1)
            found.append(np.stack([members[rows[:, left]].ravel(), members[rows[:, right]].ravel()], axis=1))
    if skipped:
        log.info("ignored %d index keys shared by more than %d clips", skipped, max_bucket)
    pairs = np.concatenate(found)
    pairs.sort(axis=1)
    return np.unique(pairs, axis=0)


def video_match(sigs: Signatures, pairs: np.ndarray, config: FilterConfig) -> np.ndarray:
    """Per pair: do enough aligned frames look the same? (chunked to bound memory)"""
    out = np.zeros(len(pairs), bool)
    for lo in range(0, len(pairs), 100_000):
        a, b = pairs[lo: lo + 100_000, 0], pairs[lo: lo + 100_000, 1]
        shown = (sigs.hashes[a] != 0) & (sigs.hashes[b] != 0)
        diff = np.abs(sigs.tiny[a].astype(np.int16) - sigs.tiny[b].astype(np.int16)).mean(axis=2)
        same = shown & (diff <= config.dup_max_tiny_diff)
        compared = shown.sum(axis=1)
        out[lo: lo + 100_000] = (compared >= MIN_FRAMES_COMPARED) & (
            same.sum(axis=1) >= config.dup_min_frames * np.maximum(compared, 1))
    return out


def audio_ber(a: np.ndarray, b: np.ndarray) -> float | None:
    """Lowest bit error rate of two fingerprints over small offsets (None: too short to tell)."""
    best = None
    for shift in range(-AUDIO_MAX_SHIFT, AUDIO_MAX_SHIFT + 1):
        x, y = a[max(0, shift):], b[max(0, -shift):]
        n = min(len(x), len(y))
        if n < AUDIO_MIN_WORDS:
            continue
        rate = float(np.bitwise_count(x[:n] ^ y[:n]).sum()) / (32 * n)
        best = rate if best is None else min(best, rate)
    return best


def verified_pairs(sigs: Signatures, config: FilterConfig) -> np.ndarray:
    """Candidate pairs that pass the frame and (when both have audio) the audio check."""
    pairs = candidate_pairs(sigs.hashes, config.dup_max_bucket)
    pairs = pairs[video_match(sigs, pairs, config)]
    keep = [(ber := audio_ber(sigs.audio(i), sigs.audio(j))) is None or ber <= config.dup_max_audio_ber
            for i, j in pairs]
    log.info("duplicates: %d candidate pairs verified by frames, %d also by audio", len(pairs), sum(keep))
    return pairs[np.asarray(keep, bool)] if len(pairs) else pairs


def mutual_groups(order: list[int], pairs: np.ndarray) -> list[list[int]]:
    """Groups (of size >= 2, best first) of clips that are all pairwise verified duplicates.

    Clips are visited in ``order`` (best first); each joins the earliest group whose every
    member it is paired with, or starts a new one. Deterministic for a given order.
    """
    neighbours: dict[int, set[int]] = {}
    for i, j in pairs.tolist():
        neighbours.setdefault(i, set()).add(j)
        neighbours.setdefault(j, set()).add(i)
    groups: list[list[int]] = []
    group_of: dict[int, int] = {}
    for i in order:
        near = neighbours.get(i)
        if not near:
            continue
        joined = next((g for g in sorted({group_of[j] for j in near if j in group_of})
                       if near.issuperset(groups[g])), None)
        if joined is None:
            joined = len(groups)
            groups.append([])
        groups[joined].append(i)
        group_of[i] = joined
    return [members for members in groups if len(members) >= 2]


def keep_order(row: dict) -> tuple:
    """Sort key of the keep rule (first wins): passes quality, has audio, short side, bitrate, length,
    clip_id."""
    return (bool(row.get("quality_reasons")), row.get("has_audio") is False, -(row.get("short_side") or 0),
            -(row.get("video_bitrate") or 0), -(row.get("duration_s") or 0.0), row["clip_id"])


def group(rows: list[dict], sigs: Signatures, config: FilterConfig) -> list[dict]:
    """Per row: dup_group (None when unique), dup_keep, dup_of."""
    out = [{"dup_group": None, "dup_keep": True, "dup_of": None} for _ in rows]
    order = sorted(range(len(rows)), key=lambda i: keep_order(rows[i]))
    found = mutual_groups(order, verified_pairs(sigs, config))
    found.sort(key=lambda members: min(rows[i]["clip_id"] for i in members))
    for number, members in enumerate(found):
        kept = members[0]
        for i in members:
            out[i] = {"dup_group": number, "dup_keep": i == kept,
                      "dup_of": None if i == kept else rows[kept]["clip_id"]}
    return out
