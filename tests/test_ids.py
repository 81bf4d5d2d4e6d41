import pytest

from valor_data.errors import UnsafePathError
from valor_data.ids import (
    audioset_clip_id,
    check_clip_id,
    hashed_clip_id,
    is_youtube_id,
    parse_valor_id,
    valor_id,
)
from valor_data.workdir import Workdir


def test_audioset_clip_id_is_ytid_plus_start_ms():
    assert audioset_clip_id("--PJHxphWEs", 30.0) == "--PJHxphWEs_30000"
    assert audioset_clip_id("a_b-c_d_e_f", 12.5) == "a_b-c_d_e_f_12500"


def test_valor_id_round_trips_with_underscores_in_the_youtube_id():
    vid = valor_id("x_Y_z-1_2_3", 30, 40)
    assert vid == "x_Y_z-1_2_3_30.000_40.000"
    assert parse_valor_id(vid) == ("x_Y_z-1_2_3", 30.0, 40.0)
    with pytest.raises(ValueError):
        parse_valor_id("not-a-valor-id")


@pytest.mark.parametrize("hostile", ["../x", ";rm -rf", "#NAME?", "a/b/c/d/e/f", "\u202eabcdefghij", "a.b"])
def test_hostile_ids_are_not_youtube_ids_and_are_refused_as_paths(hostile, tmp_path):
    assert not is_youtube_id(hostile)
    with pytest.raises(UnsafePathError):
        audioset_clip_id(hostile, 0)
    with pytest.raises(UnsafePathError):
        check_clip_id(hostile)
    with pytest.raises(UnsafePathError):
        Workdir.create(tmp_path).media_path(hostile, "mp4")


def test_dash_ids_are_never_read_as_options(tmp_path):
    """YouTube ids may start with '-': as a path they are always absolute, never '--exec'."""
    assert not is_youtube_id("--exec")
    with pytest.raises(UnsafePathError):
        audioset_clip_id("--exec", 0)
    path = Workdir.create(tmp_path).media_path(audioset_clip_id("--exec-abcd", 1.5), "mp4")
    assert path.is_absolute() and path.name == "--exec-abcd_1500.mp4"


@pytest.mark.parametrize("name", ["../x", ";rm -rf", "--exec", "视频 一.mp4", "a.b.c", "", "../../etc/passwd"])
def test_hashed_ids_are_safe_keys_and_stable(name):
    clip_id = hashed_clip_id(f"urls\x00{name}", name)
    assert check_clip_id(clip_id) == clip_id
    assert "." not in clip_id and "/" not in clip_id
    assert clip_id == hashed_clip_id(f"urls\x00{name}", name)
    assert clip_id != hashed_clip_id(f"urls\x00{name}!", name)


def test_workdir_paths_are_confined(tmp_path):
    workdir = Workdir.create(tmp_path / "w")
    assert workdir.media_path("--PJHxphWEs_30000", "mp4").is_relative_to(workdir.root)
    with pytest.raises(UnsafePathError):
        workdir.path("..", "outside")
