"""Manifests from damaged real-world inputs: every good row read, every bad one a reject, no traceback.

Each input is written here, in the shape found in the wild (AudioSet rows re-quoted by a CSV tool,
a subset of an official file keeping its header, oversized fields, deep JSON, invalid UTF-8, URLs
that need percent-encoding, Youku-mPLUG splits whose labels are withheld).
"""

from __future__ import annotations

import csv
import json
import sys

import pyarrow.parquet as pq
import pytest

from valor_data.cli import main
from valor_data.errors import ManifestError
from valor_data.fetch.config import FetchConfig
from valor_data.fetch.worker import fetch_clip, make_env
from valor_data.manifest import build_audioset, build_urls, build_youku, join_valor_captions
from valor_data.sources.ontology import load_ontology
from valor_data.sources.youku import MODELSCOPE_BASE
from valor_data.synth.render import Content, RenderSpec, render
from valor_data.workdir import Workdir

from helpers import header_csv, official_csv

GOOD = ['--PJHxphWEs, 30.000, 40.000, "/m/09x0r,/t/dd00088"', 'a_b-c_d_e_f, 0.000, 7.500, "/m/012xff"']


@pytest.fixture(scope="module")
def labels(shared_data):
    audioset = shared_data / "audioset"
    return audioset / "class_labels_indices.csv", audioset / "ontology.json"


@pytest.fixture(scope="module")
def real_rows(shared_data) -> list[list[str]]:
    """The first 300 segments of the real balanced_train_segments.csv."""
    with open(shared_data / "audioset" / "balanced_train_segments.csv", encoding="utf-8", newline="") as fh:
        return list(csv.reader(fh))[1:301]


def _cli(args: list[str]) -> int:
    try:
        main(args)
    except SystemExit as exc:
        return exc.code or 0
    return 0


def _rejects(workdir: Workdir) -> list[tuple[int, str]]:
    return [(r["line"], r["reason"]) for r in pq.read_table(workdir.rejects).to_pylist()]


def test_labels_quoted_twice_by_a_csv_tool_are_read(tmp_path, labels, real_rows):
    path = tmp_path / "balanced_train_segments.csv"
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["YTID", "start_seconds", "end_seconds", "positive_labels"])
        writer.writerows([ytid, start, end, f' "{mids}"'] for ytid, start, end, mids in real_rows)
    text = path.read_text(encoding="utf-8")
    assert f'," ""{real_rows[0][3]}"""' in text          # the shape such tools write
    original = header_csv(tmp_path / "original.csv", [",".join(r[:3]) + f',"{r[3]}"' for r in real_rows])
    tables = []
    for i, csv_path in enumerate([path, original]):
        workdir = Workdir.create(tmp_path / f"w{i}")
        summary = build_audioset(workdir, {"balanced_train": csv_path}, *labels)
        assert (summary.kept, summary.rejected) == (300, {})
        tables.append(pq.read_table(workdir.manifest).drop(["origin"]))
    assert tables[0].equals(tables[1])
    assert tables[0].column("labels").to_pylist()[0] == real_rows[0][3].split(",")


def test_subset_of_an_official_file_keeps_its_header_and_its_rows_are_read(tmp_path, labels, real_rows):
    rows = [f"{y}, {s}, {e}, \"{m}\"" for y, s, e, m in real_rows[:50]]
    path = official_csv(tmp_path / "balanced_train_segments.csv", rows, declared=22_160)
    workdir = Workdir.create(tmp_path / "w")
    summary = build_audioset(workdir, {"balanced_train": path}, *labels)
    assert summary.kept == 50 and len(summary.warnings) == 1
    assert "num_segs=22160 but the file holds 50 rows" in "\n".join(summary.lines())
    assert _cli(["manifest", "audioset", str(path), "-w", str(tmp_path / "cli"), "--strict"]) != 0
    assert _rejects(Workdir.create(tmp_path / "cli")) == [(0, "file_refused")]


