import shutil

import pyarrow.parquet as pq
import pytest

from valor_data.errors import ManifestError
from valor_data.manifest import build_audioset, download_audioset
from valor_data.sources.ontology import load_ontology
from valor_data.synth.server import Fault, LoopbackServer
from valor_data.workdir import Workdir

from helpers import header_csv, official_csv


@pytest.fixture(scope="module")
def labels(shared_data):
    audioset = shared_data / "audioset"
    return audioset / "class_labels_indices.csv", audioset / "ontology.json"


def test_real_balanced_and_eval_load_completely(tmp_path, shared_data, labels):
    audioset = shared_data / "audioset"
    workdir = Workdir.create(tmp_path)
    summary = build_audioset(workdir, {"balanced_train": audioset / "balanced_train_segments.csv",
                                       "eval": audioset / "eval_segments.csv"}, *labels)
    assert (summary.rows_read, summary.kept, sum(summary.rejected.values())) == (42_531, 42_531, 0)
    assert summary.per_subset == {"balanced_train": 22_160, "eval": 20_371}
    table = pq.read_table(workdir.manifest)
    assert table.num_rows == 42_531 and pq.read_table(workdir.rejects).num_rows == 0
    assert len(set(table.column("clip_id").to_pylist())) == 42_531
    labelled = {m for ms in table.column("labels").to_pylist() for m in ms}
    assert len(labelled) == 527
    onto = load_ontology(*labels)
    assert len(onto.index) == 527 and len(onto.names) == 632
    assert "/m/0dgw9r" in onto.children and onto.parents("/m/09x0r")   # the tree is there
    first = table.slice(0, 1).to_pylist()[0]
    assert first["clip_id"] == "--PJHxphWEs_30000"
    assert first["valor_id"] == "--PJHxphWEs_30.000_40.000"
    assert first["label_names"] == ["Speech", "Gush"]
    assert first["url"] == "https://www.youtube.com/watch?v=--PJHxphWEs"


GOOD = ['--PJHxphWEs, 30.000, 40.000, "/m/09x0r,/t/dd00088"',
        'a_b-c_d_e_f, 0.000, 7.500, "/m/012xff"']


def test_official_and_header_layouts_give_the_same_clips(tmp_path, labels):
    official = official_csv(tmp_path / "eval_segments.csv", GOOD)
    header = header_csv(tmp_path / "h.csv", [r.replace(", ", ",") for r in GOOD])
    tables = []
    for i, path in enumerate([official, header]):
        workdir = Workdir.create(tmp_path / f"w{i}")
        build_audioset(workdir, {"eval": path}, *labels)
        tables.append(pq.read_table(workdir.manifest).drop(["origin"]))
    assert tables[0].equals(tables[1])
    assert tables[0].column("end_s").to_pylist() == [40.0, 7.5]


MANGLED = [
    ("#NAME?, 30.000, 40.000, \"/m/09x0r\"", "bad_video_id"),
    ("abcdefghijk, thirty, 40.000, \"/m/09x0r\"", "bad_time"),
    ("abcdefghijl, -5.000, 5.000, \"/m/09x0r\"", "bad_time"),
    ("abcdefghijm, 40.000, 30.000, \"/m/09x0r\"", "bad_interval"),
    ("abcdefghijn, 0.000, 10.000, \"/m/notreal\"", "unknown_label"),
    ("abcdefghijo, 0.000, 10.000", "bad_column_count"),
    ("abcdefghijp, 0.000, 10.000, \"\"", "no_labels"),
    ("../x/abcdef, 0.000, 10.000, \"/m/09x0r\"", "bad_video_id"),
    ("\ufeffabcdefghij, 0.000, 10.000, \"/m/09x0r\"", "bad_video_id"),   # a BOM pasted mid-file
    (GOOD[0], "duplicate_segment"),
]


def test_spreadsheet_mangled_copy_keeps_good_rows_and_reports_every_bad_one(tmp_path, labels):
    rows = GOOD + [bad for bad, _ in MANGLED]
    # a BOM at the start and CRLF line ends, as a spreadsheet would save it
    text = "\ufeffYTID,start_seconds,end_seconds,positive_labels\r\n" + "".join(r + "\r\n" for r in rows)
    path = tmp_path / "balanced_train_segments.csv"
    path.write_text(text, encoding="utf-8", newline="")
    workdir = Workdir.create(tmp_path / "w")
    summary = build_audioset(workdir, {"balanced_train": path}, *labels)
    assert summary.kept == 2
    rejects = pq.read_table(workdir.rejects).to_pylist()
    assert [(r["line"], r["reason"]) for r in rejects] == [(i + 4, reason) for i, (_, reason) in enumerate(MANGLED)]
    assert all(r["file"] == str(path) for r in rejects)
    assert "same clip as" in rejects[-1]["detail"] and ":2" in rejects[-1]["detail"]


