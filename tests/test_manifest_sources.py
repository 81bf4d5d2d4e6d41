"""VALOR captions, Youku-mPLUG CSVs and URL lists into the clip table."""

import csv
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from valor_data.errors import ManifestError
from valor_data.ids import check_clip_id
from valor_data.manifest import build_audioset, build_urls, build_youku, join_valor_captions
from valor_data.workdir import Workdir

from helpers import official_csv

SEGMENTS = ['--PJHxphWEs, 30.000, 40.000, "/m/09x0r"', 'a_b-c_d_e_f, 0.000, 7.500, "/m/012xff"',
            'zzzzzzzzzzz, 5.000, 15.000, "/m/012xff"']


@pytest.fixture()
def audioset_workdir(tmp_path):
    workdir = Workdir.create(tmp_path / "w")
    build_audioset(workdir, {"eval": official_csv(tmp_path / "eval_segments.csv", SEGMENTS)})
    return workdir


def _captions(workdir):
    table = pq.read_table(workdir.manifest)
    return dict(zip(table.column("clip_id").to_pylist(), table.column("captions").to_pylist(), strict=True))


def test_valor_desc_files_join_by_valor_id(tmp_path, audioset_workdir):
    desc = tmp_path / "desc_test.json"
    desc.write_text(json.dumps([
        {"video_id": "--PJHxphWEs_30.000_40.000", "desc": "a man speaks loudly"},
        {"video_id": "a_b-c_d_e_f_0.000_7.500", "desc": "someone brushes teeth"},
        {"video_id": "nosuchclip1_0.000_10.000", "desc": "unmatched"},
    ]), encoding="utf-8")
    summary = join_valor_captions(audioset_workdir, [desc])
    assert summary.captions_matched == 2
    assert summary.captions_unmatched == ["nosuchclip1_0.000_10.000"]
    captions = _captions(audioset_workdir)
    assert captions["--PJHxphWEs_30000"] == ["a man speaks loudly"]
    assert captions["a_b-c_d_e_f_0"] == ["someone brushes teeth"]
    assert captions["zzzzzzzzzzz_5000"] == []


def test_valor_mapper_form_joins_several_captions(tmp_path, audioset_workdir):
    mapper = tmp_path / "mapper.json"
    mapper.write_text(json.dumps({"zzzzzzzzzzz_5.000_15.000": ["one", "two"]}), encoding="utf-8")
    join_valor_captions(audioset_workdir, [mapper])
    assert _captions(audioset_workdir)["zzzzzzzzzzz_5000"] == ["one", "two"]
    languages = pq.read_table(audioset_workdir.manifest).column("language").to_pylist()
    assert languages.count("en") == 1


def test_bad_caption_file_is_a_clear_error(tmp_path, audioset_workdir):
    bad = tmp_path / "desc_bad.json"
    bad.write_text("[{\"id\": 1}]", encoding="utf-8")
    with pytest.raises(ManifestError, match="desc_bad.json: item 0"):
        join_valor_captions(audioset_workdir, [bad])


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture()
def youku_csvs(tmp_path):
    folder = tmp_path / "youku"
    folder.mkdir()
    return [
        _write(folder / "pretrain.csv", "video_id:FILE,title\n"
               "pretrain/视频 一.mp4,一只猫在弹钢琴\npretrain/b.mp4,\"标题, 带逗号\"\n"),
        _write(folder / "classification_train.csv", "video_id:FILE,title,label\n"
               "cls/a.mp4,篮球比赛精彩瞬间,篮球\ncls/b.mp4,今日股市,3\ncls/c.mp4,没有标签,\n"
               "cls/d.mp4,未知类别,不存在的类别\n"),
        _write(folder / "retrieval_test.csv", "clip_name:FILE,caption\nret/x.mp4,一个人在跳舞\n../etc/passwd,坏路径\n"),
        _write(folder / "captioning_val.csv", "video_id:FILE,golden_caption\n"
               "cap/v1.mp4,\"['第一句描述', '第二句描述']\"\n"
               "cap/v2.mp4,\"__import__('os').system('echo hacked')\"\n"
               "cap/v3.mp4,\"[1, 2]\"\n"
               "cap/v4.mp4,\n"
               "cap/v5.mp4,\"[__import__('os').system('echo hacked')]\"\n"),
    ]


def test_youku_csvs_keep_chinese_text_categories_and_reject_bad_rows(tmp_path, youku_csvs):
    workdir = Workdir.create(tmp_path / "w")
    summary = build_youku(workdir, [(None, p) for p in youku_csvs], "http://127.0.0.1:9/youku")
    rows = {r["video_id"]: r for r in pq.read_table(workdir.manifest).to_pylist()}
    assert set(rows) == {"pretrain/视频 一.mp4", "pretrain/b.mp4", "cls/a.mp4", "cls/b.mp4", "ret/x.mp4",
                         "cap/v1.mp4", "cap/v2.mp4", "cap/v4.mp4"}
    first = rows["pretrain/视频 一.mp4"]
    assert first["captions"] == ["一只猫在弹钢琴"] and first["language"] == "zh"
    assert first["subset"] == "youku-pretrain"
    assert first["url"] == "http://127.0.0.1:9/youku/pretrain/%E8%A7%86%E9%A2%91%20%E4%B8%80.mp4"
    assert rows["pretrain/b.mp4"]["captions"] == ["标题, 带逗号"]
    assert (rows["cls/a.mp4"]["category"], rows["cls/a.mp4"]["category_index"]) == ("篮球", 12)
    assert (rows["cls/b.mp4"]["category"], rows["cls/b.mp4"]["category_index"]) == ("财经", 3)
    assert rows["cap/v1.mp4"]["captions"] == ["第一句描述", "第二句描述"]
    # a caption that is code, not a list literal, is kept as plain text (never evaluated)
    assert rows["cap/v2.mp4"]["captions"] == ["__import__('os').system('echo hacked')"]
    assert rows["cap/v4.mp4"]["captions"] == []       # hidden val/test captions are allowed
    assert all(check_clip_id(r["clip_id"]) for r in rows.values())
    assert summary.rejected == {"no_label": 1, "unknown_category": 1, "bad_file_name": 1, "bad_caption": 2}
    rejects = pq.read_table(workdir.rejects).to_pylist()
    assert {(r["file"].rsplit("/", 1)[-1], r["line"]) for r in rejects} == {
        ("classification_train.csv", 4), ("classification_train.csv", 5), ("retrieval_test.csv", 3),
        ("captioning_val.csv", 4), ("captioning_val.csv", 6)}


