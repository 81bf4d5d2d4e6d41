"""Settings of the filter stage: the ``filter:`` section of ``pipelines/*.yaml``.

Two kinds of fields. *Reading* settings shape what is measured per clip (how many frames
are sampled, the per-clip timeout); a finished clip keeps its measurements, so changing
them needs ``--redo``. *Judging* thresholds are applied to the stored measurements on
every run, so changing one and rerunning re-judges every clip without decoding anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class FilterConfig:
    """Filter thresholds; every default is the documented one (see ``checks.CHECKS``)."""

    # --- what the set needs
    require_video: bool = True          # no video stream -> reject ``no_video``
    require_audio: bool = True          # no audio stream -> reject ``no_audio`` (off: audio optional)
    audio_optional_subsets: list[str] = field(default_factory=list)  # subsets judged without audio checks
    # --- corrupt files
    max_decode_errors: int = 0          # errors met while reading the sampled points, or while fetch
                                        # read the source (any rejects)
    min_coverage: float = 0.9           # the file's data must span 90% of its declared duration
    duration_tolerance_s: float = 0.5   # media may differ from the requested segment by 0.5 s
    min_duration_s: float = 1.0         # shorter media -> ``too_short``
    max_duration_s: float | None = None  # longer media -> ``too_long`` (None: no limit)
    # --- low quality
    min_short_side: int = 144           # px; below YouTube's lowest rendition
    min_fps: float = 8.0                # frames per second of clip; below it motion is a slideshow
    min_bits_per_pixel: float = 0.005   # video bits per pixel per frame (average frame size / pixels),
                                        # of the clip and of the source fetch read;
                                        # 360p H.264 at CRF 23 spends ~0.05, 720p VP8/HEVC >= 0.01
    max_black_fraction: float = 0.5     # of sampled frames (black: 98% of pixels at luma <= 32)
    max_uniform_fraction: float = 0.5   # of sampled frames (one colour: luma spread <= 10)
    min_motion: float = 5.0             # luma change (0..255) between sampled frames over 0.5% of the
                                        # picture, median over the pairs; a frozen picture stays below 2
    max_silent_fraction: float = 0.95   # of 100 ms windows below -60 dBFS
    max_clipped_fraction: float = 0.25  # of 100 ms windows that are loud and flat-topped
    max_border_fraction: float | None = None  # letterbox/pillarbox area; None: measured, never rejected
    # --- near-duplicates
    duplicates: bool = True
    dup_max_tiny_diff: float = 1.2      # aligned frames match when their 8x8 luma differs by <= 1.2 levels
    dup_min_frames: float = 0.75        # share of the frames both clips show that must match
    dup_max_audio_ber: float = 0.4      # fingerprints must agree on 60% of bits (when both have audio;
                                        # unrelated audio sits near 0.5, re-encoded copies below 0.35)
    dup_max_bucket: int = 1000          # index keys shared by more clips are too common to mean anything
    # --- learned agreement (``W/scores.parquet`` of ``valor-data score``; see ``agreement.py``)
    min_av_score: float | dict | None = None       # av_score below this -> ``av_mismatch``; a number or
                                                   # {percentile: P} of the corpus; None: off
    min_caption_score: float | dict | None = None  # best caption's MGA t2av similarity below this ->
                                                   # ``caption_mismatch``; as above
    learned_subsets: list[str] | None = None       # subsets the two above judge (None: all); e.g. only the
                                                   # pretraining pool, not the benchmark the model trained on
    # --- reading (changing these needs --redo)
    frames: int = 8                     # sampled video frames per clip
    timeout_s: float = 60.0             # per clip; a clip that takes longer is rejected ``timeout``
    max_seconds: float = 600.0          # read at most this much of a long file
    task_size: int = 16                 # clips per distributed task

    def __post_init__(self):
        if self.frames < 2:
            raise ValueError("frames must be at least 2 (motion needs two samples)")
        for name in ("min_coverage", "max_black_fraction", "max_uniform_fraction", "max_silent_fraction",
                     "max_clipped_fraction", "dup_min_frames", "dup_max_audio_ber"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within 0..1, got {value}")
        if self.timeout_s <= 0 or self.task_size < 1:
            raise ValueError("timeout_s must be positive and task_size at least 1")

    def learned_applies(self, subset: str | None) -> bool:
        """Whether the learned thresholds judge clips of ``subset``."""
        return self.learned_subsets is None or subset in self.learned_subsets

    def needs_audio(self, subset: str | None) -> bool:
        """Whether clips of ``subset`` must have usable audio (no_audio, silent, clipped are judged)."""
        return self.require_audio and subset not in self.audio_optional_subsets
