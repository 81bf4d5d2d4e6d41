"""Evaluation metrics, computed in-process (no Java): retrieval, BLEU-4, ROUGE-L, CIDEr-D, top-k.

The caption metrics follow the COCO caption evaluation code (pycocoevalcap): corpus BLEU with
the closest reference length, ROUGE-L with beta 1.2 against the best reference, CIDEr-D with
sigma 6, clipped counts and document frequencies from the references (including COCO's
quirk of measuring length in bigrams). Text is lower-cased and split into words; a clip whose
reference is Chinese is scored as Youku-mPLUG's evaluation scores it: every text reduced to its
CJK ideographs (U+4E00-U+9FA5; punctuation, Latin letters, digits and emoji dropped), one token
per character.
"""

from __future__ import annotations

import math
import re
from collections import Counter

import torch

from valor_data.train.text import is_chinese

_PUNCT = re.compile(r"[^\w\s]", re.UNICODE)
_NOT_HANZI = re.compile(r"[^\u4e00-\u9fa5]+")      # Youku-mPLUG's caption normaliser keeps only these


def retrieval(sim: torch.Tensor, own: torch.Tensor | None = None) -> dict:
    """Retrieval from ``sim`` [queries, candidates]; ``own`` [queries, candidates] marks each
    query's right answers (default: the diagonal; several per query: the best of them counts,
    as VALOR's clip-to-text takes the best rank over a clip's captions). A query's rank is 1 +
    the wrong candidates scoring at least its best right one (ties count against the model).
    Rates are Python floats; ``hits`` are the counts behind them and ``lower_half`` counts the
    queries whose answer ranks below the middle (rank > candidates / 2)."""
    sim = sim.float().cpu()
    queries, candidates = sim.shape
    own = torch.eye(queries, candidates, dtype=torch.bool) if own is None else own.cpu().bool()
    best = sim.masked_fill(~own, float("-inf")).max(dim=1).values
    ranks = 1 + ((sim >= best[:, None]) & ~own).sum(dim=1)
    hits = {f"r{k}": int((ranks <= k).sum()) for k in (1, 5, 10)}
    return {**{name: count / queries for name, count in hits.items()},
            "median_rank": float(ranks.float().median()), "mean_rank": float(ranks.float().mean()),
            "n": queries, "candidates": candidates, "hits": hits,
            "lower_half": int((2 * ranks > candidates).sum())}


def _share(hits: torch.Tensor) -> float:
    return int(hits.sum()) / max(1, hits.numel())


