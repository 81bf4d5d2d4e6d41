"""The split-level checks of verify-splits (tables only, no tar is read)."""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from valor_data.shards.checks import Check, Context
from valor_data.split.inputs import FETCH_OK, VERDICT_KEEP, filter_reason, lookup, optional_table, positions
from valor_data.split.labels import allowed_deviation, deviations
from valor_data.split.leaks import recipe_pools
from valor_data.split.official import OFFICIAL_FILE

REASON_RE = re.compile(r"^(fetch:.+|filter:.+|not_in_recipe|decontaminated:same_video|"
                       r"decontaminated:near_duplicate|duplicate|not_selected|not_in_official)$")
MAX = 5


def _allowed_splits(ctx: Context) -> dict[str, set[str]]:
    """subset -> the splits its clips may land in."""
    allowed = {}
    for pool in recipe_pools(ctx.cfg):
        names = set(ctx.cfg.parts) if pool.stratified else {pool.name}
        allowed.update({s: names | set(ctx.cfg.official) for s in pool.subsets})
    return allowed


def _rows(ctx: Context, manifest: pa.Table) -> pa.Table:
    """splits.parquet rows with the manifest's own subset, video id and labels (null: not in the manifest)."""
    keys = ctx.splits.column("clip_id")
    where = positions(keys, manifest)
    return pa.table({"clip_id": keys, "split": ctx.splits.column("split"), "reason": ctx.splits.column("reason"),
                     **{c: lookup(keys, manifest, c, where) for c in ("subset", "video_id", "labels")}})


def _excused(ctx: Context, quality: pa.Table, clips: list[str]) -> set[str]:
    """Clips the filter rejected only as duplicates, which the split re-decides per pool."""
    if not clips or not ctx.workdir.path("signatures.parquet").exists():
        return set()
    keys = pa.chunked_array([pa.array(clips, pa.string())])
    verdicts = lookup(keys, quality, "verdict").to_pylist()
    reasons = lookup(keys, quality, "reasons").to_pylist()
    return {c for c, v, r in zip(clips, verdicts, reasons, strict=True) if v and filter_reason(v, r, True) is None}


def _stage_consistency(ctx: Context, rows: pa.Table, check: Check) -> None:
    """A ``fetch:``/``filter:`` reason must match that stage's table; a clip in a split must have passed both."""
    in_split = pc.is_valid(rows.column("split"))
    stages = [("fetch.parquet", ["status"], FETCH_OK, "fetch:"),
              ("quality.parquet", ["verdict", "reasons"], VERDICT_KEEP, "filter:")]
    for name, columns, good, prefix in stages:
        table = optional_table(ctx.workdir, name, ["clip_id", *columns])
        if table is None:
            continue
        value = pc.fill_null(lookup(rows.column("clip_id"), table, columns[0]), "missing")
        passed = pc.equal(value, good)
        blamed = pc.fill_null(pc.starts_with(rows.column("reason"), prefix), False)
        with_value = rows.select(["clip_id"]).append_column("value", value)
        bad_in = with_value.filter(pc.and_(in_split, pc.invert(passed))).to_pylist()
        if prefix == "filter:":
            excused = _excused(ctx, table, [r["clip_id"] for r in bad_in])
            bad_in = [r for r in bad_in if r["clip_id"] not in excused]
        bad_out = with_value.filter(pc.and_(blamed, passed)).to_pylist()
        check.counts[f"{prefix[:-1]}_inconsistent"] = len(bad_in) + len(bad_out)
        for row in bad_in[:MAX]:
            check.fail(f"{row['clip_id']} is in a split but its {columns[0]} is {row['value']}")
        for row in bad_out[:MAX]:
            check.fail(f"{row['clip_id']} is rejected as {prefix}... but its {columns[0]} is {row['value']}")