def test_a_file_refused_as_a_whole_still_writes_every_reason(tmp_path, labels):
    bad = header_csv(tmp_path / "eval_segments.csv", ["#NAME?,0,10,/m/09x0r", "abcdefghijk,ten,20,/m/09x0r"])
    workdir = Workdir.create(tmp_path / "w")
    with pytest.raises(ManifestError, match="no usable rows .*rejects.parquet"):
        build_audioset(workdir, {"eval": bad}, *labels)
    assert _rejects(workdir) == [(2, "bad_video_id"), (3, "bad_time")]
    # a later file refused (missing columns): the earlier file's reasons and the refusal are kept
    good = tmp_path / "pretrain.csv"
    good.write_text("video_id:FILE,title\nvideos/pretrain/a.flv,标题\n../x.flv,坏路径\n", encoding="utf-8")
    odd = tmp_path / "retrieval_val.csv"
    odd.write_text("video,caption\nv.mp4,x\n", encoding="utf-8")
    workdir = Workdir.create(tmp_path / "y")
    with pytest.raises(ManifestError, match="missing column"):
        build_youku(workdir, [(None, good), (None, odd)], "https://mirror.example/youku")
    assert _rejects(workdir) == [(3, "bad_file_name"), (0, "file_refused")]


def test_two_files_of_one_subset_are_both_read_and_a_shared_segment_kept_once(tmp_path, labels):
    first = header_csv(tmp_path / "a.csv", [GOOD[0].replace(", ", ",")])
    second = header_csv(tmp_path / "b.csv", [r.replace(", ", ",") for r in GOOD])
    workdir = Workdir.create(tmp_path / "w")
    code = _cli(["manifest", "audioset", f"eval={first}", f"eval={second}", "-w", str(workdir.root),
                 "--labels", str(labels[0]), "--ontology", str(labels[1])])
    assert code == 0
    table = pq.read_table(workdir.manifest).to_pylist()
    assert [(r["subset"], r["origin"]) for r in table] == [("eval", f"{first}:2"), ("eval", f"{second}:3")]
    rejects = pq.read_table(workdir.rejects).to_pylist()
    assert [(r["file"], r["line"], r["reason"]) for r in rejects] == [(str(second), 2, "duplicate_segment")]
    assert f"{first}:2" in rejects[0]["detail"]


def test_a_field_over_the_csv_limit_costs_only_its_row(tmp_path, labels):
    huge = "/m/09x0r," * 20_000                          # 180 KB, over the csv module's 128 KiB
    path = header_csv(tmp_path / "eval_segments.csv", [GOOD[0].replace(", ", ","), f'zzzzzzzzzzz,0,10,"{huge}"',
                                                       GOOD[1].replace(", ", ",")])
    workdir = Workdir.create(tmp_path / "w")
    assert build_audioset(workdir, {"eval": path}, *labels).kept == 2
    assert _rejects(workdir) == [(3, "field_too_large")]
    youku = tmp_path / "pretrain.csv"
    youku.write_text(f"video_id:FILE,title\nvideos/pretrain/a.flv,{'长' * 140_000}\nvideos/pretrain/b.flv,短\n",
                     encoding="utf-8")
    workdir = Workdir.create(tmp_path / "y")
    assert build_youku(workdir, [(None, youku)], "https://mirror.example").kept == 1
    assert _rejects(workdir) == [(2, "field_too_large")]


DEEP = "[" * 100_000 + "]" * 100_000


def test_json_nested_past_the_parser_is_a_reject_or_an_error_naming_the_file(tmp_path, labels):
    ontology = tmp_path / "ontology.json"
    ontology.write_text(DEEP, encoding="utf-8")
    with pytest.raises(ManifestError, match=r"ontology.json: cannot read ontology: JSON nested too deeply"):
        load_ontology(ontology_json=ontology)
    workdir = Workdir.create(tmp_path / "w")
    build_audioset(workdir, {"eval": official_csv(tmp_path / "eval_segments.csv", GOOD)}, *labels)
    captions = tmp_path / "desc_test.json"
    captions.write_text(json.dumps([{"video_id": "--PJHxphWEs_30.000_40.000", "desc": "x"}])[:-1] + "," + DEEP + "]",
                        encoding="utf-8")
    with pytest.raises(ManifestError, match="desc_test.json: cannot read captions: JSON nested too deeply"):
        join_valor_captions(workdir, [captions])
    listing = tmp_path / "list.jsonl"
    listing.write_text(json.dumps({"url": "https://example.org/a.mp4"}) + "\n" + '{"url": ' + DEEP + "}\n"
                       + json.dumps({"url": "https://example.org/b.mp4"}) + "\n", encoding="utf-8")
    summary = build_urls(Workdir.create(tmp_path / "u"), [(None, listing)])
    assert (summary.kept, summary.rejected) == (2, {"bad_row": 1})


