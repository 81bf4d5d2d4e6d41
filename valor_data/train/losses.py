"""The two VALOR objectives as small functions.

MGA (multimodal grouping alignment): a similarity between every caption and every clip of the
(global) batch, for a group of modalities, then symmetric InfoNCE. The fine-grained
similarity is the paper's: each text token takes its best-matching modality token and each
modality token its best-matching text token; the two sets of max-similarities are weighted by
learned softmax weights and averaged. The coarse variant compares the text [CLS] with the mean
of the modality tokens.

MGC (multimodal grouping captioning): causal masked language modelling; every token after
[CLS] is masked with probability 0.6 (80 % [MASK], 10 % a random token, 10 % kept) and
predicted from the tokens before it and the group's features.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

IGNORE = -100


def fine_similarity(text: torch.Tensor, text_mask: torch.Tensor, text_logits: torch.Tensor,
                    modal: torch.Tensor, modal_logits: torch.Tensor) -> torch.Tensor:
    """Fine-grained similarity of every caption with every clip.

    text [Bt, Lt, D], text_mask [Bt, Lt] (1 = real token), text_logits [Bt, Lt] (token weights
    before softmax); modal [Bm, Lm, D], modal_logits [Bm, Lm]. Returns [Bt, Bm].
    """
    valid = text_mask.bool()
    text, modal = F.normalize(text, dim=-1), F.normalize(modal, dim=-1)
    sim = torch.einsum("ald,bmd->ablm", text, modal)                   # [Bt, Bm, Lt, Lm]
    lowest = torch.finfo(sim.dtype).min
    text_best = sim.max(dim=3).values                                   # [Bt, Bm, Lt]
    modal_best = sim.masked_fill(~valid[:, None, :, None], lowest).max(dim=2).values  # [Bt, Bm, Lm]
    text_w = text_logits.float().masked_fill(~valid, float("-inf")).softmax(-1).to(sim.dtype)
    modal_w = modal_logits.float().softmax(-1).to(sim.dtype)
    text_side = (text_best * text_w[:, None, :]).sum(-1)
    modal_side = (modal_best * modal_w[None, :, :]).sum(-1)
    return (text_side + modal_side) / 2


def coarse_similarity(text_cls: torch.Tensor, modal: torch.Tensor) -> torch.Tensor:
    """Cosine of the text [CLS] feature [Bt, D] with the mean modality token [Bm, Lm, D] -> [Bt, Bm]."""
    return F.normalize(text_cls, dim=-1) @ F.normalize(modal.mean(dim=1), dim=-1).T


def info_nce(sim: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE over a [B, B] similarity whose diagonal holds the matching pairs."""
    logits = sim.float() * logit_scale
    target = torch.arange(sim.shape[0], device=sim.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def mask_tokens(ids: torch.Tensor, attention_mask: torch.Tensor, mask_id: int, vocab_size: int,
                prob: float = 0.6, generator: torch.Generator | None = None):
    """BERT masking of every real token after [CLS] with probability ``prob`` (80/10/10 rule).

    Returns (input ids for the decoder, labels): labels hold the original id where a token
    was chosen and ``IGNORE`` elsewhere.
    """
    def uniform():
        return torch.rand(ids.shape, generator=generator, device=ids.device)

    candidate = attention_mask.bool().clone()
    candidate[:, 0] = False                                             # never the [CLS]
    chosen = candidate & (uniform() < prob)
    labels = ids.masked_fill(~chosen, IGNORE)
    rule = uniform()
    random_ids = torch.randint(vocab_size, ids.shape, generator=generator, device=ids.device)
    inputs = ids.masked_fill(chosen & (rule < 0.8), mask_id)
    inputs = torch.where(chosen & (rule >= 0.8) & (rule < 0.9), random_ids, inputs)
    return inputs, labels


def mgc_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy at the chosen positions; ``logits`` [M, V] are for ``labels[labels != IGNORE]``."""
    targets = labels[labels != IGNORE]
    if targets.numel() == 0:
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float(), targets)


def class_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of class ``logits`` [B, C] over the clips whose ``targets`` [B] are >= 0
    (0, still connected to the head, when the batch has none)."""
    labelled = targets >= 0
    if not bool(labelled.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits[labelled].float(), targets[labelled])


def causal_mask(attention_mask: torch.Tensor, causal: bool) -> torch.Tensor:
    """Boolean self-attention mask [B, 1, L, L] (True = may attend): padding hidden, and every
    later position hidden too when ``causal``."""
    keys = attention_mask.bool()[:, None, None, :]
    if not causal:
        return keys.expand(-1, 1, attention_mask.shape[1], -1)
    length = attention_mask.shape[1]
    lower = torch.ones(length, length, dtype=torch.bool, device=attention_mask.device).tril()
    return keys & lower[None, None]


class _GatherWithGrad(torch.autograd.Function):
    """all_gather along dim 0 whose backward sums every rank's gradient for the local slice."""

    @staticmethod
    def forward(ctx, tensor):
        world = dist.get_world_size()
        parts = [torch.empty_like(tensor) for _ in range(world)]
        dist.all_gather(parts, tensor.contiguous())
        ctx.rank, ctx.size = dist.get_rank(), tensor.shape[0]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.size:(ctx.rank + 1) * ctx.size]


def gather(tensor: torch.Tensor) -> torch.Tensor:
    """The global batch of ``tensor`` (identity outside ``torch.distributed``); gradients flow back."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    if tensor.requires_grad:
        return _GatherWithGrad.apply(tensor)
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)