def test_youku_needs_a_base_url_and_known_file_names(tmp_path, youku_csvs):
    with pytest.raises(ManifestError, match="--base-url"):
        build_youku(Workdir.create(tmp_path / "w"), [(None, youku_csvs[0])], "")
    odd = _write(tmp_path / "whatever.csv", "video_id:FILE,title\na.mp4,x\n")
    with pytest.raises(ManifestError, match="not a Youku-mPLUG CSV name"):
        build_youku(Workdir.create(tmp_path / "w"), [(None, odd)], "http://x")
    assert build_youku(Workdir.create(tmp_path / "w2"), [("youku-pretrain", odd)], "http://x").kept == 1


URL_ROWS = [
    {"url": "https://example.org/v/1.mp4", "caption": "a dog barks", "start": 0, "end": 10, "id": "../x"},
    {"url": "http://example.org/v/2.webm", "caption": "rain falls", "id": ";rm -rf"},
    {"url": "file:///data/3.mkv", "text": "a car passes", "start_s": 5, "end_s": 9, "video_id": "--exec"},
    {"url": "javascript:alert(1)", "caption": "bad scheme"},
    {"url": "ftp://example.org/4.mp4", "caption": "bad scheme"},
    {"url": "https://example.org/v/5.mp4", "caption": "bad times", "start": 10, "end": 3},
]


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "parquet"])
def test_url_lists_in_every_format(tmp_path, fmt):
    path = tmp_path / f"list.{fmt}"
    columns = ["url", "caption", "text", "start", "end", "start_s", "end_s", "id", "video_id"]
    if fmt == "parquet":
        pq.write_table(pa.Table.from_pylist([{c: r.get(c) for c in columns} for r in URL_ROWS]), path)
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in URL_ROWS) + "{not json\n", encoding="utf-8")
    else:
        sep = "\t" if fmt == "tsv" else ","
        lines = [sep.join(columns)] + [sep.join(str(r.get(c, "")) for c in columns) for r in URL_ROWS]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    workdir = Workdir.create(tmp_path / "w")
    summary = build_urls(workdir, [(None, path)])
    rows = pq.read_table(workdir.manifest).to_pylist()
    assert [r["captions"] for r in rows] == [["a dog barks"], ["rain falls"], ["a car passes"]]
    assert [(r["start_s"], r["end_s"]) for r in rows] == [(0, 10), (None, None), (5, 9)]
    assert [r["video_id"] for r in rows] == ["../x", ";rm -rf", "--exec"]   # kept as data, never as paths
    assert all(check_clip_id(r["clip_id"]) for r in rows)
    expected = {"bad_url": 2, "bad_interval": 1} | ({"bad_row": 1} if fmt == "jsonl" else {})
    assert summary.rejected == expected


def test_youku_text_is_kept_byte_for_byte_and_checksums_are_read(tmp_path):
    titles = [" 前后有空格 ", "[官方] 方括号开头", "全角空格\u3000", "表情🎬, \"引号\"", "e\u0301 组合字符"]
    digest = "ab" * 32
    folder = tmp_path / "youku"
    folder.mkdir()
    with open(folder / "classification_val.csv", "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["video_id:FILE", "title", "label", "sha256"])
        writer.writerows([f"v/{i}.mp4", t, "篮球", digest.upper() if i == 0 else ""] for i, t in enumerate(titles))
        writer.writerow(["v/bad.mp4", "坏校验和", "篮球", "xyz"])
    _write(folder / "retrieval_val.csv", "clip_name:FILE,caption,checksum\nr/a.mp4,一个人,md5:" + "0" * 32 +
           "\nr/b.mp4,两个人,crc32:1234\n")
    workdir = Workdir.create(tmp_path / "w")
    summary = build_youku(workdir, [(None, p) for p in sorted(folder.glob("*.csv"))], "http://127.0.0.1:9")
    rows = {r["video_id"]: r for r in pq.read_table(workdir.manifest).to_pylist()}
    assert [rows[f"v/{i}.mp4"]["captions"] for i in range(len(titles))] == [[t] for t in titles]
    assert rows["v/0.mp4"]["checksum"] == "sha256:" + digest and rows["v/1.mp4"]["checksum"] is None
    assert rows["r/a.mp4"]["checksum"] == "md5:" + "0" * 32
    assert summary.rejected == {"bad_checksum": 2}