@pytest.mark.parametrize("cell", [
    "[" + " + ".join(["'一句描述'"] * 9_000) + "]",        # 90 KB: ast.literal_eval recursed on it
    "[" + "-" * 90_000 + "1]",                              # exhausts the parser's stack (MemoryError)
])
def test_a_huge_list_literal_caption_is_a_reject(tmp_path, cell):
    path = tmp_path / "captioning_val.csv"
    with open(path, "w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows([["video_id:FILE", "golden_caption"], ["videos/caption/a.mp4", cell],
                                  ["videos/caption/b.mp4", "['第一句', '第二句']"]])
    workdir = Workdir.create(tmp_path / "w")
    summary = build_youku(workdir, [(None, path)], "https://mirror.example")
    assert (summary.kept, summary.rejected) == (1, {"bad_caption": 1})
    assert pq.read_table(workdir.manifest).column("captions").to_pylist() == [["第一句", "第二句"]]


@pytest.mark.parametrize("text", ['[{"id": "/m/1", "name": "a"}, ["/m/2"]]', '["/m/09x0r"]',
                                  '{"id": "/m/09x0r", "name": "Speech"}', '[{"id": 5, "name": "a"}]'])
def test_an_ontology_of_the_wrong_shape_is_an_error_naming_the_file(tmp_path, text):
    path = tmp_path / "ontology.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ManifestError, match=r"ontology.json: cannot read ontology: (item \d|expected a list)"):
        load_ontology(ontology_json=path)


def test_values_of_the_wrong_type_in_a_url_list_are_rejects(tmp_path):
    rows = [{"url": "https://example.org/1.mp4", "caption": "a dog barks"},
            {"url": "https://example.org/2.mp4", "language": {"x": 1}},       # ArrowTypeError before
            {"url": "https://example.org/3.mp4", "caption": {"x": 1}},
            {"url": "https://example.org/4.mp4", "captions": ["rain", None]},
            {"url": "https://example.org/5.mp4", "captions": ["rain", {"x": 1}]},
            {"url": "https://example.org/6.mp4", "start": True, "end": 5},
            {"url": {"href": "https://example.org/7.mp4"}},
            {"url": "https://example.org/8.mp4", "id": ["a"]},
            {"url": "https://example.org/9.mp4", "captions": ["wind", ""], "start": 1, "end": "4.5"}]
    path = tmp_path / "list.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    workdir = Workdir.create(tmp_path / "w")
    summary = build_urls(workdir, [(None, path)])
    kept = pq.read_table(workdir.manifest).to_pylist()
    assert [(r["captions"], r["start_s"], r["end_s"]) for r in kept] == [(["a dog barks"], None, None),
                                                                        (["wind"], 1.0, 4.5)]
    assert _rejects(workdir) == [(2, "bad_field"), (3, "bad_caption"), (4, "bad_caption"), (5, "bad_caption"),
                                 (6, "bad_time"), (7, "bad_url"), (8, "bad_field")]
    assert summary.kept == 2


def test_caption_files_with_null_or_object_captions_are_errors_naming_the_file(tmp_path):
    workdir = Workdir.create(tmp_path / "w")
    build_audioset(workdir, {"eval": official_csv(tmp_path / "eval_segments.csv", GOOD)})
    for i, descs in enumerate([["a man speaks", None], {"x": 1}]):
        path = tmp_path / f"desc_{i}.json"
        path.write_text(json.dumps({"--PJHxphWEs_30.000_40.000": descs}), encoding="utf-8")
        with pytest.raises(ManifestError, match=rf"desc_{i}.json: item .*caption \d is (null|dict)"):
            join_valor_captions(workdir, [path])
    assert pq.read_table(workdir.manifest).column("captions").to_pylist() == [[], []]


