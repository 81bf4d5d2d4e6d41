"""MGA and MGC against small hand-computed cases."""

import math

import pytest

torch = pytest.importorskip("torch")

from valor_data.train.losses import (  # noqa: E402
    IGNORE,
    causal_mask,
    coarse_similarity,
    fine_similarity,
    info_nce,
    mask_tokens,
    mgc_loss,
)


def test_fine_similarity_by_hand():
    # one caption: tokens (1,0), (0,1) and a padding token that must not count
    text = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])
    text_mask = torch.tensor([[1, 1, 0]])
    text_logits = torch.tensor([[0.0, math.log(3.0), 100.0]])     # softmax over real tokens: 0.25, 0.75
    # one clip: tokens (1,0) and (3,4) (normalised to (0.6, 0.8)), equal weights
    modal = torch.tensor([[[1.0, 0.0], [3.0, 4.0]]])
    modal_logits = torch.tensor([[0.0, 0.0]])
    # text side: best matches 1.0 and 0.8 -> 0.25 * 1 + 0.75 * 0.8 = 0.85
    # clip side: best real text token 1.0 and 0.8 -> 0.5 * 1 + 0.5 * 0.8 = 0.9 (with the pad: 0.995)
    sim = fine_similarity(text, text_mask, text_logits, modal, modal_logits)
    assert sim.shape == (1, 1)
    assert sim.item() == pytest.approx((0.85 + 0.9) / 2, abs=1e-6)


def test_fine_similarity_is_all_pairs():
    torch.manual_seed(0)
    text, modal = torch.randn(3, 5, 4), torch.randn(2, 6, 4)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0]])
    tl, ml = torch.randn(3, 5), torch.randn(2, 6)
    full = fine_similarity(text, mask, tl, modal, ml)
    assert full.shape == (3, 2)
    for i in range(3):
        for j in range(2):
            one = fine_similarity(text[i:i + 1], mask[i:i + 1], tl[i:i + 1], modal[j:j + 1], ml[j:j + 1])
            assert one.item() == pytest.approx(full[i, j].item(), abs=1e-6)


def test_coarse_similarity_by_hand():
    sim = coarse_similarity(torch.tensor([[2.0, 0.0]]), torch.tensor([[[1.0, 0.0], [0.0, 1.0]]]))
    assert sim.item() == pytest.approx(1 / math.sqrt(2), abs=1e-6)


def test_info_nce_by_hand():
    sim = torch.tensor([[1.0, 0.0], [0.5, 2.0]])
    scale = torch.tensor(2.0)
    # rows: logits [2, 0] -> log(1 + e^-2); [1, 4] -> log(1 + e^-3)
    # cols: [2, 1] -> log(1 + e^-1); [0, 4] -> log(1 + e^-4)
    rows = (math.log1p(math.exp(-2)) + math.log1p(math.exp(-3))) / 2
    cols = (math.log1p(math.exp(-1)) + math.log1p(math.exp(-4))) / 2
    assert info_nce(sim, scale).item() == pytest.approx((rows + cols) / 2, abs=1e-6)


def test_causal_mask_exact():
    mask = torch.tensor([[1, 1, 0]])
    causal = causal_mask(mask, causal=True)[0, 0].int().tolist()
    assert causal == [[1, 0, 0], [1, 1, 0], [1, 1, 0]]
    full = causal_mask(mask, causal=False)[0, 0].int().tolist()
    assert full == [[1, 1, 0], [1, 1, 0], [1, 1, 0]]


def test_mask_tokens_rates_and_rule():
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(10, 1000, (400, 50))
    attention = torch.ones_like(ids)
    attention[:, 40:] = 0
    inputs, labels = mask_tokens(ids, attention, mask_id=4, vocab_size=1000, prob=0.6, generator=gen)
    chosen = labels != IGNORE
    assert not chosen[:, 0].any()                                   # never the [CLS]
    assert not chosen[:, 40:].any()                                 # never padding
    assert chosen[:, 1:40].float().mean().item() == pytest.approx(0.6, abs=0.01)
    assert torch.equal(labels[chosen], ids[chosen])                 # labels are the originals
    assert torch.equal(inputs[~chosen], ids[~chosen])               # the rest is untouched
    masked = (inputs[chosen] == 4).float().mean().item()
    kept = (inputs[chosen] == ids[chosen]).float().mean().item()
    assert masked == pytest.approx(0.8, abs=0.01)
    assert kept == pytest.approx(0.1, abs=0.01)                     # (random ids rarely hit the original)


def test_mask_tokens_extremes():
    ids = torch.tensor([[2, 7, 8, 3, 0]])
    attention = torch.tensor([[1, 1, 1, 1, 0]])
    _, none = mask_tokens(ids, attention, 4, 10, prob=0.0)
    assert (none == IGNORE).all()
    _, every = mask_tokens(ids, attention, 4, 10, prob=1.0)
    assert every.tolist() == [[IGNORE, 7, 8, 3, IGNORE]]            # all real tokens after [CLS], [SEP] too


def test_mgc_loss_by_hand():
    labels = torch.tensor([[IGNORE, 1, IGNORE, 0]])
    logits = torch.tensor([[0.0, 2.0], [1.0, 1.0]])                 # rows for the two chosen positions
    expected = (math.log1p(math.exp(-2)) + math.log(2)) / 2
    assert mgc_loss(logits, labels).item() == pytest.approx(expected, abs=1e-6)
    assert mgc_loss(torch.zeros(0, 2, requires_grad=True), torch.full((1, 4), IGNORE)).item() == 0.0
