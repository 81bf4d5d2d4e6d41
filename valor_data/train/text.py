"""Caption vocabularies and the BERT tokenizer.

Nothing is downloaded. ``base`` reads a local ``vocab.txt`` (the text checkpoint's or
``--vocab``); ``tiny`` builds one from the training captions with BERT's own normaliser and
pre-tokeniser, so English gets a word-level vocabulary and Chinese (every CJK character is its
own pre-token) a character-level one. Either way the tokenizer is a ``transformers``
``BertTokenizer``, so one code path serves both. Captions are cleaned as VALOR cleans them
(``TxtMapper.clean`` in ``data/data.py`` of TXH-mercury/VALOR: spaces collapsed, lower-cased,
ASCII punctuation removed) before the vocabulary is built and before encoding; ``max_len``
counts [CLS] and [SEP] (VALOR's ``max_txt_len`` 40 is ``max_len`` 42).
"""

from __future__ import annotations

import os
import re
import string
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from valor_data.errors import ValorError
from valor_data.workdir import atomic_path

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def clean(text: str) -> str:
    """VALOR's caption cleaning: duplicate spaces removed, lower-cased, punctuation stripped."""
    return " ".join(word for word in text.split(" ") if word).lower().translate(_PUNCTUATION)


def pre_tokens(text: str) -> list[str]:
    """The pieces ``BertTokenizer`` splits ``text`` into before WordPiece (lower-cased)."""
    from tokenizers import normalizers, pre_tokenizers

    normal = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, lowercase=True)
    return [piece for piece, _ in pre_tokenizers.BertPreTokenizer().pre_tokenize_str(normal.normalize_str(text))]


def build_vocab(captions: Iterable[str], min_count: int = 1) -> list[str]:
    """Special tokens, then every pre-token seen ``min_count`` times (most frequent first)."""
    counts = Counter(piece for caption in captions for piece in pre_tokens(clean(caption)))
    words = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
    return SPECIALS + [w for w in words if w not in SPECIALS]


def write_vocab(tokens: list[str], path: str | os.PathLike) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text("".join(f"{t}\n" for t in tokens), encoding="utf-8")
    return Path(path)


def read_vocab(path: str | os.PathLike) -> list[str]:
    """A BERT ``vocab.txt`` (one token per line); a folder means its ``vocab.txt``."""
    path = Path(path)
    if path.is_dir():
        path = path / "vocab.txt"
    if not path.is_file():
        raise ValorError(f"vocabulary not found: {path}")
    tokens = path.read_text(encoding="utf-8").splitlines()
    missing = [t for t in SPECIALS if t not in tokens]
    if missing:
        raise ValorError(f"{path}: not a BERT vocabulary (missing {', '.join(missing)})")
    return tokens


def make_tokenizer(tokens: list[str]):
    """A ``transformers.BertTokenizer`` over ``tokens`` (lower-casing, CJK split per character)."""
    from transformers import BertTokenizer

    return BertTokenizer(vocab={t: i for i, t in enumerate(tokens)}, do_lower_case=True)


def encode(tokenizer, captions: list[str], max_len: int):
    """Cleaned captions -> (input_ids, attention_mask), int64 [B, max_len]: ``[CLS] words [SEP] [PAD]...``."""
    out = tokenizer([clean(c) for c in captions], padding="max_length", truncation=True, max_length=max_len,
                    return_tensors="pt", return_token_type_ids=False)
    return out["input_ids"], out["attention_mask"]


def decode(tokenizer, ids: list[int]) -> str:
    """Token ids -> caption text (no special tokens; no spaces between CJK characters)."""
    text = tokenizer.decode(ids, skip_special_tokens=True)
    return re.sub(r"(?<=[\u3400-\u9fff\uf900-\ufaff]) (?=[\u3400-\u9fff\uf900-\ufaff])", "", text)


def is_chinese(text: str) -> bool:
    """True when most characters of ``text`` are CJK ideographs."""
    letters = [c for c in text if not c.isspace()]
    return bool(letters) and sum(bool(_CJK.match(c)) for c in letters) * 2 >= len(letters)
