"""Real readers on the built shards: webdataset, Hugging Face datasets, the index, PyAV and soundfile."""

from __future__ import annotations

import hashlib
import io
import json

import av
import pyarrow.parquet as pq
import soundfile as sf
from test_shards_build import built_workdir  # noqa: F401  (session fixture)

from valor_data.shards.samples import MEMBERS


def shard_urls(root, split: str) -> list[str]:
    doc = json.loads((root / "shards" / f"{split}.shards.json").read_text())
    return [str(root / "shards" / s["url"]) for s in doc["shardlist"]]


def split_keys(root, split: str) -> set[str]:
    rows = pq.read_table(root / "splits.parquet", columns=["clip_id", "split"]).to_pylist()
    return {r["clip_id"] for r in rows if r["split"] == split}


def decode_mp4(data: bytes) -> tuple[int, int, int]:
    """(frames, width, height) of an mp4 held in memory."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        assert container.streams.audio, "no audio stream"
        frames = sum(1 for _ in container.decode(stream))
        return frames, stream.codec_context.width, stream.codec_context.height


def test_webdataset_reads_every_sample(built_workdir):  # noqa: F811
    import webdataset as wds

    seen = {}
    for sample in wds.WebDataset(shard_urls(built_workdir, "valor32k-train"), shardshuffle=False, empty_check=False):
        assert set(sample) >= {"__key__", *MEMBERS}
        meta = json.loads(sample["json"])
        assert meta["clip_id"] == sample["__key__"] and meta["split"] == "valor32k-train"
        assert sample["txt"].decode("utf-8") == meta["captions"][0]
        seen[sample["__key__"]] = sample
    assert set(seen) == split_keys(built_workdir, "valor32k-train")
    frames, width, height = decode_mp4(next(iter(seen.values()))["mp4"])
    assert frames > 0 and min(width, height) <= 360
    audio, rate = sf.read(io.BytesIO(next(iter(seen.values()))["flac"]))
    assert rate == 16_000 and audio.ndim == 1 and len(audio) > 0


def _raw_features():
    """Media as raw bytes (HF's Video/Audio features would need torchcodec to decode)."""
    from datasets import Features, List, Value

    meta = {name: Value("string") for name in ("clip_id", "valor_id", "source", "subset", "video_id", "url",
                                                "language", "category", "split")}
    meta.update(start_s=Value("float64"), end_s=Value("float64"), category_index=Value("int32"),
                labels=List(Value("string")), label_names=List(Value("string")), captions=List(Value("string")),
                quality={"verdict": Value("string"), "reasons": List(Value("string")),
                         "loudness_db": Value("float64"), "motion": Value("float64")})
    return Features({"mp4": Value("binary"), "flac": Value("binary"), "json": meta, "txt": Value("string"),
                     "__key__": Value("string"), "__url__": Value("string")})


def test_hugging_face_streaming(built_workdir):  # noqa: F811
    from datasets import load_dataset

    data_files = {"test": shard_urls(built_workdir, "valor32k-test")}
    stream = load_dataset("webdataset", data_files=data_files, split="test", streaming=True, features=_raw_features())
    rows = list(stream)
    assert {r["__key__"] for r in rows} == split_keys(built_workdir, "valor32k-test")
    assert all(r["json"]["split"] == "valor32k-test" and r["txt"] == r["json"]["captions"][0] for r in rows)
    assert decode_mp4(rows[0]["mp4"])[0] > 0
    # the dataset card's configs name each split's tars
    card = load_dataset(str(built_workdir / "shards"), "valor32k-val", split="validation", streaming=True,
                        features=_raw_features())
    assert {r["__key__"] for r in card} == split_keys(built_workdir, "valor32k-val")


def test_random_access_through_the_index(built_workdir):  # noqa: F811
    index = pq.read_table(built_workdir / "shards" / "index.parquet").to_pylist()
    key = sorted(split_keys(built_workdir, "valor1m"))[-1]
    rows = {r["member"]: r for r in index if r["key"] == key}
    assert set(rows) == set(MEMBERS)
    data = {}
    for member, row in rows.items():
        with open(built_workdir / "shards" / row["shard"], "rb") as fh:
            fh.seek(row["offset"])
            data[member] = fh.read(row["size"])
        assert hashlib.sha256(data[member]).hexdigest() == row["sha256"]
    assert json.loads(data["json"])["clip_id"] == key
    assert decode_mp4(data["mp4"])[0] > 0
    audio, rate = sf.read(io.BytesIO(data["flac"]))
    assert rate == 16_000 and len(audio) > 0