def accounted(ctx: Context, manifest: pa.Table, rows: pa.Table) -> Check:
    check = Check("accounted", "every manifest clip is in exactly one split or rejected with a reason")
    ids = rows.column("clip_id")
    check.counts = {"manifest": manifest.num_rows, "in_splits": pc.sum(pc.is_valid(rows.column("split"))).as_py() or 0,
                    "rejected": pc.sum(pc.is_valid(rows.column("reason"))).as_py() or 0}
    if pc.count_distinct(ids).as_py() != len(ids):
        counted = pc.value_counts(ids)
        for clip in pc.filter(counted.field("values"), pc.greater(counted.field("counts"), 1)).to_pylist()[:MAX]:
            check.fail(f"{clip} has several rows in splits.parquet")
    same = len(ids) == manifest.num_rows and ids.equals(manifest.column("clip_id"))
    missing = manifest.column("clip_id").slice(0, 0) if same else \
        pc.filter(manifest.column("clip_id"), pc.invert(pc.is_in(manifest.column("clip_id"), value_set=ids)))
    extra = rows.filter(pc.is_null(rows.column("subset"))).column("clip_id")
    for clip in missing.to_pylist()[:MAX]:
        check.fail(f"{clip} is in the manifest but not in splits.parquet")
    for clip in extra.to_pylist()[:MAX]:
        check.fail(f"{clip} is in splits.parquet but not in the manifest")
    check.counts.update(unaccounted=len(missing), unknown=len(extra))
    one = pc.xor(pc.is_valid(rows.column("split")), pc.is_valid(rows.column("reason")))
    for clip in rows.filter(pc.invert(one)).column("clip_id").to_pylist()[:MAX]:
        check.fail(f"{clip} needs exactly one of split and reason")
    for reason in pc.unique(rows.column("reason")).drop_null().to_pylist():
        if not REASON_RE.match(reason):
            check.fail(f"unknown reason {reason!r}")
    allowed = _allowed_splits(ctx)
    pairs = rows.group_by(["subset", "split", "reason"]).aggregate([]).to_pylist()
    for pair in pairs:
        subset, split, reason = pair["subset"], pair["split"], pair["reason"]
        if split is not None and split not in allowed.get(subset, set()):
            check.fail(f"a clip of subset {subset} is in split {split}")
        if reason == "not_in_recipe" and subset in allowed:
            check.fail(f"clips of recipe subset {subset} are marked not_in_recipe")
    _stage_consistency(ctx, rows, check)
    return check



def video_disjoint(ctx: Context, rows: pa.Table) -> Check:
    check = Check("video_disjoint", "no source video id is in two splits")
    placed = rows.filter(pc.is_valid(rows.column("split"))).select(["video_id", "split"])
    grouped = placed.group_by("video_id").aggregate([("split", "count_distinct")])
    bad = grouped.filter(pc.greater(grouped.column("split_count_distinct"), 1)).column("video_id")
    check.counts = {"videos": grouped.num_rows, "videos_in_several_splits": len(bad)}
    if len(bad) and len(bad) == ctx.summary.official.get("leaks"):
        check.note = f"{len(bad):,} video(s) in two splits, as VALOR's own files place them (official membership)"
        return check
    examples = placed.filter(pc.is_in(placed.column("video_id"), value_set=bad.slice(0, MAX).combine_chunks()))
    for row in examples.group_by("video_id").aggregate([("split", "distinct")]).to_pylist():
        check.fail(f"video {row['video_id']} is in {', '.join(sorted(row['split_distinct']))}")
    return check


def near_duplicates(ctx: Context, rows: pa.Table) -> Check:
    check = Check("near_duplicates", "no near-duplicate group spans two splits (pretraining vs benchmark included)")
    signatures = optional_table(ctx.workdir, "signatures.parquet", ["clip_id", "dup_group"])
    if signatures is None:
        check.note = "no signatures.parquet: the filter stage did not run, no groups to compare"
        return check
    placed = rows.filter(pc.is_valid(rows.column("split")))
    table = pa.table({"group": lookup(placed.column("clip_id"), signatures, "dup_group"),
                      "split": placed.column("split"), "clip_id": placed.column("clip_id")})
    table = table.filter(pc.is_valid(table.column("group")))
    grouped = table.group_by("group").aggregate([("split", "count_distinct"), ("clip_id", "distinct")])
    bad = grouped.filter(pc.greater(grouped.column("split_count_distinct"), 1))
    check.counts = {"groups": grouped.num_rows, "groups_across_splits": bad.num_rows}
    for row in bad.slice(0, MAX).to_pylist():
        check.fail(f"group {row['group']} spans splits: {', '.join(sorted(row['clip_id_distinct']))}")
    return check


