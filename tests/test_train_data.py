"""The trainer's data pipeline over shards in the shard format."""

import io
import json
import pickle
import shutil
import tarfile

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from valor_data.errors import ValorError  # noqa: E402
from valor_data.synth.shards import SynthShards, make_synthetic_shards  # noqa: E402
from valor_data.train import data, text  # noqa: E402

SPEC = data.SampleSpec(frames=3, image_size=32, audio_slices=2, max_text_len=16)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("train-data")
    make_synthetic_shards(root, SynthShards(splits=(("valor32k-train", 8), ("valor32k-test", 5)), per_shard=4,
                                            seconds=2.0))
    return root


@pytest.fixture(scope="module")
def tokenizer(shards):
    targets = data.read_targets(data.resolve_shards(shards, "valor32k-train"))
    return text.make_tokenizer(text.build_vocab(c for t in targets.values() for c in t["captions"]))


def _keys(stream, workers):
    return [k for batch in data.make_loader(stream, workers) for k in batch["key"]]


def test_resolve_shards(shards, tmp_path):
    urls = data.resolve_shards(shards, "valor32k-test")
    assert [u.rsplit("/", 1)[-1] for u in urls] == ["valor32k-test-000000.tar", "valor32k-test-000001.tar"]
    assert data.resolve_shards(tmp_path, "x", [str(shards / "shards" / "valor32k-test-*.tar")]) == urls
    assert data.resolve_shards(tmp_path, "x", [str(shards / "shards" / "valor32k-test.shards.json")]) == urls
    with pytest.raises(ValorError, match="no shards for split 'valor32k-val'"):
        data.resolve_shards(shards, "valor32k-val")
    with pytest.raises(ValorError, match="missing tar"):
        data.resolve_shards(tmp_path, "x", [str(tmp_path / "gone-000000.tar")])


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
@pytest.mark.parametrize("workers", [0, 2, 3])
def test_eval_stream_yields_every_clip_once(shards, tokenizer, workers):
    urls = data.resolve_shards(shards, "valor32k-test")
    keys = _keys(data.ShardStream(urls, SPEC, tokenizer, 2, train=False), workers)
    assert sorted(keys) == sorted(data.read_targets(urls))           # 5 clips, none twice (3 readers > 2 tars)


def test_batches_hold_decoded_tensors(shards, tokenizer):
    urls = data.resolve_shards(shards, "valor32k-test")
    batch = next(iter(data.make_loader(data.ShardStream(urls, SPEC, tokenizer, 4, train=False), 0)))
    assert batch["frames"].shape == (4, 3, 3, 32, 32) and batch["frames"].dtype == torch.uint8
    assert batch["fbank"].shape == (4, 2, 512, 64) and batch["fbank"].dtype == torch.float32
    assert batch["input_ids"].shape == batch["attention_mask"].shape == (4, 16)
    assert (batch["input_ids"][:, 0] == tokenizer.cls_token_id).all()
    targets = data.read_targets(urls)
    assert [targets[k]["captions"] for k in batch["key"]] == batch["captions"]
    assert batch["language"] == ["en"] * 4 and batch["category"].tolist() == [-1] * 4
    inputs = data.to_device(batch, torch.device("cpu"))
    white = torch.full((1, 1, 3, 1, 1), 255, dtype=torch.uint8)
    normal = data.to_device({**batch, "frames": white}, torch.device("cpu"))["frames"].flatten()
    assert normal.tolist() == pytest.approx([(1 - m) / s for m, s in zip(data.CLIP_MEAN, data.CLIP_STD, strict=True)])
    assert inputs["frames"].dtype == torch.float32


def test_training_stream_is_endless_and_seeded(shards, tokenizer):
    urls = data.resolve_shards(shards, "valor32k-train")

    def first(seed, n=6):
        it = iter(data.make_loader(data.ShardStream(urls, SPEC, tokenizer, 4, train=True, seed=seed,
                                                    shuffle_buffer=8), 2))
        batches = [next(it) for _ in range(n)]                       # 24 samples from 8 clips: passes repeat
        return [k for b in batches for k in b["key"]], torch.cat([b["frames"] for b in batches])

    keys, frames = first(0)
    again_keys, again_frames = first(0)
    assert keys == again_keys and torch.equal(frames, again_frames)
    assert len(set(keys)) == 8
    assert first(1)[0] != keys


def _rewrite(tar_path, out, extra):
    with tarfile.open(tar_path) as src, tarfile.open(out, "w") as dst:
        for member in src:
            dst.addfile(member, src.extractfile(member))
            for name, payload in extra(member.name):
                info = tarfile.TarInfo(name)
                info.size = len(payload)
                dst.addfile(info, io.BytesIO(payload))


class _Trap:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_unknown_members_are_never_unpickled(shards, tokenizer, tmp_path):
    trap = tmp_path / "unpickled"
    bomb = pickle.dumps(_Trap(str(trap)))
    source = data.resolve_shards(shards, "valor32k-test")[0]
    out = tmp_path / "with-pickles.tar"
    _rewrite(source, out, lambda name: [(name.replace(".txt", ".pyd"), bomb), (name.replace(".txt", ".pickle"), bomb)]
             if name.endswith(".txt") else [])
    keys = _keys(data.ShardStream([str(out)], SPEC, tokenizer, 2, train=False), 0)
    assert len(keys) == 4 and not trap.exists()


def test_broken_clips_are_skipped(shards, tokenizer, tmp_path, caplog):
    source = data.resolve_shards(shards, "valor32k-test")[0]
    out = tmp_path / "broken.tar"
    with tarfile.open(source) as src, tarfile.open(out, "w") as dst:
        for n, member in enumerate(src):
            payload = src.extractfile(member).read()
            if n == 0:                                               # the first clip's mp4 is garbage
                payload = b"not an mp4" * 10
            member.size = len(payload)
            dst.addfile(member, io.BytesIO(payload))
    keys = _keys(data.ShardStream([str(out)], SPEC, tokenizer, 2, train=False), 0)
    assert len(keys) == 3
    assert "skipping clip" in caplog.text


def test_targets_are_read_from_the_json_members(tmp_path):
    make_synthetic_shards(tmp_path, SynthShards(splits=(("youku-classification-train", 8),), per_shard=4,
                                                seconds=2.0, language="zh", categories=True, seed=3))
    urls = data.resolve_shards(tmp_path, "youku-classification-train")
    table = data.read_targets(urls)
    assert len(table) == 8
    assert all(t["category"] is not None and t["category_name"] and t["captions"] for t in table.values())
    tokenizer = text.make_tokenizer(text.build_vocab(c for t in table.values() for c in t["captions"]))
    batch = next(iter(data.make_loader(data.ShardStream(urls, SPEC, tokenizer, 8, train=False), 0)))
    assert batch["captions"] == [table[k]["captions"] for k in batch["key"]]
    assert batch["category"].tolist() == [table[k]["category"] for k in batch["key"]]


def test_shard_list_from_elsewhere(shards, tmp_path):
    listing = json.loads((shards / "shards" / "valor32k-test.shards.json").read_text())
    assert listing["__kind__"] == "wids-shard-index-v1" and sum(e["nsamples"] for e in listing["shardlist"]) == 5
    moved = tmp_path / "moved"
    shutil.copytree(shards / "shards", moved)
    urls = data.read_shard_list(moved / "valor32k-test.shards.json")
    assert all(u.startswith(str(moved)) for u in urls)
