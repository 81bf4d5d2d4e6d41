"""The VALOR model's wiring: shared text encoder/decoder, causal mask, cross-attention, checkpoints."""

import dataclasses

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from valor_data.errors import ConfigError, ValorError  # noqa: E402
from valor_data.train import text  # noqa: E402
from valor_data.train.model import GROUPS, VALOR, model_config, resize_ast_positions  # noqa: E402

SMALL = {"vocab_size": 30, "max_text_len": 8, "text_hidden": 32, "text_layers": 2, "text_heads": 2,
         "text_ffn": 64, "vision_hidden": 32, "vision_layers": 1, "vision_heads": 2, "vision_ffn": 64,
         "image_size": 32, "patch_size": 16, "frames": 3, "audio_hidden": 32, "audio_layers": 1,
         "audio_heads": 2, "audio_ffn": 64, "audio_slices": 2, "embed_dim": 16}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return VALOR(model_config("tiny", SMALL)).eval()


def _inputs(cfg, batch=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    frames = torch.randn(batch, cfg.frames, 3, cfg.image_size, cfg.image_size, generator=gen)
    fbank = torch.randn(batch, cfg.audio_slices, 512, 64, generator=gen)
    ids = torch.randint(5, cfg.vocab_size, (batch, cfg.max_text_len), generator=gen)
    ids[:, 0] = cfg.cls_id
    mask = torch.ones_like(ids)
    mask[0, 6:] = 0
    return frames, fbank, ids, mask


def test_decoder_shares_every_weight_but_cross_attention(model):
    layers = model.text.bert.encoder.layer
    assert all(hasattr(layer, "crossattention") for layer in layers)
    assert model.text.cls.predictions.decoder.weight is model.text.bert.embeddings.word_embeddings.weight
    _, _, ids, mask = _inputs(model.cfg)
    memory = torch.randn(2, 4, model.cfg.text_hidden)
    encoded, decoded = model.run_text(ids, mask), model.run_text(ids, mask, memory)
    with torch.no_grad():
        for layer in layers:                       # cross-attention only matters to the decoder
            layer.crossattention.self.value.weight.add_(1.0)
        assert torch.allclose(model.run_text(ids, mask), encoded)
        assert not torch.allclose(model.run_text(ids, mask, memory), decoded)
        for layer in layers:
            layer.crossattention.self.value.weight.sub_(1.0)


def test_decoder_is_causal_and_encoder_is_not(model):
    _, _, ids, mask = _inputs(model.cfg)
    mask[:] = 1
    memory = torch.randn(2, 4, model.cfg.text_hidden)
    later = ids.clone()
    later[:, 5:] = 7
    with torch.no_grad():
        dec_a, dec_b = model.run_text(ids, mask, memory), model.run_text(later, mask, memory)
        enc_a, enc_b = model.run_text(ids, mask), model.run_text(later, mask)
    assert torch.allclose(dec_a[:, :5], dec_b[:, :5], atol=1e-6)     # earlier positions cannot see later ones
    assert not torch.allclose(dec_a[:, 5:], dec_b[:, 5:])
    assert not torch.allclose(enc_a[:, :5], enc_b[:, :5])             # the encoder sees everything


def test_each_group_cross_attends_to_every_token_of_its_modalities(model):
    cfg = model.cfg
    frames, fbank, ids, mask = _inputs(cfg)
    with torch.no_grad():
        video, audio = model.encode_video(frames), model.encode_audio(fbank)
        assert cfg.frame_tokens == (32 // 16) ** 2 + 1 and cfg.slice_tokens == 2 * 16 + 1   # [CLS] + patches
        assert video.shape == (2, 3, 5, 32) and audio.shape == (2, 2, 33, 32)
        ast = model.audio(input_values=fbank.flatten(0, 1)).last_hidden_state.view(2, 2, 34, 32)
        assert torch.equal(audio, torch.cat([ast[:, :, :1], ast[:, :, 2:]], dim=2))    # no distillation token
        tav = model.memory(video, audio, "tav")
        assert tav.shape == (2, cfg.memory_tokens, cfg.text_hidden) and cfg.memory_tokens == 3 * 5 + 2 * 33
        expected_video = (video + model.video_frame_embedding[:3, None]).flatten(1, 2) + model.video_type_embedding
        expected_audio = (audio + model.audio_frame_embedding[:2, None]).flatten(1, 2) + model.audio_type_embedding
        assert torch.allclose(tav, torch.cat([expected_video, expected_audio], dim=1))   # same widths: no projection
        other_video, other_audio = video + 1.0, audio + 1.0
        assert torch.equal(model.memory(video, other_audio, "tv"), model.memory(video, audio, "tv"))
        assert torch.equal(model.memory(other_video, audio, "ta"), model.memory(video, audio, "ta"))
        assert model.memory(video, audio, "tv").shape[1] == 15 and model.memory(video, audio, "ta").shape[1] == 66
        decoded = model.run_text(ids, mask, model.memory(video, audio, "ta"))
        assert not torch.allclose(decoded, model.run_text(ids, mask, model.memory(video, other_audio, "ta")))
        tokens = model.group_tokens(video, audio)                    # MGA: one [CLS] per frame and per slice
        assert torch.allclose(tokens["tv"][0], model.video_proj(video[:, :, 0]))
        assert tokens["ta"][0].shape == (2, 2, cfg.embed_dim)
        assert torch.equal(tokens["tav"][0], torch.cat([tokens["tv"][0], tokens["ta"][0]], dim=1))


@pytest.mark.parametrize("shape", [{"vision_hidden": 48, "audio_hidden": 24, "frames": 2, "audio_slices": 3},
                                   {"image_size": 48, "audio_patch": 16, "audio_stride": 16, "frames": 1}])
def test_memory_length_is_frames_times_patch_tokens_plus_audio_tokens(shape):
    cfg = model_config("tiny", {**SMALL, **shape})
    torch.manual_seed(0)
    model = VALOR(cfg).eval()
    frames, fbank, _, _ = _inputs(cfg)
    patches = (cfg.image_size // cfg.patch_size) ** 2
    audio_patches = ((64 - cfg.audio_patch) // cfg.audio_stride + 1) * ((512 - cfg.audio_patch) // cfg.audio_stride + 1)
    with torch.no_grad():
        memory = model.memory(model.encode_video(frames), model.encode_audio(fbank), "tav")
    assert memory.shape == (2, cfg.frames * (patches + 1) + cfg.audio_slices * (audio_patches + 1), cfg.text_hidden)
    if cfg.vision_hidden != cfg.text_hidden:                       # VALOR's hidden_trans: Linear + LayerNorm
        assert isinstance(model.video_memory[0], torch.nn.Linear) and isinstance(model.video_memory[1], torch.nn.LayerNorm)


def test_base_shape_is_valors():
    cfg = model_config("base")
    assert cfg.frame_tokens == 197 and cfg.slice_tokens == 129               # ViT-B/16 at 224; AST 64x512 / 16
    assert cfg.memory_tokens == 8 * 197 + 2 * 129 == 1834
    assert (cfg.audio_patch, cfg.audio_stride, cfg.max_text_len, cfg.audio_rate) == (16, 16, 42, 22050)


def test_token_weight_heads_are_two_layer_mlps(model):
    for head in model.token_weight.values():
        first, act, second = head
        assert (first.in_features, first.out_features, second.out_features) == (16, 16, 1)
        assert isinstance(act, torch.nn.ReLU)
    assert model.text_proj.bias is None and model.video_proj.bias is None    # VALOR's Contra_head


def test_forward_losses_and_gradients(model):
    torch.manual_seed(1)
    model.train()
    try:
        losses = model(*_inputs(model.cfg, batch=3))
    finally:
        model.eval()
    assert set(losses) == {f"mga_{g}" for g in GROUPS} | {f"mgc_{g}" for g in GROUPS} | {"mga", "mgc", "class", "loss"}
    assert model.classifier is None and losses["class"].item() == 0.0          # no categories: no head
    assert all(torch.isfinite(v) for v in losses.values())
    mga = sum(losses[f"mga_{g}"] for g in GROUPS) / 3
    mgc = sum(losses[f"mgc_{g}"] for g in GROUPS) / 3
    assert losses["loss"].item() == pytest.approx(1.5 * mga.item() + mgc.item(), rel=1e-5)
    losses["loss"].backward()
    assert model.logit_scale.grad is not None and model.audio.embeddings.patch_embeddings.projection.weight.grad is not None
    model.zero_grad(set_to_none=True)


def test_classification_head_maps_categories_and_learns_them():
    torch.manual_seed(0)
    model = VALOR(model_config("tiny", {**SMALL, "classes": (3, 12, 40)}))
    assert model.classifier.out_features == 3
    category = torch.tensor([12, -1, 40, 7])                 # none, and a category the head lacks: ignored
    assert model.class_targets(category).tolist() == [1, -1, 2, -1]
    frames, fbank, ids, mask = _inputs(model.cfg, batch=4)
    losses = model(frames, fbank, ids, mask, category)
    logits = model.classify(model.encode_video(frames), model.encode_audio(fbank))
    expected = torch.nn.functional.cross_entropy(logits[[0, 2]], torch.tensor([1, 2]))
    assert losses["class"].item() == pytest.approx(expected.item(), rel=1e-4)
    assert losses["loss"].item() == pytest.approx(1.5 * losses["mga"].item() + losses["mgc"].item()
                                                  + losses["class"].item(), rel=1e-5)
    none = model(frames, fbank, ids, mask, torch.full((4,), -1))["class"]
    none.backward()                                          # still part of the graph (DDP), but zero
    assert none.item() == 0.0 and model.classifier.weight.grad is not None
    assert not model.classifier.weight.grad.any()


def test_coarse_option_uses_cls(model):
    coarse = dataclasses.replace(model.cfg, fine_grained=False)
    model.cfg, saved = coarse, model.cfg
    try:
        sim = model.similarity(torch.randn(2, 4, 16), torch.ones(2, 4), torch.zeros(2, 4), torch.randn(3, 5, 16),
                               torch.zeros(3, 5))
    finally:
        model.cfg = saved
    assert sim.shape == (2, 3) and sim.abs().max() <= 1.0 + 1e-6


def test_greedy_generation_is_the_argmax_loop(model):
    frames, fbank, _, _ = _inputs(model.cfg)
    with torch.no_grad():
        memory = model.memory(model.encode_video(frames), model.encode_audio(fbank), "tav")
        greedy = model.generate(memory, beam=1)
        cfg = model.cfg
        for row, mem in zip(greedy, memory, strict=True):
            seq = torch.tensor([[cfg.cls_id]])
            expected = []
            for _ in range(cfg.max_text_len - 1):
                logp = model.next_token_logprobs(seq, mem[None])[0]
                logp[[cfg.pad_id, cfg.cls_id, cfg.mask_id, cfg.unk_id]] = float("-inf")
                token = int(logp.argmax())
                if token == cfg.sep_id:
                    break
                expected.append(token)
                seq = torch.cat([seq, torch.tensor([[token]])], dim=1)
            assert row == expected
        beams = model.generate(memory, beam=3)
    assert len(beams) == 2
    assert all(t not in (cfg.pad_id, cfg.cls_id, cfg.sep_id, cfg.mask_id) for row in beams for t in row)


def test_unknown_preset_and_setting():
    with pytest.raises(ConfigError, match="unknown preset"):
        model_config("huge")
    with pytest.raises(ConfigError, match="layers_typo"):
        model_config("tiny", {"layers_typo": 3})


def test_missing_init_path_is_a_clear_error(tmp_path):
    cfg = model_config("tiny", SMALL)
    with pytest.raises(ValorError, match="no such checkpoint folder"):
        VALOR(cfg, text_init=str(tmp_path / "bert-base-uncased"))
    with pytest.raises(ValorError, match="nothing is downloaded"):
        VALOR(cfg, audio_init=str(tmp_path / "ast"))


def test_loads_local_checkpoints_and_resizes_ast_positions(tmp_path):
    from transformers import ASTModel, BertLMHeadModel, CLIPVisionModel

    from valor_data.train.model import ast_config, bert_config, clip_config

    cfg = model_config("tiny", SMALL)
    torch.manual_seed(3)
    bert = BertLMHeadModel(bert_config(cfg))
    clip = CLIPVisionModel(clip_config(cfg))
    source_ast = dataclasses.replace(cfg, mel_bins=128, slice_frames=1024)    # the published AST input shape
    ast = ASTModel(ast_config(source_ast))
    with torch.no_grad():
        ast.embeddings.position_embeddings.normal_()
    for name, module in (("text", bert), ("vision", clip), ("audio", ast)):
        module.save_pretrained(tmp_path / name)
    text.write_vocab(text.SPECIALS + [f"w{i}" for i in range(25)], tmp_path / "text" / "vocab.txt")
    model = VALOR(cfg, str(tmp_path / "text"), str(tmp_path / "vision"), str(tmp_path / "audio"))
    assert torch.equal(model.text.bert.embeddings.word_embeddings.weight, bert.bert.embeddings.word_embeddings.weight)
    assert torch.equal(model.vision.embeddings.patch_embedding.weight, clip.embeddings.patch_embedding.weight)
    positions = model.audio.embeddings.position_embeddings
    assert positions.shape == (1, 2 + 2 * 16, 32)                  # 64 bins x 512 frames, patch 32
    expected = resize_ast_positions(ast.embeddings.position_embeddings, (4, 32), (2, 16))
    assert torch.equal(positions, expected)
    assert torch.equal(positions[:, :2], ast.embeddings.position_embeddings[:, :2])
    assert len(text.read_vocab(tmp_path / "text")) == 30
