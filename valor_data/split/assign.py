"""Cut a pool of kept clips into parts of exact sizes: grouped, stratified, seeded.

The rule, step by step (all of it recomputable from the pool and the seed):

1. Group clips by source video: a group lands in one part as a whole.
2. A group's stratum is its rarest label (fewest clips in the pool; ties by MID;
   groups without labels share one stratum).
3. Within a stratum, groups are split by which of the pool's ``COMMON`` most frequent
   labels they carry (AudioSet: Speech, Music); inside each of these, groups are
   ranked by the seeded hash of the video id and placed at ``(rank + 0.5) / size``.
   Sorting the stratum by that place interleaves them evenly, and the stratum's own
   rank gives each group its position ``p = (rank + 0.5) / stratum size`` in [0, 1).
4. All groups are walked in ``(p, hash)`` order. The parts after the first are filled
   first, in the configured order (VALOR: val, then test), then the first part
   (train); a group that would overflow a part is left for the next one. Groups
   left over when every part is full are ``not_selected``.

Every part thus takes an even slice of every stratum (and of the common labels within
it), so it keeps the pool's label distribution. A clip's place depends on its own hash
and its stratum only, so losing or adding clips moves only clips next to a part
boundary of the strata they touch (about one clip per clip lost, measured on AudioSet).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

from valor_data.split.hashing import seeded_hash

COMMON = 2       # the most frequent labels interleaved within each stratum


def _strata(video_ids: Sequence[str], labels: Sequence[Sequence[str]]) -> dict[str, dict]:
    """video -> {rows, labels}; and each group's stratum (its rarest label)."""
    counts = Counter(label for row in labels for label in row)
    groups: dict[str, dict] = defaultdict(lambda: {"rows": [], "labels": set()})
    for row, (video, row_labels) in enumerate(zip(video_ids, labels, strict=True)):
        groups[video]["rows"].append(row)
        groups[video]["labels"].update(row_labels)
    for group in groups.values():
        group["stratum"] = min(group["labels"], key=lambda m: (counts[m], m)) if group["labels"] else ""
    return groups


def _spread(members: list[tuple[float, int, str]]) -> list[tuple[float, int, str]]:
    """``(key, hash, video)`` sorted by key, re-keyed with their even place ``(rank + 0.5) / n``."""
    members.sort()
    return [((rank + 0.5) / len(members), h, video) for rank, (_, h, video) in enumerate(members)]


def _order(groups: dict[str, dict], seed: int) -> list[str]:
    """Video ids in stratified ``(p, hash)`` order."""
    counts = Counter(label for group in groups.values() for label in group["labels"])
    common = [label for label, _ in counts.most_common(COMMON)]
    strata: dict[str, dict[tuple, list]] = defaultdict(lambda: defaultdict(list))
    for video, group in groups.items():
        flags = tuple(label in group["labels"] for label in common)
        h = seeded_hash(video, seed)
        strata[group["stratum"]][flags].append((h, h, video))
    keyed = []
    for subgroups in strata.values():
        keyed += _spread([item for members in subgroups.values() for item in _spread(members)])
    keyed.sort()
    return [video for _, _, video in keyed]


def stratified_assign(video_ids: Sequence[str], labels: Sequence[Sequence[str]],
                      targets: dict[str, int], seed: int) -> list[str | None]:
    """The part of each row (None: not selected). ``targets`` is ordered, largest part first."""
    groups = _strata(video_ids, labels)
    pending = _order(groups, seed)
    parts: list[str | None] = [None] * len(video_ids)
    names = list(targets)
    for name in names[1:] + names[:1]:
        room = targets[name]
        left = []
        for video in pending:
            rows = groups[video]["rows"]
            if 0 < len(rows) <= room:
                room -= len(rows)
                for row in rows:
                    parts[row] = name
            else:
                left.append(video)
        pending = left
    return parts
