"""The VALOR model, built from ``transformers`` modules.

- text: BERT. The same ``BertModel`` is the text encoder (bidirectional, no cross-attention)
  and the multimodal decoder (causal self-attention plus the cross-attention layers, which are
  the only weights the decoder does not share with the encoder).
- vision: CLIP ViT over N sampled frames: every token of every frame (post-layernormed, as
  VALOR's ``VisionTransformer.forward`` in ``model/clip.py`` returns them), [B, N, 1 + P, Hv].
- audio: AST over 64-bin filterbank slices of 512 frames, non-overlapping 16x16 patches (VALOR's
  ``AudioEmbeddings`` in ``model/modeling.py``: kernel = stride = ``audio_patch_size`` 16), every
  token of every slice, [B, K, 1 + P, Ha]; the distillation token of the ``transformers`` AST is
  left out (VALOR's AST has none).
- MGA (``model/pretrain.py`` of TXH-mercury/VALOR): each frame and each slice is its [CLS]
  token (``pool_video_for_contra``, ``pool_audio_for_contra``) projected without bias
  (``Contra_head``); groups text-video, text-audio and text-audio+video (frames and slices
  concatenated); token weights from two-layer MLPs (``*_fine_weight``).
- MGC decodes the caption while cross-attending to every frame token and every slice token
  of the group (``get_multimodal_forward_input_video/audio``: projected to the text width
  with a LayerNorm when the widths differ, plus a per-frame / per-slice embedding, plus a
  modality-type embedding; ``cross_attn_type`` ``va_concate``: video tokens, then audio):
  8 frames x 197 + 2 slices x 129 = 1,834 tokens at the ``base`` shape.
- classification (when the training clips carry categories, as Youku-mPLUG's do): a linear
  head over the fused clip feature (mean frame [CLS] and mean slice [CLS], projected and
  concatenated), trained with cross-entropy beside MGA and MGC. ``classes`` lists the category
  indices its outputs stand for.

The shape is a ``ModelConfig``; ``PRESETS`` holds ``tiny`` (random init, a few million
parameters, minutes on a laptop CPU) and ``base`` (BERT-base, CLIP ViT-B/16, AST-base shapes,
loaded from local Hugging Face checkpoints given as paths; nothing is ever downloaded).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from valor_data.errors import ConfigError, ValorError
from valor_data.train.losses import (
    IGNORE,
    causal_mask,
    class_loss,
    coarse_similarity,
    fine_similarity,
    gather,
    info_nce,
    mask_tokens,
    mgc_loss,
)

log = logging.getLogger(__name__)

GROUPS = ("tv", "ta", "tav")     # text-video, text-audio, text-audio+video
MAX_FRAMES = 32                  # rows of the frame / slice embeddings (VALOR's video_frame_embedding)


@dataclass
class ModelConfig:
    """The model's shape. Token ids are filled in from the tokenizer."""

    vocab_size: int = 0
    pad_id: int = 0
    cls_id: int = 2
    sep_id: int = 3
    mask_id: int = 4
    unk_id: int = 1
    max_text_len: int = 32            # with [CLS] and [SEP] (VALOR: max_txt_len 40 -> 42)
    text_hidden: int = 128
    text_layers: int = 2
    text_heads: int = 4
    text_ffn: int = 512
    frames: int = 4
    image_size: int = 64
    patch_size: int = 16
    vision_hidden: int = 128
    vision_layers: int = 2
    vision_heads: int = 4
    vision_ffn: int = 512
    audio_slices: int = 1
    mel_bins: int = 64
    slice_frames: int = 512
    audio_rate: int = 22050           # filterbank sample rate (VALOR's audio_22050hz)
    audio_patch: int = 32             # AST patch side (VALOR: audio_patch_size 16)
    audio_stride: int = 32            # AST frequency and time stride (VALOR: = the patch, no overlap)
    audio_hidden: int = 128
    audio_layers: int = 2
    audio_heads: int = 4
    audio_ffn: int = 512
    embed_dim: int = 128              # the contrastive space
    fine_grained: bool = True         # False: the coarse [CLS] / mean-token similarity
    temperature: float = 0.07         # initial InfoNCE temperature (learned)
    mga_weight: float = 1.5           # total loss = mga_weight * MGA + MGC
    mask_prob: float = 0.6
    dropout: float = 0.0
    classes: tuple[int, ...] = ()     # category indices of the classification head (empty: no head)
    class_weight: float = 1.0         # total loss += class_weight * cross-entropy of the head

    @property
    def frame_tokens(self) -> int:
        """Tokens per frame: [CLS] and the patches."""
        return (self.image_size // self.patch_size) ** 2 + 1

    @property
    def slice_tokens(self) -> int:
        """Tokens per filterbank slice: [CLS] and the patches (the distillation token left out)."""
        freq = (self.mel_bins - self.audio_patch) // self.audio_stride + 1
        time = (self.slice_frames - self.audio_patch) // self.audio_stride + 1
        return freq * time + 1

    @property
    def memory_tokens(self) -> int:
        """What the decoder cross-attends to for text-audio+video."""
        return self.frames * self.frame_tokens + self.audio_slices * self.slice_tokens


# base: VALOR's test-time shape for VALOR-32K (config/caption-valor32k.json: 8 frames, 2 audio
# slices; pretraining and fine-tuning train on 4 frames: the recipes' train.frames) with BERT-base,
# CLIP ViT-B/16 and AST-base widths, pretraining's 40-token captions (fine-tuning: 30,
# --model max_text_len=32) and dropout 0.1 (model/modeling.py base_cfg).
PRESETS = {
    "tiny": ModelConfig(),
    "base": ModelConfig(max_text_len=42, text_hidden=768, text_layers=12, text_heads=12, text_ffn=3072,
                        frames=8, image_size=224, patch_size=16, vision_hidden=768, vision_layers=12,
                        vision_heads=12, vision_ffn=3072, audio_slices=2, audio_patch=16, audio_stride=16,
                        audio_hidden=768, audio_layers=12, audio_heads=12, audio_ffn=3072, embed_dim=512,
                        dropout=0.1),
}


def model_config(preset: str, overrides: dict | None = None) -> ModelConfig:
    """A preset's ModelConfig with field ``overrides`` (the ``model:`` mapping of the train config)."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r} (known: {', '.join(PRESETS)})")
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(overrides or {}) - known)
    if unknown:
        raise ConfigError(f"unknown model setting(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    return dataclasses.replace(PRESETS[preset], **(overrides or {}))


def bert_config(cfg: ModelConfig):
    from transformers import BertConfig

    return BertConfig(vocab_size=cfg.vocab_size, hidden_size=cfg.text_hidden, num_hidden_layers=cfg.text_layers,
                      num_attention_heads=cfg.text_heads, intermediate_size=cfg.text_ffn,
                      max_position_embeddings=max(512, cfg.max_text_len), hidden_dropout_prob=cfg.dropout,
                      attention_probs_dropout_prob=cfg.dropout, pad_token_id=cfg.pad_id, is_decoder=True,
                      add_cross_attention=True, tie_word_embeddings=True, attn_implementation="sdpa")


def clip_config(cfg: ModelConfig):
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(hidden_size=cfg.vision_hidden, num_hidden_layers=cfg.vision_layers,
                            num_attention_heads=cfg.vision_heads, intermediate_size=cfg.vision_ffn,
                            image_size=cfg.image_size, patch_size=cfg.patch_size, attn_implementation="sdpa")


def ast_config(cfg: ModelConfig):
    from transformers import ASTConfig

    return ASTConfig(hidden_size=cfg.audio_hidden, num_hidden_layers=cfg.audio_layers,
                     num_attention_heads=cfg.audio_heads, intermediate_size=cfg.audio_ffn,
                     num_mel_bins=cfg.mel_bins, max_length=cfg.slice_frames, patch_size=cfg.audio_patch,
                     frequency_stride=cfg.audio_stride, time_stride=cfg.audio_stride,
                     hidden_dropout_prob=cfg.dropout, attn_implementation="sdpa")


def check_init_paths(text: str | None = None, vision: str | None = None, audio: str | None = None) -> None:
    """Every checkpoint path given must be a local folder (nothing is ever downloaded)."""
    for what, path in (("text", text), ("vision", vision), ("audio", audio)):
        if path and not Path(path).is_dir():
            raise ValorError(f"--{what}-init {path}: no such checkpoint folder (give a local Hugging Face "
                             "checkpoint; nothing is downloaded)")


def _from_pretrained(cls, path: str, what: str, config=None):
    """``cls.from_pretrained`` from a local folder only; a missing or unusable one is a ValorError."""
    check_init_paths(**{what: path})
    kwargs = {"config": config} if config is not None else {}
    try:
        return cls.from_pretrained(path, local_files_only=True, **kwargs)
    except (OSError, ValueError, RuntimeError) as exc:
        raise ValorError(f"cannot load the {what} checkpoint {path}: {exc}") from None


def resize_ast_positions(positions: torch.Tensor, source: tuple[int, int], target: tuple[int, int]) -> torch.Tensor:
    """AST position embeddings [1, 2 + f*t, H] from a (f, t) patch grid to another (bilinear)."""
    if source == target:
        return positions
    head, grid = positions[:, :2], positions[:, 2:]
    grid = grid.reshape(1, *source, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=target, mode="bilinear", align_corners=False)
    return torch.cat([head, grid.permute(0, 2, 3, 1).flatten(1, 2)], dim=1)


def _ast_grid(config) -> tuple[int, int]:
    return ((config.num_mel_bins - config.patch_size) // config.frequency_stride + 1,
            (config.max_length - config.patch_size) // config.time_stride + 1)


def load_audio_encoder(cfg: ModelConfig, path: str | None):
    """AST with our filterbank shape; a checkpoint of another shape gets its positions resized."""
    from transformers import ASTModel

    config = ast_config(cfg)
    model = ASTModel(config)
    if path:
        source = _from_pretrained(ASTModel, path, "audio")
        state = source.state_dict()
        key = "embeddings.position_embeddings"
        state[key] = resize_ast_positions(state[key], _ast_grid(source.config), _ast_grid(config))
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise ValorError(f"the audio checkpoint {path} does not fit the preset's AST shape: {exc}") from None
    return model


def load_encoders(cfg: ModelConfig, text_init=None, vision_init=None, audio_init=None):
    """(BertLMHeadModel, CLIPVisionModel, ASTModel): random init, or local checkpoints."""
    from transformers import BertLMHeadModel, CLIPVisionModel

    text = (_from_pretrained(BertLMHeadModel, text_init, "text", bert_config(cfg)) if text_init
            else BertLMHeadModel(bert_config(cfg)))
    vision = (_from_pretrained(CLIPVisionModel, vision_init, "vision", clip_config(cfg)) if vision_init
              else CLIPVisionModel(clip_config(cfg)))
    return text, vision, load_audio_encoder(cfg, audio_init)


def weight_head(dim: int) -> nn.Module:
    """Token-weight logits: VALOR's ``*_fine_weight``, Linear-ReLU-Linear (``model/pretrain.py``)."""
    return nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, 1))