def split_sizes(ctx: Context, rows: pa.Table) -> Check:
    check = Check("split_sizes", "split sizes are as configured and as recorded in splits.json")
    sizes = {r["values"]: r["counts"] for r in pc.value_counts(rows.column("split").drop_null()).to_pylist()}
    check.counts = {name: sizes.get(name, 0) for name in ctx.cfg.split_names}
    for name in sorted(set(sizes) - set(ctx.cfg.split_names)):
        check.fail(f"split {name} is not a split of this recipe")
    for name in ctx.cfg.split_names:
        if sizes.get(name, 0) != ctx.summary.counts.get(name, 0):
            check.fail(f"{name}: {sizes.get(name, 0):,} clips, splits.json records {ctx.summary.counts.get(name, 0):,}")
    if ctx.cfg.official:
        official = ctx.summary.official.get("splits", {})
        check.note = "official membership: " + ", ".join(f"{k} {v['in_split']:,} of {v['listed']:,} listed"
                                                          for k, v in official.items())
        for name in ctx.cfg.official:
            if sizes.get(name, 0) != official.get(name, {}).get("in_split"):
                check.fail(f"{name}: {sizes.get(name, 0):,} clips, the official files give "
                           f"{official.get(name, {}).get('in_split')}")
    if ctx.cfg.mode == "stratified" and not set(ctx.cfg.parts) <= set(ctx.cfg.official):
        pool = pc.is_in(rows.column("subset"), value_set=pa.array(ctx.cfg.benchmark_subsets))
        placed = pc.or_(pc.is_in(rows.column("split"), value_set=pa.array(list(ctx.cfg.parts))),
                        pc.fill_null(pc.equal(rows.column("reason"), "not_selected"), False))
        kept = pc.sum(pc.and_(pool, placed)).as_py() or 0
        targets = ctx.cfg.target_sizes(kept)
        check.note = f"{kept:,} kept benchmark clips -> targets " + ", ".join(f"{k} {v:,}" for k, v in targets.items())
        for name, target in targets.items():
            if sizes.get(name, 0) != target:
                check.fail(f"{name}: {sizes.get(name, 0):,} clips, configured {target:,}")
    return check


def label_distribution(ctx: Context, rows: pa.Table) -> Check:
    check = Check("label_distribution", "each stratified part keeps the pool's per-class label shares")
    if ctx.cfg.mode != "stratified" or set(ctx.cfg.parts) <= set(ctx.cfg.official):
        check.note = "published splits are kept as released: not stratified, nothing to compare"
        return check
    placed = rows.filter(pc.fill_null(pc.is_in(rows.column("split"), value_set=pa.array(list(ctx.cfg.parts))), False))
    devs = deviations(placed.column("labels"), placed.column("split"))
    over = [d for d in devs if d.value > allowed_deviation(ctx.cfg.label_tolerance, d)]
    worst = max(devs, key=lambda d: (d.value, d.part, d.label), default=None)
    check.counts = {"classes": len({d.label for d in devs}), "over_tolerance": len(over)}
    if worst is not None:
        check.note = (f"largest deviation {worst.value * 100:.2f} pp ({worst.label} in {worst.part}: "
                      f"{worst.part_share * 100:.2f}% vs {worst.pool_share * 100:.2f}%; allowed "
                      f"{allowed_deviation(ctx.cfg.label_tolerance, worst) * 100:.2f} pp)")
    for d in sorted(over, key=lambda d: -d.value):
        check.fail(f"{d.label} in {d.part}: {d.part_share * 100:.2f}% vs {d.pool_share * 100:.2f}% in the pool "
                   f"(allowed {allowed_deviation(ctx.cfg.label_tolerance, d) * 100:.2f} pp)")
    return check


def official_membership(ctx: Context, rows: pa.Table) -> Check:
    check = Check("official_membership", "each official split holds exactly its files' clips that survived")
    path = ctx.workdir.path(OFFICIAL_FILE)
    if not ctx.cfg.official:
        check.note = f"no official files: membership {ctx.summary.official.get('membership', 'drawn by seeded hash')}"
        return check
    if not path.exists():
        check.fail(f"{path} is missing: rerun the split")
        return check
    listed = pq.read_table(path, columns=["split", "clip_id", "state"])
    members = listed.filter(pc.equal(listed.column("state"), "in_split"))
    for name in ctx.cfg.official:
        want = set(members.filter(pc.equal(members.column("split"), name)).column("clip_id").to_pylist())
        have = set(rows.filter(pc.fill_null(pc.equal(rows.column("split"), name), False)).column("clip_id").to_pylist())
        check.counts[name] = len(have)
        for clip in sorted(have - want)[:MAX]:
            check.fail(f"{clip} is in {name} but no official file lists it there")
        for clip in sorted(want - have)[:MAX]:
            check.fail(f"{clip} is listed for {name} and survived, but is not in it")
    return check


def run(ctx: Context) -> list[Check]:
    manifest = pq.read_table(ctx.workdir.manifest, columns=["clip_id", "subset", "video_id", "labels"])
    rows = _rows(ctx, manifest)
    return [accounted(ctx, manifest, rows), video_disjoint(ctx, rows), near_duplicates(ctx, rows),
            split_sizes(ctx, rows), label_distribution(ctx, rows), official_membership(ctx, rows)]
