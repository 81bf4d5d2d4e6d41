"""Retrieval, BLEU-4, ROUGE-L, CIDEr-D and top-k against hand-computed values."""

import math

import pytest

torch = pytest.importorskip("torch")

from valor_data.train import metrics  # noqa: E402


def test_retrieval_ranks_by_hand():
    sim = torch.tensor([[0.9, 0.1, 0.0], [0.8, 0.5, 0.1], [0.2, 0.3, 0.1]])
    result = metrics.retrieval(sim)                     # ranks 1, 2, 3
    assert result["r1"] == pytest.approx(1 / 3)
    assert result["r5"] == result["r10"] == 1.0
    assert result["median_rank"] == 2.0 and result["mean_rank"] == 2.0 and result["n"] == 3


def test_retrieval_ties_count_against_the_model():
    assert metrics.retrieval(torch.zeros(4, 4))["r1"] == 0.0
    assert metrics.retrieval(torch.zeros(4, 4))["median_rank"] == 4.0
    chance = metrics.retrieval_chance(100)
    assert chance["r1"] == 0.01 and chance["r5"] == 0.05 and chance["median_rank"] == 50.5


def test_bleu4_by_hand():
    cand = "a red circle moves left while a beep repeats".split()
    ref = "a red circle moves right while a beep repeats".split()
    # n-gram precisions 8/9, 6/8, 4/7, 2/6; same length, so no brevity penalty
    expected = (8 / 9 * 6 / 8 * 4 / 7 * 2 / 6) ** 0.25
    assert metrics.bleu4([cand], [[ref]]) == pytest.approx(expected, rel=1e-9)
    assert metrics.bleu4([ref], [[ref]]) == pytest.approx(1.0)
    # brevity: a 4-word exact prefix of a 9-word reference
    short = ref[:4]
    assert metrics.bleu4([short], [[ref]]) == pytest.approx(math.exp(1 - 9 / 4), rel=1e-6)


def test_rouge_l_by_hand():
    cand = "a red circle moves left while a beep repeats".split()
    ref = "a red circle moves right while a beep repeats".split()
    assert metrics.rouge_l([cand], [[ref]]) == pytest.approx(8 / 9)          # LCS 8 of 9 both ways
    p, r, beta = 2 / 2, 2 / 4, 1.2
    assert metrics.rouge_l([["a", "b"]], [[["a", "x", "b", "y"], ["z"]]]) == pytest.approx(
        (1 + beta**2) * p * r / (r + beta**2 * p))


def test_cider_by_hand():
    perfect = metrics.cider([["a", "b", "c", "d"], ["e", "f", "g", "h"]],
                            [[["a", "b", "c", "d"]], [["e", "f", "g", "h"]]])
    assert perfect == pytest.approx(10.0)
    # clip 1: n-gram cosines 3/4, 2/3, 1/2, 0 (all tf-idf weights equal), same length -> 10 * mean
    partial = metrics.cider([["a", "b", "c", "x"], ["e", "f", "g", "h"]],
                            [[["a", "b", "c", "d"]], [["e", "f", "g", "h"]]])
    assert partial == pytest.approx((10 * (3 / 4 + 2 / 3 + 1 / 2 + 0) / 4 + 10) / 2)


def test_words_english_and_chinese():
    assert metrics.words("A red circle, moves LEFT!") == ["a", "red", "circle", "moves", "left"]
    assert metrics.words("一个红色的圆形，向左移动") == list("一个红色的圆形向左移动")
    # Chinese keeps CJK ideographs only (Youku-mPLUG's normaliser): no punctuation, Latin, digits, emoji
    assert metrics.words("【原创】红色的圆形 HD 🎬 向左！") == list("原创红色的圆形向左")
    assert metrics.words("circle 1080P 红色", chinese=True) == list("红色")
    assert metrics.words("MV 2023", chinese=True) == [] and metrics.words("MV 2023") == ["mv", "2023"]


def test_caption_scores_chinese_per_character():
    scores = metrics.caption_scores(["一个红色的圆形向左移动"], [["一个红色的圆形向右移动"]])
    assert scores["rouge_l"] == pytest.approx(10 / 11)
    # the reference decides: a guess in Latin letters scores nothing against Chinese references
    assert metrics.caption_scores(["a red circle"], [["一个红色的圆形"]])["bleu4"] < 1e-6
    same = metrics.caption_scores(["一个红色的圆形，向右移动 🎬"], [["一个红色的圆形向右移动"]])
    assert same["bleu4"] == pytest.approx(1.0) and same["rouge_l"] == pytest.approx(1.0)


def test_topk_accuracy():
    scores = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.3]])
    labels = torch.tensor([1, 2])
    assert metrics.topk_accuracy(scores, labels, 1) == 0.5
    assert metrics.topk_accuracy(scores, labels, 2) == 1.0
    assert metrics.topk_accuracy(scores, labels, 5) == 1.0


def test_retrieval_rates_are_python_floats_exactly_the_hit_share():
    sim = torch.eye(80)[torch.roll(torch.arange(80), 1)]          # 80 queries, none ranks its own first
    sim[0] = torch.eye(80)[0]
    sim[1] = torch.eye(80)[1]
    result = metrics.retrieval(sim)
    assert type(result["r1"]) is float and result["r1"] == 2 / 80 == 0.025    # not float32's 0.02500000037
    assert result["hits"]["r1"] == 2 and result["candidates"] == 80


def test_retrieval_best_of_several_right_answers_and_the_lower_half():
    # clip-to-text as VALOR scores it: the best rank over the clip's captions; other right answers
    # never count against it
    sim = torch.tensor([[0.1, 0.9, 0.8, 0.2], [0.7, 0.6, 0.5, 0.0]])
    own = torch.tensor([[True, False, True, False], [False, False, False, True]])
    result = metrics.retrieval(sim, own)
    # row 0: best own 0.8, one wrong above it -> rank 2; row 1: own 0.0, three above -> rank 4
    assert result["median_rank"] == 2.0 and result["hits"] == {"r1": 0, "r5": 2, "r10": 2}   # torch.median: the lower
    assert result["lower_half"] == 1                                   # rank 4 > 4 / 2; rank 2 is not


def test_binomial_tails_by_hand():
    assert metrics.binomial_pmf(3, 0.5) == pytest.approx([1 / 8, 3 / 8, 3 / 8, 1 / 8], rel=1e-12)
    assert metrics.binomial_at_least(2, 3, 0.5) == pytest.approx(0.5, rel=1e-12)
    assert metrics.binomial_at_most(0, 4, 0.25) == pytest.approx(0.75**4, rel=1e-12)
    assert metrics.binomial_at_most(-1, 4, 0.25) == 0.0 and metrics.binomial_at_least(0, 4, 0.25) == 1.0
    # 80 clips, R@5 chance 1/16: 16 hits are reached by chance less than 1e-3 / 15 of the time, 15 are not
    need = metrics.fewest_beyond_chance(80, 5 / 80, 1e-3 / 15)
    assert metrics.binomial_at_least(need, 80, 5 / 80) <= 1e-3 / 15 < metrics.binomial_at_least(need - 1, 80, 5 / 80)
    assert need == 16
    assert sum(metrics.binomial_pmf(2000, 0.3)) == pytest.approx(1.0, rel=1e-9)     # large n: no overflow
