"""Judging stored metrics: one reason per rule, thresholds from the pipeline YAML, --explain."""

from __future__ import annotations

from pathlib import Path

import pytest

from valor_data.config import load_pipeline, load_section
from valor_data.curate import checks
from valor_data.curate.config import FilterConfig
from valor_data.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]

GOOD = {
    "clip_id": "abc_123", "subset": "balanced_train", "path": "/w/media/ab/abc_123.mp4", "status": "ok",
    "probe_error": None, "requested_s": 10.0, "has_video": True, "has_audio": True, "video_frames": 250,
    "sampled_frames": 8, "audio_s": 10.0, "coverage": 1.0, "decode_errors": 0, "duration_s": 10.02,
    "short_side": 360, "fps": 25.0, "bits_per_pixel": 0.06, "black_fraction": 0.0, "uniform_fraction": 0.0,
    "motion_score": 40.0, "silent_fraction": 0.1, "clipped_fraction": 0.0, "border_fraction": 0.25,
}


@pytest.mark.parametrize("change, reason", [
    ({"has_video": False}, "no_video"),
    ({"has_audio": False}, "no_audio"),
    ({"video_frames": 0}, "no_frames"),
    ({"sampled_frames": 0}, "no_frames"),
    ({"audio_s": 0.0}, "no_frames"),
    ({"coverage": 0.4}, "truncated"),
    ({"decode_errors": 3}, "decode_errors"),
    ({"duration_s": 9.2}, "too_short"),
    ({"duration_s": 10.8}, "too_long"),
    ({"duration_s": 0.5, "requested_s": None}, "too_short"),
    ({"short_side": 72}, "low_resolution"),
    ({"fps": 4.0}, "low_fps"),
    ({"bits_per_pixel": 0.002}, "low_bitrate"),
    ({"black_fraction": 0.75}, "black"),
    ({"uniform_fraction": 1.0}, "uniform"),
    ({"motion_score": 0.5}, "static"),
    ({"silent_fraction": 1.0}, "silent"),
    ({"clipped_fraction": 0.9}, "clipped_audio"),
])
def test_each_rule_names_its_reason(change, reason):
    config = FilterConfig()
    assert checks.judge(GOOD, config) == []
    assert checks.judge({**GOOD, **change}, config) == [reason]


def test_stronger_reasons_absorb_the_ones_they_imply():
    config = FilterConfig()
    blank = {**GOOD, "black_fraction": 1.0, "motion_score": 0.0, "bits_per_pixel": 0.001}
    assert checks.judge(blank, config) == ["black"]
    cut = {**GOOD, "coverage": 0.3, "duration_s": 3.0, "fps": 2.0}
    assert checks.judge(cut, config) == ["truncated"]


def test_failures_before_measuring_are_the_only_reason():
    config = FilterConfig()
    assert checks.judge({"status": "timeout"}, config) == ["timeout"]
    assert checks.judge({"status": "missing"}, config) == ["missing_media"]
    assert checks.judge({"status": "ok", "probe_error": "not_media"}, config) == ["not_media"]


def test_missing_metrics_are_not_judged():
    config = FilterConfig()
    audio_only = {**GOOD, "has_video": False, "short_side": None, "fps": None, "motion_score": None,
                  "black_fraction": None, "video_frames": None, "sampled_frames": None}
    assert checks.judge(audio_only, config) == ["no_video"]
    assert checks.judge({**GOOD, "motion_score": float("nan")}, config) == []


def test_optional_audio_and_letterbox_are_configurable():
    youku = FilterConfig(audio_optional_subsets=["youku-classification-train"])
    muted = {**GOOD, "subset": "youku-classification-train", "has_audio": False, "audio_s": None,
             "silent_fraction": None}
    assert checks.judge(muted, youku) == []
    assert checks.judge({**muted, "subset": "youku-pretrain"}, youku) == ["no_audio"]
    assert checks.judge(GOOD, FilterConfig(max_border_fraction=0.2)) == ["letterbox"]


def test_every_reason_has_a_family():
    for check in checks.CHECKS:
        assert checks.family(check.reason) in ("corrupt", "quality", "agreement")
    assert checks.family("duplicate") == "duplicate"


def test_explain_shows_each_metric_against_its_threshold():
    row = {**GOOD, "motion_score": 0.5, "reasons": ["static"], "verdict": "reject"}
    lines = checks.explain(row, FilterConfig())
    assert lines[0] == "abc_123: reject (static)"
    static = next(line for line in lines if line.strip().startswith("static"))
    assert "motion_score" in static and "< 5 (min_motion)" in static and static.endswith("FAIL")
    letterbox = next(line for line in lines if line.strip().startswith("letterbox"))
    assert "off" in letterbox and letterbox.endswith("n/a")
    too_short = [line for line in lines if line.strip().startswith("too_short")]
    assert any("< 9.5 (requested_s - duration_tolerance_s)" in line for line in too_short)


def test_pipeline_sections_load():
    valor = load_section(FilterConfig, load_pipeline(ROOT / "pipelines" / "valor.yaml"), "filter")
    youku = load_section(FilterConfig, load_pipeline(ROOT / "pipelines" / "youku_mplug.yaml"), "filter")
    assert valor.require_audio and valor.duplicates and valor.max_border_fraction is None
    assert (youku.min_duration_s, youku.max_duration_s) == (10.0, 120.0)
    assert not youku.needs_audio("youku-classification-test") and youku.needs_audio("youku-pretrain")
    override = load_section(FilterConfig, {"filter": {"min_fps": 12}}, "filter", {"timeout_s": 5.0, "min_fps": None})
    assert (override.min_fps, override.timeout_s) == (12, 5.0)


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError, match="unknown key"):
        load_section(FilterConfig, {"filter": {"min_fsp": 3}}, "filter")
    with pytest.raises(ConfigError, match="max_black_fraction"):
        load_section(FilterConfig, {"filter": {"max_black_fraction": 5}}, "filter")
