"""The trainer on damaged shards: every problem names its shard (and clip), what is skipped is
counted against the shard list's ``nsamples``, and evaluation fails when clips are missing.

Before: a random-bytes or truncated tar raised a bare ``tarfile.ReadError`` (building the
vocabulary), an invalid json member said only "Expecting value: line 1 column 1", a damaged
member header silently ended the shard, and a truncated evaluation tar was evaluated on 2 of
its 6 clips with success.
"""

import io
import logging
import random
import shutil
import tarfile
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from valor_data.errors import ValorError  # noqa: E402
from valor_data.synth.shards import SynthShards, make_synthetic_shards  # noqa: E402
from valor_data.train import data, loop, tars, text  # noqa: E402
from valor_data.train.config import TrainConfig  # noqa: E402
from valor_data.train.evaluate import evaluate_split  # noqa: E402

SPEC = data.SampleSpec(frames=2, image_size=32, audio_slices=1, max_text_len=16)
SMALL = {"max_text_len": 16, "text_hidden": 32, "text_layers": 1, "text_heads": 2, "text_ffn": 64,
         "vision_hidden": 32, "vision_layers": 1, "vision_heads": 2, "vision_ffn": 64, "image_size": 32,
         "frames": 2, "audio_hidden": 32, "audio_layers": 1, "audio_heads": 2, "audio_ffn": 64, "embed_dim": 16}
DAMAGED = "valor32k-test-000000.tar"        # 6 clips of 4 members (mp4, flac, json, txt); its sibling is intact
PER_SHARD = 6
KINDS = ("random_bytes", "truncated", "flipped_header", "bad_json")
# clips each damage leaves readable in the damaged tar, and what the warning must say
READABLE = {"random_bytes": 0, "truncated": 2, "flipped_header": 2, "bad_json": PER_SHARD}
SAYS = {"random_bytes": "read 0 of 6 clips; skipped: ReadError", "truncated": "read 2 of 6 clips; skipped: ReadError",
        "flipped_header": "read 2 of 6 clips; skipped: the tar ends early", "bad_json": "not valid JSON (Expecting value"}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("damaged-pristine")
    make_synthetic_shards(root, SynthShards(splits=(("valor32k-train", 6), ("valor32k-test", 2 * PER_SHARD)),
                                            per_shard=PER_SHARD, seconds=2.0, seed=4))
    return root


def _members(path: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(path) as tar:
        return tar.getmembers()


def _damage(tar: Path, kind: str) -> str | None:
    """Damage ``tar`` in place; the clip whose json is broken (bad_json), else None."""
    members = _members(tar)
    third = members[2 * 4]                        # the third clip's first member (its mp4)
    raw = bytearray(tar.read_bytes())
    if kind == "random_bytes":
        raw = bytearray(random.Random(0).randbytes(len(raw)))
    elif kind == "truncated":
        raw = raw[: third.offset_data + third.size // 2]
    elif kind == "flipped_header":
        raw[third.offset] ^= 0xFF                # its name: the header checksum no longer matches
    else:
        bad = members[1 * 4 + 2]                 # the second clip's json
        assert bad.name.endswith(".json")
        with tarfile.open(tar) as src:
            payloads = [(m, b"not json" if m.name == bad.name else src.extractfile(m).read()) for m in members]
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as dst:
            for member, payload in payloads:
                member.size = len(payload)
                dst.addfile(member, io.BytesIO(payload))
        tar.write_bytes(out.getvalue())
        return bad.name.rsplit(".", 1)[0]
    tar.write_bytes(bytes(raw))
    return None


@pytest.fixture(scope="module", params=KINDS)
def damaged(request, pristine, tmp_path_factory) -> tuple[str, Path, str | None]:
    root = tmp_path_factory.mktemp(f"damaged-{request.param}")
    shutil.copytree(pristine / "shards", root / "shards")
    return request.param, root, _damage(root / "shards" / DAMAGED, request.param)


@pytest.fixture(scope="module")
def tokenizer(pristine):
    targets = data.read_targets(data.resolve_shards(pristine, "valor32k-train"))
    return text.make_tokenizer(text.build_vocab(c for t in targets.values() for c in t["captions"]))


def _no_tracebacks(caplog) -> None:
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


def test_the_damage_is_real(damaged, pristine):
    """Each damaged tar really breaks plain tarfile reading (or its json), as the issue met it."""
    kind, root, bad_key = damaged
    if kind in ("random_bytes", "truncated"):
        with pytest.raises(tarfile.ReadError), tarfile.open(root / "shards" / DAMAGED) as tar:
            for member in tar:
                tar.extractfile(member).read()
    elif kind == "flipped_header":
        assert len(_members(root / "shards" / DAMAGED)) == 2 * 4        # silently: the rest is gone
    else:
        assert bad_key is not None


def test_the_stream_names_the_shard_and_counts_what_it_skipped(damaged, tokenizer, caplog):
    kind, root, bad_key = damaged
    caplog.set_level(logging.WARNING)
    urls = data.resolve_shards(root, "valor32k-test")
    keys = [k for batch in data.make_loader(data.ShardStream(urls, SPEC, tokenizer, 4, train=False), 0)
            for k in batch["key"]]
    decodable = READABLE[kind] - (bad_key is not None)
    assert len(keys) == len(set(keys)) == PER_SHARD + decodable               # the intact tar is read whole
    assert SAYS[kind] in caplog.text, caplog.text
    assert DAMAGED in caplog.text and "valor32k-test-000001.tar" not in caplog.text
    if bad_key:
        assert f"skipping clip {bad_key} of shard {DAMAGED}: json member is not valid JSON" in caplog.text
    _no_tracebacks(caplog)


def test_captions_for_the_vocabulary_and_the_control_survive_the_damage(damaged, caplog):
    kind, root, bad_key = damaged
    caplog.set_level(logging.WARNING)
    urls = data.resolve_shards(root, "valor32k-test")
    table = data.read_targets(urls)
    assert len(table) == PER_SHARD + READABLE[kind] - (bad_key is not None)
    assert DAMAGED in caplog.text, caplog.text
    if bad_key:
        assert f"clip {bad_key} of shard {DAMAGED}: json member is not valid JSON" in caplog.text
    _no_tracebacks(caplog)


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"steps": 1, "batch_size": 3, "workers": 0, "log_every": 1, "warmup_steps": 1,
                          "model": SMALL, "caption_samples": 2, "eval_batch_size": 4, "beam_size": 2, **kw})