def test_strict_makes_any_reject_fatal(tmp_path, labels):
    path = official_csv(tmp_path / "eval_segments.csv", GOOD + [MANGLED[0][0]])
    with pytest.raises(ManifestError, match=r"eval_segments.csv:6: bad_video_id"):
        build_audioset(Workdir.create(tmp_path / "w"), {"eval": path}, *labels, strict=True)


def test_num_segs_mismatch_is_a_warning_and_strict_or_a_download_refuses_it(tmp_path, labels):
    """A subset of an official file keeps the official header: its rows are read, the count warned."""
    path = official_csv(tmp_path / "eval_segments.csv", GOOD, declared=20_371)
    summary = build_audioset(Workdir.create(tmp_path / "w"), {"eval": path}, *labels)
    assert summary.kept == 2 and any("num_segs=20371 but the file holds 2 rows" in w for w in summary.warnings)
    assert any("num_segs=20371" in line for line in summary.lines())
    for flags in ({"strict": True}, {"check_expected": True}):
        workdir = Workdir.create(tmp_path / f"w-{next(iter(flags))}")
        with pytest.raises(ManifestError, match="num_segs=20371 but the file holds 2 rows"):
            build_audioset(workdir, {"eval": path}, *labels, **flags)
        rejects = pq.read_table(workdir.rejects).to_pylist()    # the refusal is a row too
        assert [(r["line"], r["reason"]) for r in rejects] == [(0, "file_refused")]


def test_not_a_segments_file_gives_a_clear_error(tmp_path, labels):
    path = tmp_path / "eval_segments.csv"
    path.write_text("<html><body>Service unavailable</body></html>\n", encoding="utf-8")
    with pytest.raises(ManifestError, match="no usable rows"):
        build_audioset(Workdir.create(tmp_path / "w"), {"eval": path}, *labels)


@pytest.fixture()
def mirror(tmp_path, shared_data):
    """A loopback copy of the official metadata files (header layout, as in shared/)."""
    folder = tmp_path / "mirror"
    shutil.copytree(shared_data / "audioset", folder)
    with LoopbackServer(folder) as server:
        yield server


def test_download_from_a_mirror_checks_completeness(tmp_path, mirror):
    workdir = Workdir.create(tmp_path / "w")
    csvs, labels_csv, ontology = download_audioset(workdir, ["balanced_train", "eval"], mirror.url)
    assert all(p.is_relative_to(workdir.root) for p in [*csvs.values(), labels_csv, ontology])
    summary = build_audioset(workdir, csvs, labels_csv, ontology, check_expected=True)
    assert summary.kept == 42_531


def test_truncated_download_is_caught(tmp_path, mirror):
    mirror.add_fault("/eval_segments.csv", Fault("truncate", fraction=0.5))
    with pytest.raises(ManifestError, match="truncated download"):
        download_audioset(Workdir.create(tmp_path / "w"), ["eval"], mirror.url)


def test_short_mirror_copy_is_caught_by_the_descriptor_row_count(tmp_path, mirror):
    eval_csv = tmp_path / "mirror" / "eval_segments.csv"
    lines = eval_csv.read_text(encoding="utf-8").splitlines(keepends=True)
    eval_csv.write_text("".join(lines[:1000]), encoding="utf-8")
    workdir = Workdir.create(tmp_path / "w")
    csvs, labels_csv, ontology = download_audioset(workdir, ["eval"], mirror.url)
    with pytest.raises(ManifestError, match="expected 20,371 rows for eval, found 999"):
        build_audioset(workdir, csvs, labels_csv, ontology, check_expected=True)


def test_missing_file_on_the_mirror_is_a_clear_error(tmp_path, mirror):
    mirror.add_fault("/balanced_train_segments.csv", Fault("status", code=404))
    with pytest.raises(ManifestError, match="HTTP 404"):
        download_audioset(Workdir.create(tmp_path / "w"), ["balanced_train"], mirror.url)
