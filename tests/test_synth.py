import csv
import hashlib
import json
import urllib.error
import urllib.request
from pathlib import Path

import av
import pyarrow.parquet as pq
import pytest

from valor_data.manifest import build_audioset
from valor_data.synth.corpus import SynthConfig, make_corpus, read_truth, write_url_list
from valor_data.synth.defects import DEFECTS, HTML_PAGE
from valor_data.synth.server import Fault, LoopbackServer
from valor_data.workdir import Workdir


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    make_corpus(out, SynthConfig(clips=6, defects={d: 1 for d in DEFECTS}, source_seconds=(12, 16),
                                 formats="varied", subsets={"balanced_train": 1, "eval": 1}, seed=7))
    return out


def _streams(path: Path) -> tuple[set[str], float]:
    with av.open(str(path)) as container:
        return {s.type for s in container.streams}, container.duration / 1e6


def test_every_clip_is_what_its_truth_says(corpus):
    truth = {c["kind"]: c for c in read_truth(corpus)}
    assert set(truth) == {"clean", *DEFECTS}
    path = {kind: corpus / clip["file"] for kind, clip in truth.items()}
    assert path["zero_bytes"].stat().st_size == 0
    assert path["html_page"].read_bytes() == HTML_PAGE
    assert _streams(path["no_audio"])[0] == {"video"}
    assert _streams(path["no_video"])[0] == {"audio"}
    types, duration = _streams(path["clean"])
    assert types == {"video", "audio"}
    assert abs(duration - truth["clean"]["source_seconds"]) < 0.1
    assert _streams(path["too_short"])[1] < truth["too_short"]["end_s"] - truth["too_short"]["start_s"]
    with av.open(str(path["low_fps"])) as container:
        assert float(container.streams.video[0].average_rate) == 4
    with av.open(str(path["low_resolution"])) as container:
        assert container.streams.video[0].codec_context.height == 72
    for kind in ("duplicate_reencoded", "duplicate_rescaled"):
        original = next(c for c in read_truth(corpus) if c["video_id"] == truth[kind]["duplicate_of"])
        assert original["kind"] == "clean" and original["caption"] == truth[kind]["caption"]
        assert (original["start_s"], original["end_s"]) == (truth[kind]["start_s"], truth[kind]["end_s"])


def test_captions_describe_the_content(corpus):
    for clip in read_truth(corpus):
        c = clip["content"]
        assert clip["caption"].startswith(f"a {c['colour']} {c['shape']} moves {c['motion']} while ")
        assert clip["caption_zh"].startswith("一个") and "，同时" in clip["caption_zh"]


def test_corpus_manifests_load_through_the_audioset_code_path(corpus, tmp_path):
    workdir = Workdir.create(tmp_path / "w")
    csvs = {s: corpus / f"{s}_segments.csv" for s in ("balanced_train", "eval")}
    summary = build_audioset(workdir, csvs, corpus / "class_labels_indices.csv", corpus / "ontology.json",
                             [corpus / "valor_captions.json"])
    truth = read_truth(corpus)
    assert summary.kept == len(truth) and not summary.rejected
    assert summary.captions_matched == len(truth) and not summary.captions_unmatched
    table = pq.read_table(workdir.manifest)
    by_vid = {c["video_id"]: c for c in truth}
    for row in table.to_pylist():
        assert row["captions"] == [by_vid[row["video_id"]]["caption"]]
        assert row["label_names"] == [by_vid[row["video_id"]]["label_name"]]


def test_same_seed_gives_the_same_corpus(tmp_path):
    cfg = SynthConfig(clips=2, defects={"black": 1}, source_seconds=(10, 10), seed=3)
    a, b = make_corpus(tmp_path / "a", cfg), make_corpus(tmp_path / "b", cfg)
    assert a == b
    for clip in a:
        assert (tmp_path / "a" / clip.file).read_bytes() == (tmp_path / "b" / clip.file).read_bytes()


def _get(url: str, headers: dict | None = None, method: str = "GET", timeout: float = 10):
    request = urllib.request.Request(url, headers=headers or {}, method=method)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status, dict(response.headers), response.read()


def test_server_serves_ranges(corpus):
    clip = read_truth(corpus)[0]
    data = (corpus / clip["file"]).read_bytes()
    with LoopbackServer(corpus) as server:
        url = f"{server.url}/{clip['file']}"
        assert server.url.startswith("http://127.0.0.1:")
        status, headers, body = _get(url)
        assert (status, body) == (200, data) and headers["Accept-Ranges"] == "bytes"
        status, headers, body = _get(url, {"Range": "bytes=100-199"})
        assert (status, body, headers["Content-Range"]) == (206, data[100:200], f"bytes 100-199/{len(data)}")
        assert _get(url, {"Range": "bytes=-50"})[2] == data[-50:]
        assert _get(url, {"Range": f"bytes={len(data) - 10}-"})[2] == data[-10:]
        status, headers, body = _get(url, method="HEAD")
        assert status == 200 and body == b"" and int(headers["Content-Length"]) == len(data)
        with pytest.raises(urllib.error.HTTPError) as err:
            _get(url, {"Range": f"bytes={len(data) + 5}-"})
        assert err.value.code == 416
        for path in ("/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/media", "/nope.mp4"):
            with pytest.raises(urllib.error.HTTPError) as err:
                _get(server.url + path)
            assert err.value.code == 404
        assert ("GET", f"/{clip['file']}", "bytes=100-199") in server.requests