@pytest.fixture(scope="module")
def trained(pristine, tmp_path_factory):
    return loop.train(pristine, _cfg(), tmp_path_factory.mktemp("damaged-run"))


def test_evaluation_fails_when_listed_clips_are_missing(damaged, trained, caplog):
    kind, root, bad_key = damaged
    missing = PER_SHARD - READABLE[kind] + (bad_key is not None)
    with pytest.raises(ValorError, match=rf"read {2 * PER_SHARD - missing} of {2 * PER_SHARD} clips: "
                                         rf"{missing} missing.*{DAMAGED} {PER_SHARD - missing} of {PER_SHARD}"):
        evaluate_split(root, _cfg(), trained.model, trained.tokenizer, torch.device("cpu"))
    tolerant = _cfg(eval_max_missing=missing / (2 * PER_SHARD))        # the stated tolerance, exactly met
    result = evaluate_split(root, tolerant, trained.model, trained.tokenizer, torch.device("cpu"))
    assert result["n"] == 2 * PER_SHARD - missing
    assert result["shards"]["missing"] == missing and list(result["shards"]["short_shards"]) == [DAMAGED]


def test_an_intact_split_evaluates_whole(pristine, trained):
    result = evaluate_split(pristine, _cfg(), trained.model, trained.tokenizer, torch.device("cpu"))
    assert result["shards"] == {"expected": 12, "received": 12, "missing": 0, "short_shards": {},
                                "unlisted_shards": []}


def test_training_reads_past_a_damaged_shard(tmp_path, pristine, caplog):
    caplog.set_level(logging.WARNING)
    shutil.copytree(pristine / "shards", tmp_path / "shards")
    _damage(tmp_path / "shards" / "valor32k-train-000000.tar", "truncated")
    run = loop.train(tmp_path, _cfg(steps=2), tmp_path / "run")
    assert run.step == 2
    assert "shard valor32k-train-000000.tar" in caplog.text
    _no_tracebacks(caplog)


def test_the_report_says_why_clips_are_missing():
    line = tars.shard_report("/w/shards/x-000000.tar", 3, 6, ["ReadError: unexpected end of data"] * 2,
                             ["k1 (no flac)"])
    assert line == ("shard x-000000.tar: read 3 of 6 clips; skipped: ReadError: unexpected end of data; "
                    "1 clip(s) without media: k1 (no flac)")
    assert "more clips than" in tars.shard_report("x.tar", 7, 6, [], [])
