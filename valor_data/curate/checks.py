"""Judge measured clips: every reject reason is one rule over one stored metric.

``CHECKS`` is the whole policy, in order: a reason, the metric it reads, how it compares
with a bound taken from ``FilterConfig`` (or from the clip, for the requested duration),
and what it means. ``judge`` applies it; ``explain`` prints it for one clip. Judging
needs no media: changing a threshold and rerunning re-judges every clip at once.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass

from valor_data.curate.config import FilterConfig

FAMILIES = {"corrupt": ("empty_file", "not_media", "unreadable", "no_video", "no_audio", "no_frames",
                        "truncated", "decode_errors", "too_short", "too_long", "timeout", "missing_media",
                        "analysis_error"),
            "quality": ("low_resolution", "low_fps", "low_bitrate", "black", "uniform", "static", "silent",
                        "clipped_audio", "letterbox"),
            "agreement": ("av_mismatch", "caption_mismatch"),
            "duplicate": ("duplicate",)}
STATUS_REASONS = {"timeout": "timeout", "missing": "missing_media", "error": "analysis_error"}
PROBE_REASONS = {"empty_file": "the file has zero bytes",
                 "not_media": "the file is text (an HTML error page, JSON, ...), not media",
                 "unreadable": "no container could be read (unknown format, missing moov, cut header)"}
LEARNED = ("av_score", "tav_max", "tav_first", "tv_max", "ta_max", "loglik_max")   # scores.parquet, shown by explain
_OPS = {"<": operator.lt, ">": operator.gt, "==": operator.eq}
Bound = Callable[[dict, FilterConfig], object]


def _cfg(name: str) -> Bound:
    return lambda row, config: getattr(config, name)


def _requested(sign: int) -> Bound:
    def bound(row: dict, config: FilterConfig):
        requested = row.get("requested_s")
        return None if requested is None else requested + sign * config.duration_tolerance_s
    return bound


def _learned(name: str) -> Bound:
    return lambda row, config: getattr(config, name) if config.learned_applies(row.get("subset")) else None


def _video_required(row: dict, config: FilterConfig):
    return False if config.require_video else None


def _audio_required(row: dict, config: FilterConfig):
    return False if config.needs_audio(row.get("subset")) else None


@dataclass(frozen=True)
class Check:
    """``reason`` when ``row[metric] <op> bound(row, config)``; a null metric or bound is not judged."""

    reason: str
    metric: str
    op: str
    bound: Bound
    rule: str           # how the bound is set, for --explain
    text: str           # what a failure means
    audio: bool = False  # judged only for clips that need audio (``FilterConfig.needs_audio``)

    def limit(self, row: dict, config: FilterConfig):
        if self.audio and not config.needs_audio(row.get("subset")):
            return None
        return self.bound(row, config)

    def fails(self, row: dict, config: FilterConfig) -> bool | None:
        """True/False, or None when the metric or the bound is missing (not judged)."""
        value, bound = row.get(self.metric), self.limit(row, config)
        if value is None or bound is None or value != value:      # NaN is missing too
            return None
        return bool(_OPS[self.op](value, bound))


CHECKS: tuple[Check, ...] = (
    Check("no_video", "has_video", "==", _video_required, "require_video", "no video stream"),
    Check("no_audio", "has_audio", "==", _audio_required, "require_audio", "no audio stream"),
    Check("no_frames", "video_frames", "==", lambda r, c: 0 if r.get("has_video") else None, "has_video",
          "the video stream holds no packets"),
    Check("no_frames", "sampled_frames", "==", lambda r, c: 0 if r.get("has_video") else None, "has_video",
          "no video frame could be decoded"),
    Check("no_frames", "audio_s", "==", lambda r, c: 0.0 if r.get("has_audio") else None, "has_audio",
          "the audio stream decodes to nothing", audio=True),
    Check("truncated", "coverage", "<", _cfg("min_coverage"), "min_coverage",
          "the data ends before the duration the container declares"),
    Check("decode_errors", "decode_errors", ">", _cfg("max_decode_errors"), "max_decode_errors",
          "the demuxer or a decoder reported errors (see detail)"),
    Check("decode_errors", "source_decode_errors", ">", _cfg("max_decode_errors"), "max_decode_errors",
          "the decoders reported errors in the source while fetch read it (the re-encode conceals them)"),
    Check("too_short", "duration_s", "<", _cfg("min_duration_s"), "min_duration_s", "shorter than allowed"),
    Check("too_short", "duration_s", "<", _requested(-1), "requested_s - duration_tolerance_s",
          "shorter than the requested segment"),
    Check("too_long", "duration_s", ">", _cfg("max_duration_s"), "max_duration_s", "longer than allowed"),
    Check("too_long", "duration_s", ">", _requested(+1), "requested_s + duration_tolerance_s",
          "longer than the requested segment"),
    Check("low_resolution", "short_side", "<", _cfg("min_short_side"), "min_short_side", "too few pixels"),
    Check("low_fps", "fps", "<", _cfg("min_fps"), "min_fps", "too few frames per second of clip"),
    Check("low_bitrate", "bits_per_pixel", "<", _cfg("min_bits_per_pixel"), "min_bits_per_pixel",
          "too few bits for the picture size (judged unless the picture is black or one colour)"),
    Check("low_bitrate", "source_bits_per_pixel", "<", _cfg("min_bits_per_pixel"), "min_bits_per_pixel",
          "the source had too few bits for its picture size (before fetch re-encoded it)"),
    Check("black", "black_fraction", ">", _cfg("max_black_fraction"), "max_black_fraction",
          "mostly black frames"),
    Check("uniform", "uniform_fraction", ">", _cfg("max_uniform_fraction"), "max_uniform_fraction",
          "mostly one-colour frames (a blank screen)"),
    Check("static", "motion_score", "<", _cfg("min_motion"), "min_motion", "frozen or static picture"),
    Check("silent", "silent_fraction", ">", _cfg("max_silent_fraction"), "max_silent_fraction",
          "silent audio over most of the clip", audio=True),
    Check("clipped_audio", "clipped_fraction", ">", _cfg("max_clipped_fraction"), "max_clipped_fraction",
          "clipped (flat-topped) audio", audio=True),
    Check("letterbox", "border_fraction", ">", _cfg("max_border_fraction"), "max_border_fraction",
          "black bars take too much of the picture (off by default: measured only)"),
    Check("av_mismatch", "av_score", "<", _learned("min_av_score"), "min_av_score",
          "the audio does not belong to the picture (a trained model's score: valor-data score)"),
    Check("caption_mismatch", "tav_max", "<", _learned("min_caption_score"), "min_caption_score",
          "no caption fits the clip (a trained model's text-audio+video similarity: valor-data score)"),
)
# reasons that only repeat a stronger one: a black or blank picture is also still and needs
# few bits; a truncated file is also short, with few frames for its length
_IMPLIED = {"low_bitrate": ("black", "uniform"), "static": ("black", "uniform", "truncated"),
            "too_short": ("truncated",), "low_fps": ("truncated",)}


def judge(row: dict, config: FilterConfig) -> list[str]:
    """The reject reasons of one measured clip (empty: keep)."""
    status = row.get("status", "ok")
    if status != "ok":
        return [STATUS_REASONS.get(status, "analysis_error")]
    if row.get("probe_error"):
        return [row["probe_error"]]
    reasons: list[str] = []
    for check in CHECKS:
        if check.reason not in reasons and check.fails(row, config):
            reasons.append(check.reason)
    return [r for r in reasons if not any(other in reasons for other in _IMPLIED.get(r, ()))]


def family(reason: str) -> str:
    return next((name for name, members in FAMILIES.items() if reason in members), "other")


def _show(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def explain(row: dict, config: FilterConfig) -> list[str]:
    """Lines showing every check of one clip: metric, value, rule, bound, outcome."""
    reasons = row.get("reasons") if row.get("reasons") is not None else judge(row, config)
    lines = [f"{row['clip_id']}: {row.get('verdict') or ('reject' if reasons else 'keep')}"
             + (f" ({', '.join(reasons)})" if reasons else ""),
             f"  path: {row.get('path')}"]
    if row.get("status", "ok") != "ok":
        return lines + [f"  status {row['status']}: {row.get('error')}"]
    if row.get("probe_error"):
        return lines + [f"  {row['probe_error']}: {PROBE_REASONS.get(row['probe_error'], '')} ({row.get('detail')})"]
    lines.append(f"  {'check':<15}{'metric':<22}{'value':>12}  {'rule':<44}outcome")
    for check in CHECKS:
        outcome = check.fails(row, config)
        bound = check.limit(row, config)
        rule = f"{check.op} {_show(bound)} ({check.rule})" if bound is not None else f"({check.rule}: off)"
        verdict = "n/a" if outcome is None else "FAIL" if outcome else "ok"
        lines.append(f"  {check.reason:<15}{check.metric:<22}{_show(row.get(check.metric)):>12}  {rule:<44}{verdict}")
    learned = [f"{name} {_show(row[name])}" for name in LEARNED if row.get(name) is not None]
    if learned:
        lines.append(f"  learned scores (valor-data score): {', '.join(learned)}")
    if row.get("detail"):
        lines.append(f"  first decode problem: {row['detail']}")
    if row.get("dup_of"):
        lines.append(f"  duplicate of {row['dup_of']} (group {row.get('dup_group')})")
    return lines
