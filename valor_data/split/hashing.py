"""The seeded hash every ordering decision uses: blake2b-64 of the text, keyed by the seed.

Anyone can recompute it: ``int.from_bytes(blake2b(text.encode(), digest_size=8,
key=f"valor-data:{seed}".encode()).digest(), "big")``. It depends on nothing but the
text and the seed, so adding or losing other clips never changes a clip's hash.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def seed_key(seed: int) -> bytes:
    return f"valor-data:{seed}".encode()


def seeded_hash(text: str, seed: int) -> int:
    """A 64-bit hash of ``text`` under ``seed``."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8, key=seed_key(seed)).digest(), "big")


def seeded_order(texts: Iterable[str], seed: int) -> list[str]:
    """``texts`` sorted by their seeded hash (ties by the text): a seeded shuffle."""
    key = seed_key(seed)
    blake = hashlib.blake2b
    return sorted(texts, key=lambda t: (blake(t.encode("utf-8"), digest_size=8, key=key).digest(), t))
