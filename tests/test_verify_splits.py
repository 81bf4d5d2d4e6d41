"""verify-splits passes a clean build and names the right check for each way a build can be broken."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from test_shards_build import built_workdir, copy_workdir  # noqa: F401  (session fixture)

from valor_data.shards.verify import VerifyOptions, verify
from valor_data.workdir import Workdir

CHECKS = {"accounted", "video_disjoint", "near_duplicates", "split_sizes", "label_distribution",
          "official_membership", "shards_vs_splits", "members", "checksums"}


def failed(workdir: Workdir, **options) -> set[str]:
    report = verify(workdir, VerifyOptions(**options))
    assert {c.name for c in report.checks} == CHECKS
    return {c.name for c in report.checks if not c.ok}


def first_tar(workdir: Workdir, split: str) -> Path:
    return sorted(workdir.path("shards").glob(f"{split}-*.tar"))[0]


def rewrite_tar(path: Path, keep=lambda info: True, extra: list[tuple[str, bytes]] = ()) -> None:
    """Rewrite a shard with tarfile, leaving out members ``keep`` rejects and appending ``extra``."""
    import io

    with tarfile.open(path) as tar:
        members = [(info, tar.extractfile(info).read()) for info in tar.getmembers() if keep(info)]
    with tarfile.open(path, "w") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data))
        for name, data in extra:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.fixture
def broken(built_workdir, tmp_path) -> Workdir:  # noqa: F811
    return copy_workdir(built_workdir, tmp_path / "w")


def test_clean_build_passes_every_check(built_workdir):  # noqa: F811
    report = verify(Workdir(built_workdir), VerifyOptions(full=True))
    assert report.ok, "\n".join(report.lines())
    by_name = {c.name: c for c in report.checks}
    splits = pq.read_table(built_workdir / "splits.parquet")
    assert by_name["members"].counts["decoded"] == pc.sum(pc.is_valid(splits.column("split"))).as_py()
    assert by_name["accounted"].counts["manifest"] == splits.num_rows
    assert "largest deviation" in by_name["label_distribution"].note


def test_cli_json_and_exit_status(built_workdir, broken):  # noqa: F811
    from click.testing import CliRunner

    from valor_data.cli import cli

    ok = CliRunner().invoke(cli, ["verify-splits", str(built_workdir), "--json", "--sample", "1"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["ok"] is True
    first_tar(broken, "valor32k-val").unlink()
    bad = CliRunner().invoke(cli, ["verify-splits", "-w", str(broken.root), "--sample", "1"])
    assert bad.exit_code == 1
    assert "FAIL checksums" in bad.output and "FAIL shards_vs_splits" in bad.output


def test_leaked_video_id(broken):
    """An upstream mistake: a pretraining clip of a video that is also in the test part."""
    splits = pq.read_table(broken.path("splits.parquet")).to_pylist()
    manifest = pq.read_table(broken.manifest)
    video_of = dict(zip(manifest.column("clip_id").to_pylist(), manifest.column("video_id").to_pylist(), strict=True))
    test_video = next(video_of[r["clip_id"]] for r in splits if r["split"] == "valor32k-test")
    pretrain = next(r["clip_id"] for r in splits if r["split"] == "valor1m")
    videos = [test_video if c == pretrain else v for c, v in
              zip(manifest.column("clip_id").to_pylist(), manifest.column("video_id").to_pylist(), strict=True)]
    manifest = manifest.set_column(manifest.schema.get_field_index("video_id"), "video_id", pa.array(videos))
    pq.write_table(manifest, broken.manifest)
    assert failed(broken) == {"video_disjoint"}


def test_missing_member(broken):
    path = first_tar(broken, "valor32k-test")
    victim = tarfile.open(path).getnames()[1]
    assert victim.endswith(".flac")
    rewrite_tar(path, keep=lambda info: info.name != victim)
    result = failed(broken)
    assert {"members", "checksums"} <= result and "shards_vs_splits" not in result


def test_flipped_byte(broken):
    path = first_tar(broken, "valor32k-train")
    data = bytearray(path.read_bytes())
    data[512 + 5000] ^= 0x01          # inside the first mp4's data, not a header
    path.write_bytes(bytes(data))
    result = failed(broken)
    assert "checksums" in result and "shards_vs_splits" not in result


def test_dropped_sample(broken):
    path = first_tar(broken, "valor1m")
    key = tarfile.open(path).getnames()[0].split(".")[0]
    rewrite_tar(path, keep=lambda info: not info.name.startswith(key + "."))
    assert {"shards_vs_splits", "checksums"} <= failed(broken)


def test_extra_sample(broken):
    path = first_tar(broken, "valor32k-val")
    with tarfile.open(path) as tar:
        first = {m.name.split(".", 1)[1]: tar.extractfile(m).read() for m in tar.getmembers()[:4]}
    rewrite_tar(path, extra=[(f"intruder_1.{ext}", data) for ext, data in first.items()])
    result = failed(broken)
    assert {"shards_vs_splits", "checksums"} <= result and "members" not in result


def test_near_duplicate_across_pretraining_and_benchmark(broken):
    splits = pq.read_table(broken.path("splits.parquet")).to_pylist()
    pair = [next(r["clip_id"] for r in splits if r["split"] == s) for s in ("valor1m", "valor32k-test")]
    pq.write_table(pa.table({"clip_id": pair, "dup_group": [7, 7], "dup_keep": [True, False]}),
                   broken.path("signatures.parquet"))
    report = verify(broken, VerifyOptions(splits_only=True))
    assert {c.name for c in report.checks if not c.ok} == {"near_duplicates"}


def test_unaccounted_clip_and_wrong_sizes(broken):
    splits = pq.read_table(broken.path("splits.parquet"))
    victim = next(r["clip_id"] for r in splits.to_pylist() if r["split"] == "valor32k-val")
    pq.write_table(splits.filter(pc.not_equal(splits.column("clip_id"), victim)), broken.path("splits.parquet"))
    assert {"accounted", "split_sizes", "shards_vs_splits"} <= failed(broken)


def test_stage_reason_must_match_the_stage_table(broken):
    fetch = pq.read_table(broken.path("fetch.parquet"))
    pq.write_table(fetch.set_column(1, "status", pa.array(["ok"] * fetch.num_rows)), broken.path("fetch.parquet"))
    report = verify(broken, VerifyOptions(splits_only=True))
    accounted = next(c for c in report.checks if c.name == "accounted")
    assert not accounted.ok and accounted.counts["fetch_inconsistent"] == 2