def retrieval_chance(n: int) -> dict[str, float]:
    """What a model that ranks at random scores on ``n`` clips (one right answer each)."""
    return {"r1": min(1.0, 1 / n), "r5": min(1.0, 5 / n), "r10": min(1.0, 10 / n), "median_rank": (n + 1) / 2,
            "mean_rank": (n + 1) / 2, "n": n, "lower_half": (n - n // 2) / n}


def binomial_pmf(n: int, p: float) -> list[float]:
    """P(X = k) for k = 0..n, X ~ Binomial(n, p): exact binomial coefficients, Python floats."""
    if p <= 0.0 or p >= 1.0:
        return [1.0 if k == (0 if p <= 0.0 else n) else 0.0 for k in range(n + 1)]
    log_p, log_q = math.log(p), math.log1p(-p)
    return [math.exp(math.log(math.comb(n, k)) + k * log_p + (n - k) * log_q) for k in range(n + 1)]


def binomial_at_least(k: int, n: int, p: float) -> float:
    """P(X >= k), X ~ Binomial(n, p)."""
    return min(1.0, sum(binomial_pmf(n, p)[max(0, k):]))


def binomial_at_most(k: int, n: int, p: float) -> float:
    """P(X <= k), X ~ Binomial(n, p)."""
    return min(1.0, sum(binomial_pmf(n, p)[:max(0, k + 1)])) if k >= 0 else 0.0


def fewest_beyond_chance(n: int, p: float, alpha: float) -> int:
    """The smallest count ``t`` with P(X >= t) <= ``alpha`` for X ~ Binomial(n, p): reaching ``t``
    hits happens by chance less often than ``alpha``."""
    tail = 0.0
    for k, mass in reversed(list(enumerate(binomial_pmf(n, p)))):
        if tail + mass > alpha:
            return k + 1
        tail += mass
    return 0


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """Share of rows whose label is among the ``k`` highest scores."""
    top = scores.topk(min(k, scores.shape[1]), dim=1).indices
    return _share((top == labels[:, None]).any(dim=1))


def words(text: str, chinese: bool | None = None) -> list[str]:
    """Lower-cased words without punctuation; Chinese text (``chinese``, default: judged from
    ``text``) gives one token per CJK ideograph and nothing else."""
    if chinese is None:
        chinese = is_chinese(text)
    if chinese:
        return list(_NOT_HANZI.sub("", text))
    return _PUNCT.sub(" ", text.lower()).split()


def _ngrams(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def bleu4(candidates: list[list[str]], references: list[list[list[str]]]) -> float:
    """Corpus BLEU-4 (COCO style: closest reference length for the brevity penalty)."""
    correct, guess = [0] * 4, [0] * 4
    test_len = ref_len = 0
    for cand, refs in zip(candidates, references, strict=True):
        test_len += len(cand)
        ref_len += min((abs(len(r) - len(cand)), len(r)) for r in refs)[1]
        for n in range(1, 5):
            counts = _ngrams(cand, n)
            best = Counter()
            for ref in refs:
                best |= _ngrams(ref, n)
            correct[n - 1] += sum(min(c, best[g]) for g, c in counts.items())
            guess[n - 1] += max(0, len(cand) - n + 1)
    tiny, small = 1e-15, 1e-9
    score = math.prod((correct[k] + tiny) / (guess[k] + small) for k in range(4)) ** 0.25
    ratio = (test_len + tiny) / (ref_len + small)
    return score * (math.exp(1 - 1 / ratio) if ratio < 1 else 1.0)


def _lcs(a: list[str], b: list[str]) -> int:
    row = [0] * (len(b) + 1)
    for x in a:
        prev = 0
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], prev + 1 if x == y else max(row[j], row[j - 1])
    return row[-1]


def rouge_l(candidates: list[list[str]], references: list[list[list[str]]], beta: float = 1.2) -> float:
    """Mean sentence ROUGE-L F-measure (precision and recall each from the best reference)."""
    scores = []
    for cand, refs in zip(candidates, references, strict=True):
        lcs = [_lcs(r, cand) for r in refs]
        prec = max((n / len(cand) if cand else 0.0) for n in lcs)
        rec = max((n / len(r) if r else 0.0) for n, r in zip(lcs, refs, strict=True))
        scores.append((1 + beta**2) * prec * rec / (rec + beta**2 * prec) if prec and rec else 0.0)
    return sum(scores) / max(1, len(scores))


def _tfidf(tokens: list[str], df: Counter, log_docs: float) -> tuple[list[dict], list[float], int]:
    vectors, norms, length = [{} for _ in range(4)], [0.0] * 4, 0
    for n in range(1, 5):
        for gram, tf in _ngrams(tokens, n).items():
            vectors[n - 1][gram] = tf * (log_docs - math.log(max(1.0, df[gram])))
            norms[n - 1] += vectors[n - 1][gram] ** 2
            if n == 2:                        # COCO's CIDEr-D counts length in bigrams
                length += tf
    return vectors, [math.sqrt(x) for x in norms], length


def cider(candidates: list[list[str]], references: list[list[list[str]]], sigma: float = 6.0) -> float:
    """CIDEr-D (x10), document frequencies taken from the references of this corpus."""
    df: Counter = Counter()
    for refs in references:
        df.update({g for r in refs for n in range(1, 5) for g in _ngrams(r, n)})
    log_docs = math.log(float(len(references)))
    scores = []
    for cand, refs in zip(candidates, references, strict=True):
        vec, norm, length = _tfidf(cand, df, log_docs)
        total = 0.0
        for ref in refs:
            rvec, rnorm, rlength = _tfidf(ref, df, log_docs)
            penalty = math.exp(-((length - rlength) ** 2) / (2 * sigma**2))
            for n in range(4):
                value = sum(min(v, rvec[n].get(g, 0.0)) * rvec[n].get(g, 0.0) for g, v in vec[n].items())
                if norm[n] and rnorm[n]:
                    value /= norm[n] * rnorm[n]
                total += value * penalty / 4
        scores.append(total / len(refs) * 10.0)
    return sum(scores) / max(1, len(scores))


def caption_scores(candidates: list[str], references: list[list[str]]) -> dict[str, float]:
    """BLEU-4, ROUGE-L and CIDEr of generated captions against each clip's references."""
    chinese = [any(is_chinese(r) for r in rs) for rs in references]    # the clip's language, not the guess's
    cands = [words(c, zh) for c, zh in zip(candidates, chinese, strict=True)]
    refs = [[words(r, zh) for r in rs] for rs, zh in zip(references, chinese, strict=True)]
    return {"bleu4": bleu4(cands, refs), "rouge_l": rouge_l(cands, refs), "cider": cider(cands, refs)}