def test_invalid_utf8_costs_its_row_and_names_the_file_and_byte(tmp_path, labels):
    good = [r.replace(", ", ",").encode() + b"\n" for r in GOOD]
    bad = b'zzzzzzzzzzz,0,10,"/m/09x0r\xff"\n'
    data = b"YTID,start_seconds,end_seconds,positive_labels\n" + good[0] + bad + good[1]
    path = tmp_path / "eval_segments.csv"
    path.write_bytes(data)
    workdir = Workdir.create(tmp_path / "w")
    assert build_audioset(workdir, {"eval": path}, *labels).kept == 2
    reject = pq.read_table(workdir.rejects).to_pylist()[0]
    assert (reject["line"], reject["reason"]) == (3, "bad_utf8")
    offset = data.index(b"\xff")
    assert reject["detail"] == f"invalid UTF-8 at byte offset {offset}"
    ontology = tmp_path / "ontology.json"
    ontology.write_bytes(b'[{"id": "/m/1", "name": "caf\xe9"}]')
    with pytest.raises(ManifestError, match=r"ontology.json: cannot read ontology: invalid UTF-8 at byte offset 28"):
        load_ontology(ontology_json=ontology)
    listing = tmp_path / "list.jsonl"
    listing.write_bytes(b'{"url": "https://example.org/1.mp4"}\n{"url": "https://example.org/\xc3.mp4"}\n')
    workdir = Workdir.create(tmp_path / "u")
    assert build_urls(workdir, [(None, listing)]).kept == 1
    assert _rejects(workdir) == [(2, "bad_utf8")]


def test_urls_that_need_percent_encoding_are_bad_urls(tmp_path):
    urls = ["https://example.org/ok.mp4", "https://example.org/a b.mp4", "https://example.org/a\rb.mp4",
            "https://example.org/a\nb.mp4", "https://example.org/a\x00b.mp4", "file:///data/my video.mp4",
            "https://example.org/a%20b.mp4"]
    path = tmp_path / "list.jsonl"
    path.write_text("".join(json.dumps({"url": u}) + "\n" for u in urls), encoding="utf-8")
    workdir = Workdir.create(tmp_path / "w")
    assert build_urls(workdir, [(None, path)]).kept == 2
    assert _rejects(workdir) == [(i, "bad_url") for i in range(2, 7)]
    youku = tmp_path / "retrieval_val.csv"
    with open(youku, "w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows([["clip_name:FILE", "caption"], ["videos/retrieval/视频 一.mp4", "有空格的文件名"],
                                  ["videos/retrieval/a\r\nb.mp4", "换行"], ["videos/retrieval/a\x00.mp4", "空字符"]])
    workdir = Workdir.create(tmp_path / "y")
    assert build_youku(workdir, [(None, youku)], "https://mirror.example/y").kept == 1
    assert pq.read_table(workdir.manifest).column("url").to_pylist() == [
        "https://mirror.example/y/videos/retrieval/%E8%A7%86%E9%A2%91%20%E4%B8%80.mp4"]
    assert [reason for _, reason in _rejects(workdir)] == ["bad_url", "bad_url"]
    for base in ["https://mirror.example/a b", "https://mirror.example/a\n"]:
        with pytest.raises(ManifestError, match="--base-url: URL holds"):
            build_youku(Workdir.create(tmp_path / "z"), [(None, youku)], base)


