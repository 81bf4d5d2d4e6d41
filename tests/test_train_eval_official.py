"""Evaluation as VALOR's code does it: the caption reference its scorer reads, the decoding
bounds, the per-clip views and the derangements behind the validator's controls."""

import pytest

torch = pytest.importorskip("torch")

from valor_data.shards.exports import coco_reference  # noqa: E402
from valor_data.train import evaluate  # noqa: E402


def test_caption_reference_reads_as_valors_scorer_indexes_it():
    ref = coco_reference([("vid_a", ["one", "two"]), ("vid_b", []), ("vid_c", ["three"])], "test")
    # TXH-mercury/VALOR cococaption/pycocotools/coco.py: createIndex groups ``annotations`` by video_id
    by_video: dict[str, list[str]] = {}
    for ann in ref["annotations"]:
        by_video.setdefault(ann["video_id"], []).append(ann["caption"])
    assert by_video == {"vid_a": ["one", "two"], "vid_c": ["three"]}
    assert [a["image_id"] for a in ref["annotations"]] == ["vid_a", "vid_a", "vid_c"]      # pycocoevalcap too
    assert sorted(a["id"] for a in ref["annotations"]) == [0, 1, 2]                         # unique ids
    assert [i["id"] for i in ref["images"]] == ["vid_a", "vid_c"]


def test_derangement_moves_every_clip_and_is_seeded():
    for n in (2, 3, 80):
        perm = evaluate.derangement(n, seed=5)
        assert sorted(perm.tolist()) == list(range(n)) and not bool((perm == torch.arange(n)).any())
    assert torch.equal(evaluate.derangement(80, 5), evaluate.derangement(80, 5))
    assert not torch.equal(evaluate.derangement(80, 5), evaluate.derangement(80, 6))


def test_per_clip_views_and_controls_on_hand_made_similarities():
    # 3 clips, 4 captions (clip 0 has two); the text groups rank perfectly
    owner = torch.tensor([0, 0, 1, 2])
    texts = {"owner": owner, "first": torch.tensor([0, 2, 3])}
    perfect = (owner[:, None] == torch.arange(3)[None, :]).float()
    sims = {"tv": perfect, "ta": perfect, "tav": perfect}
    views = evaluate.per_clip(sims, texts, scale=50.0)
    assert all(views[g]["hits"]["r1"] == 3 and views[g]["n"] == 3 for g in ("tv", "ta", "tav", "va"))
    # captions given to other clips: every text group misses, video-to-audio (no caption owner) does not
    moved = evaluate.per_clip(sims, texts, 50.0, owner=torch.tensor([1, 2, 0])[owner])
    assert all(moved[g]["hits"]["r1"] == 0 for g in ("tv", "ta", "tav")) and moved["va"]["hits"]["r1"] == 3
    # audio given to other clips (its columns permuted): text-to-audio and video-to-audio miss
    perm = torch.tensor([1, 2, 0])
    moved = evaluate.per_clip({**sims, "ta": perfect[:, perm]}, texts, 50.0)
    assert moved["ta"]["hits"]["r1"] == 0 and moved["va"]["hits"]["r1"] == 0 and moved["tv"]["hits"]["r1"] == 3


def test_generation_stops_at_max_tokens():
    pytest.importorskip("transformers")
    from valor_data.train.model import VALOR, model_config

    shapes = {"vocab_size": 40, "max_text_len": 8, "text_hidden": 32, "text_layers": 1, "text_heads": 2,
              "text_ffn": 64, "vision_hidden": 32, "vision_layers": 1, "vision_heads": 2, "vision_ffn": 64,
              "image_size": 32, "patch_size": 16, "frames": 2, "audio_hidden": 32, "audio_layers": 1,
              "audio_heads": 2, "audio_ffn": 64, "embed_dim": 16}
    torch.manual_seed(0)
    model = VALOR(model_config("tiny", shapes)).eval()
    memory = torch.randn(2, 5, 32)
    for tokens in (3, 12):
        for penalty in (0.0, 1.0):
            out = model.generate(memory, beam=3, max_tokens=tokens, length_penalty=penalty)
            assert len(out) == 2 and all(len(ids) <= tokens for ids in out)


def test_a_withheld_test_split_gives_way_to_its_labelled_val(tmp_path):
    """Youku-mPLUG publishes its classification test set without labels: a classifier is evaluated
    on the labelled val split, and the result says so; a split with labels is kept."""
    from valor_data.synth.shards import SynthShards, make_synthetic_shards
    from valor_data.train.evaluate import labelled_split

    small = dict(per_shard=4, seconds=2.0, language="zh", width=96, height=72, fps=8)
    make_synthetic_shards(tmp_path, SynthShards(splits=(("youku-classification-val", 4),), categories=True, **small))
    make_synthetic_shards(tmp_path, SynthShards(splits=(("youku-classification-test", 4),), categories=False,
                                                seed=1, **small))
    split, note = labelled_split(tmp_path, "youku-classification-test", classifier=True)
    assert split == "youku-classification-val" and "no labels (withheld" in note
    assert labelled_split(tmp_path, "youku-classification-val", classifier=True) == ("youku-classification-val", "")
    assert labelled_split(tmp_path, "youku-classification-test", classifier=False) == ("youku-classification-test", "")