def test_server_injects_faults_then_recovers(corpus):
    clip = read_truth(corpus)[0]
    data = (corpus / clip["file"]).read_bytes()
    with LoopbackServer(corpus) as server:
        url = f"{server.url}/{clip['file']}"
        server.add_fault("/media/*", Fault("status", code=429, retry_after=3), times=1)
        with pytest.raises(urllib.error.HTTPError) as err:
            _get(url)
        assert err.value.code == 429 and err.value.headers["Retry-After"] == "3"
        assert _get(url)[2] == data                       # the rule fired once
        server.add_fault("/media/*", Fault("html"), times=1)
        status, headers, body = _get(url)
        assert status == 200 and headers["Content-Type"].startswith("text/html") and b"<html>" in body
        server.add_fault("/media/*", Fault("truncate", fraction=0.25), times=1)
        with pytest.raises(Exception) as err:             # http.client.IncompleteRead
            _get(url)
        assert "IncompleteRead" in type(err.value).__name__
        server.add_fault("/media/*", Fault("reset"), times=1)
        with pytest.raises((ConnectionError, urllib.error.URLError, OSError)):
            _get(url)
        server.add_fault("/media/*", Fault("stall", seconds=2), times=1)
        with pytest.raises((TimeoutError, urllib.error.URLError)):
            _get(url, timeout=0.5)
        server.add_fault("/media/*", Fault("status", code=404), times=None)
        for _ in range(2):
            with pytest.raises(urllib.error.HTTPError):
                _get(url)


def test_url_list_points_at_the_server(corpus, tmp_path):
    path = write_url_list(corpus, "http://127.0.0.1:8123", tmp_path / "urls.csv")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "url,caption,start,end,id" and len(lines) == len(read_truth(corpus)) + 1
    assert lines[1].startswith("http://127.0.0.1:8123/media/")


def test_fault_rules_load_from_json(corpus, tmp_path):
    rules = tmp_path / "faults.json"
    rules.write_text(json.dumps([{"pattern": "/media/*", "kind": "status", "code": 500, "times": 2}]))
    with LoopbackServer(corpus) as server:
        server.load_faults(rules)
        url = f"{server.url}/{read_truth(corpus)[0]['file']}"
        codes = []
        for _ in range(3):
            try:
                codes.append(_get(url)[0])
            except urllib.error.HTTPError as err:
                codes.append(err.code)
        assert codes == [500, 500, 200]


def test_chinese_set_has_youku_layout_and_loads_through_the_youku_reader(tmp_path):
    from valor_data.manifest import build_youku

    out = tmp_path / "zh"
    clips = make_corpus(out, SynthConfig(clips=24, defects={"zero_bytes": 1}, lang="zh", source_seconds=(10, 10),
                                         seed=5, size=(192, 144), fps=10.0, checksums="md5"))
    assert {(c.render["width"], c.render["height"], c.render["fps"]) for c in clips} == {(192, 144, 10.0)}
    assert any(c.title_zh != c.caption_zh for c in clips)       # titles carry spaces, quotes, an emoji ...
    csvs = sorted(out.glob("*.csv"))
    assert {p.stem for p in csvs} <= {"pretrain", "classification_train", "classification_val",
                                      "classification_test", "retrieval_train", "retrieval_test",
                                      "captioning_train", "captioning_val", "captioning_test"}
    assert all(" " in c.file and "片段" in c.file for c in clips)
    assert all((out / c.file).exists() for c in clips)
    workdir = Workdir.create(tmp_path / "w")
    summary = build_youku(workdir, [(None, p) for p in csvs], "http://127.0.0.1:1")
    blanks = sum(c.label_blank for c in clips)
    assert blanks > 0 and summary.kept == len(clips) - blanks and summary.rejected == {"no_label": blanks}
    rows = {r["video_id"]: r for r in pq.read_table(workdir.manifest).to_pylist()}
    for clip in clips:
        if clip.label_blank:
            continue
        row = rows[clip.file]
        listed = clip.subset in ("captioning_val", "captioning_test")
        assert row["captions"][0] == (clip.caption_zh if listed else clip.title_zh)     # byte for byte
        if clip.subset.startswith("classification"):
            assert row["category"] == clip.category
        if clip.subset in ("captioning_val", "captioning_test"):
            assert len(row["captions"]) == 2
        assert row["checksum"] == "md5:" + hashlib.md5((out / clip.file).read_bytes()).hexdigest()
    labels = [r["label"] for p in csvs if p.stem.startswith("classification") for r in csv.DictReader(p.open(encoding="utf-8"))]
    assert any(label.isdigit() for label in labels) and any(label and not label.isdigit() for label in labels)