def _youku_csvs(folder, files):
    folder.mkdir(exist_ok=True)
    pretrain = folder / "pretrain.csv"
    with open(pretrain, "w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows([["video_id:FILE", "title"], *[[f, "一只猫在弹钢琴"] for f in files]])
    return pretrain


def test_the_modelscope_preset_is_the_published_layout(tmp_path):
    pretrain = _youku_csvs(tmp_path / "csv", ["videos/pretrain/视频 a&b.flv"])
    workdir = Workdir.create(tmp_path / "w")
    build_youku(workdir, [(None, pretrain)], "modelscope")
    assert pq.read_table(workdir.manifest).column("url").to_pylist() == [
        "https://modelscope.cn/api/v1/datasets/modelscope/Youku-AliceMind/repo?Revision=master&FilePath="
        "videos/pretrain/%E8%A7%86%E9%A2%91%20a%26b.flv"]
    assert MODELSCOPE_BASE.endswith("&FilePath=")


def test_a_local_directory_is_read_in_place_without_file_urls(tmp_path):
    root = tmp_path / "Youku-AliceMind"
    media = root / "videos" / "pretrain" / "视频 一.mp4"
    media.parent.mkdir(parents=True)
    render(RenderSpec(Content("circle", "blue", "left", "beep"), 2.0, 160, 120, 10.0), media)
    pretrain = _youku_csvs(tmp_path / "csv", ["videos/pretrain/视频 一.mp4", "videos/pretrain/missing.mp4"])
    workdir = Workdir.create(tmp_path / "w")
    build_youku(workdir, [(None, pretrain)], str(root))
    rows = pq.read_table(workdir.manifest).to_pylist()
    assert [r["url"] for r in rows] == [str(media), str(root / "videos" / "pretrain" / "missing.mp4")]
    env = make_env(workdir, FetchConfig())                # allow_file_urls stays off
    assert not env.cfg.allow_file_urls
    done, missing = (fetch_clip(row, env) for row in rows)
    assert (done["status"], done["method"]) == ("ok", "file")
    assert workdir.media_path(rows[0]["clip_id"], "flac").exists()
    assert (missing["status"], missing["error_class"]) == ("failed_permanent", "FileNotFound")
    with pytest.raises(ManifestError, match="not an http.s. URL, a preset .modelscope. or an existing directory"):
        build_youku(Workdir.create(tmp_path / "x"), [(None, pretrain)], str(tmp_path / "nowhere"))


def test_fetch_youku_modelscope_without_the_sdk_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "modelscope", None)    # importing it now fails, as when not installed
    pretrain = _youku_csvs(tmp_path / "csv", ["videos/pretrain/a.flv"])
    workdir = tmp_path / "w"
    assert _cli(["fetch", "youku", str(pretrain), "--modelscope", "-w", str(workdir), "--no-progress"]) == 1
    error = capsys.readouterr().err
    assert "--modelscope needs the ModelScope SDK" in error and "pip install 'valor-data[modelscope]'" in error
    assert not (workdir / "manifest.parquet").exists() and not (workdir / "raw").exists()


def test_a_held_out_split_published_without_labels_is_kept_unlabeled(tmp_path):
    folder = tmp_path / "csv"
    folder.mkdir()
    withheld = folder / "classification_test.csv"
    withheld.write_text("video_id:FILE,title,label\nvideos/classification/a.mp4,篮球比赛,\n"
                        "videos/classification/b.mp4,今日股市,\n", encoding="utf-8")
    holes = folder / "classification_val.csv"
    holes.write_text("video_id:FILE,title,label\nvideos/classification/c.mp4,篮球比赛,篮球\n"
                     "videos/classification/d.mp4,没有标签,\n", encoding="utf-8")
    train = folder / "classification_train.csv"
    train.write_text("video_id:FILE,title,label\nvideos/classification/e.mp4,没有标签,\n"
                     "videos/classification/f.mp4,篮球比赛,篮球\n", encoding="utf-8")
    workdir = Workdir.create(tmp_path / "w")
    summary = build_youku(workdir, [(None, p) for p in (withheld, holes, train)], "https://mirror.example")
    rows = {r["video_id"].rsplit("/", 1)[1]: r for r in pq.read_table(workdir.manifest).to_pylist()}
    assert set(rows) == {"a.mp4", "b.mp4", "c.mp4", "f.mp4"}
    assert [rows[f]["category"] for f in ("a.mp4", "b.mp4")] == [None, None]
    assert rows["c.mp4"]["category"] == "篮球"
    assert summary.rejected == {"no_label": 2}             # labels missing among labelled rows stay rejects