def to_decoder(width: int, text_width: int) -> nn.Module:
    """Encoder tokens to the decoder's width: VALOR's ``hidden_trans_*_multimodal`` (Linear and
    LayerNorm, only when the widths differ)."""
    if width == text_width:
        return nn.Identity()
    return nn.Sequential(nn.Linear(width, text_width), nn.LayerNorm(text_width, eps=1e-12))


class VALOR(nn.Module):
    """Encoders, projections, the shared text encoder/decoder and the two objectives."""

    def __init__(self, cfg: ModelConfig, text_init: str | None = None, vision_init: str | None = None,
                 audio_init: str | None = None):
        super().__init__()
        if cfg.vocab_size <= 0:
            raise ConfigError("ModelConfig.vocab_size is not set (take it from the tokenizer)")
        if max(cfg.frames, cfg.audio_slices) > MAX_FRAMES:
            raise ConfigError(f"at most {MAX_FRAMES} frames and audio slices (frames {cfg.frames}, "
                              f"audio_slices {cfg.audio_slices})")
        self.cfg = cfg
        self.text, self.vision, self.audio = load_encoders(cfg, text_init, vision_init, audio_init)
        ht, hv, ha, d = cfg.text_hidden, cfg.vision_hidden, cfg.audio_hidden, cfg.embed_dim
        self.text_proj, self.video_proj, self.audio_proj = (nn.Linear(h, d, bias=False) for h in (ht, hv, ha))
        self.token_weight = nn.ModuleDict({m: weight_head(d) for m in ("text", "video", "audio")})
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / cfg.temperature)))
        self.video_memory, self.audio_memory = to_decoder(hv, ht), to_decoder(ha, ht)
        self.video_frame_embedding = nn.Parameter(0.02 * torch.randn(MAX_FRAMES, ht))
        self.audio_frame_embedding = nn.Parameter(0.02 * torch.randn(MAX_FRAMES, ht))
        self.video_type_embedding = nn.Parameter(0.02 * torch.randn(ht))
        self.audio_type_embedding = nn.Parameter(0.02 * torch.randn(ht))
        self.classifier = nn.Linear(2 * d, len(cfg.classes)) if cfg.classes else None
        self.register_buffer("class_ids", torch.tensor(list(cfg.classes), dtype=torch.long), persistent=False)

    # -- encoders ---------------------------------------------------------------------------
    def encode_video(self, frames: torch.Tensor) -> torch.Tensor:
        """CLIP-normalised frames [B, N, 3, S, S] -> every frame's tokens [B, N, 1 + P, Hv] ([CLS] first)."""
        b, n = frames.shape[:2]
        hidden = self.vision(pixel_values=frames.flatten(0, 1)).last_hidden_state
        tokens = self.vision.post_layernorm(hidden)
        return tokens.view(b, n, *tokens.shape[1:])

    def encode_audio(self, fbank: torch.Tensor) -> torch.Tensor:
        """Filterbank slices [B, K, 512, 64] -> every slice's tokens [B, K, 1 + P, Ha] ([CLS] first)."""
        b, k = fbank.shape[:2]
        hidden = self.audio(input_values=fbank.flatten(0, 1)).last_hidden_state
        tokens = torch.cat([hidden[:, :1], hidden[:, 2:]], dim=1)          # without the distillation token
        return tokens.view(b, k, *tokens.shape[1:])

    def run_text(self, ids: torch.Tensor, mask: torch.Tensor, memory: torch.Tensor | None = None) -> torch.Tensor:
        """BERT over ``ids`` [B, L] -> [B, L, Ht]: the bidirectional text encoder, or (given
        ``memory`` [B, M, Ht]) the causal multimodal decoder that cross-attends to it."""
        bert = self.text.bert
        hidden = bert.embeddings(input_ids=ids)
        attention = causal_mask(mask, causal=memory is not None)
        for layer in bert.encoder.layer:
            hidden = layer(hidden, attention_mask=attention, encoder_hidden_states=memory)
        return hidden

    # -- MGA --------------------------------------------------------------------------------
    def text_tokens(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Text tokens in the contrastive space [B, L, D] and their weight logits [B, L]."""
        tokens = self.text_proj(hidden)
        return tokens, self.token_weight["text"](tokens).squeeze(-1)

    def group_tokens(self, video: torch.Tensor, audio: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Per group: modality tokens [B, n, D] (one per frame / slice: its [CLS]) and weight
        logits [B, n] (audio+video concatenated)."""
        v, a = self.video_proj(video[:, :, 0]), self.audio_proj(audio[:, :, 0])
        vw, aw = self.token_weight["video"](v).squeeze(-1), self.token_weight["audio"](a).squeeze(-1)
        return {"tv": (v, vw), "ta": (a, aw), "tav": (torch.cat([v, a], 1), torch.cat([vw, aw], 1))}

    def similarity(self, text, text_mask, text_logits, modal, modal_logits) -> torch.Tensor:
        """Caption-by-clip similarity [Bt, Bm], fine-grained or coarse per the config."""
        if self.cfg.fine_grained:
            return fine_similarity(text, text_mask, text_logits, modal, modal_logits)
        return coarse_similarity(text[:, 0], modal)

    # -- classification ---------------------------------------------------------------------
    def classify(self, video: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """Class logits [B, C] from frame [B, N, T, Hv] and slice [B, K, T, Ha] tokens."""
        fused = torch.cat([self.video_proj(video[:, :, 0]).mean(1), self.audio_proj(audio[:, :, 0]).mean(1)], dim=-1)
        return self.classifier(fused)

    def class_targets(self, category: torch.Tensor) -> torch.Tensor:
        """Category indices [B] -> head outputs [B]; -1 for none (-1) or a category the head lacks."""
        match = category[:, None] == self.class_ids[None, :]
        return torch.where(match.any(1), match.int().argmax(1), torch.full_like(category, -1))

    # -- MGC --------------------------------------------------------------------------------
    def memory(self, video: torch.Tensor, audio: torch.Tensor, group: str) -> torch.Tensor:
        """What the decoder cross-attends to for ``group``: every token of its frames and slices,
        [B, N * T (+ K * T'), Ht], video first."""
        parts = []
        if "v" in group:
            parts.append(_tagged(self.video_memory(video), self.video_frame_embedding, self.video_type_embedding))
        if "a" in group:
            parts.append(_tagged(self.audio_memory(audio), self.audio_frame_embedding, self.audio_type_embedding))
        return torch.cat(parts, dim=1)

    def forward(self, frames, fbank, input_ids, attention_mask, category=None) -> dict[str, torch.Tensor]:
        """All losses of one batch: ``mga_<group>``, ``mgc_<group>``, ``mga``, ``mgc``, ``class``
        (the head's cross-entropy over clips with a ``category`` [B] index, else 0) and ``loss``."""
        cfg = self.cfg
        video, audio = self.encode_video(frames), self.encode_audio(fbank)
        text, text_w = self.text_tokens(self.run_text(input_ids, attention_mask))
        text, text_mask, text_w = gather(text), gather(attention_mask), gather(text_w)   # global batch
        scale = self.logit_scale.exp().clamp(max=100.0)
        losses = {}
        for group, (tokens, weights) in self.group_tokens(video, audio).items():
            sim = self.similarity(text, text_mask, text_w, gather(tokens), gather(weights))
            losses[f"mga_{group}"] = info_nce(sim, scale)
        for group in GROUPS:
            inputs, labels = mask_tokens(input_ids, attention_mask, cfg.mask_id, cfg.vocab_size, cfg.mask_prob)
            hidden = self.run_text(inputs, attention_mask, self.memory(video, audio, group))
            losses[f"mgc_{group}"] = mgc_loss(self.text.cls(hidden[labels != IGNORE]), labels)
        losses["mga"] = torch.stack([losses[f"mga_{g}"] for g in GROUPS]).mean()
        losses["mgc"] = torch.stack([losses[f"mgc_{g}"] for g in GROUPS]).mean()
        losses["class"] = losses["mgc"].new_zeros(())
        if self.classifier is not None and category is not None:
            losses["class"] = class_loss(self.classify(video, audio), self.class_targets(category))
        losses["loss"] = cfg.mga_weight * losses["mga"] + losses["mgc"] + cfg.class_weight * losses["class"]
        return losses

    # -- captioning -------------------------------------------------------------------------
    def next_token_logprobs(self, seqs: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """Log-probabilities [B, V] of the token after ``seqs`` [B, t]: a [MASK] is appended and
        predicted, as in training."""
        cfg = self.cfg
        inputs = F.pad(seqs, (0, 1), value=cfg.mask_id)
        hidden = self.run_text(inputs, torch.ones_like(inputs), memory)
        return self.text.cls(hidden[:, -1]).float().log_softmax(-1)

    @torch.no_grad()
    def generate(self, memory: torch.Tensor, beam: int = 1, max_tokens: int | None = None,
                 length_penalty: float = 0.0) -> list[list[int]]:
        """Caption token ids (no specials) per clip; ``beam=1`` is greedy decoding. At most
        ``max_tokens`` tokens, the closing [SEP] included (default: the training length); the
        best beam by summed log-probability (VALOR's), or by it / length**``length_penalty``."""
        cfg = self.cfg
        batch, k, length = memory.shape[0], beam, (max_tokens or cfg.max_text_len - 1) + 1
        memory = memory.repeat_interleave(k, dim=0)
        seqs = torch.full((batch * k, 1), cfg.cls_id, dtype=torch.long, device=memory.device)
        scores = torch.full((batch, k), float("-inf"), device=memory.device)
        scores[:, 0] = 0.0
        done = torch.zeros(batch * k, dtype=torch.bool, device=memory.device)
        banned = [cfg.pad_id, cfg.cls_id, cfg.mask_id, cfg.unk_id]
        for _ in range(length - 1):
            logp = self.next_token_logprobs(seqs, memory)
            logp[:, banned] = float("-inf")
            logp.masked_fill_(done[:, None], float("-inf"))
            logp[:, cfg.pad_id] = torch.where(done, 0.0, float("-inf"))   # finished beams only pad
            vocab = logp.shape[1]
            scores, index = (scores.view(-1, 1) + logp).view(batch, -1).topk(k, dim=1)
            origin = (index // vocab + torch.arange(batch, device=memory.device)[:, None] * k).view(-1)
            token = (index % vocab).view(-1, 1)
            seqs = torch.cat([seqs[origin], token], dim=1)
            done = done[origin] | (token.view(-1) == cfg.sep_id)
            if done.all():
                break
        lengths = (seqs != cfg.pad_id).sum(1).clamp(min=1).view(batch, k)
        best = (scores / lengths.float() ** length_penalty).argmax(dim=1)
        rows = seqs.view(batch, k, -1)[torch.arange(batch), best].tolist()
        return [_strip(row, cfg) for row in rows]


def _tagged(tokens: torch.Tensor, frame: torch.Tensor, kind: torch.Tensor) -> torch.Tensor:
    """Tokens [B, N, T, H] plus their frame's embedding, flattened to [B, N * T, H], plus the type's."""
    return (tokens + frame[:tokens.shape[1], None]).flatten(1, 2) + kind


def _strip(row: list[int], cfg: ModelConfig) -> list[int]:
    out = []
    for token in row[1:]:
        if token in (cfg.sep_id, cfg.pad_id):
            break
        out.append(token)
    return out


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
