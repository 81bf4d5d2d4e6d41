"""bench/gpu.py runs (tiny shapes, a few steps, CPU) and writes the JSON it promises."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("PIL")

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "gpu.py"


def test_gpu_bench_dry_run(tmp_path):
    out = tmp_path / "gpu.json"
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1", "TMPDIR": str(scratch)}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--workers", "1", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text(encoding="utf-8"))
    assert result["dry_run"] and result["device"] == "cpu" and result["world"] == 1 and result["preset"] == "tiny"
    assert result["flops_per_sample"] > 1e8                       # the tiny preset: about 0.7 GFLOP
    for name in ("synthetic", "loader"):
        run = result[name]
        assert run["samples_per_s"] > 0 and 0 < run["mfu"] < 1 and run["step_s"] > 0
        assert 0 <= run["data_wait_share"] <= 1
    ratio = result["loader"]["samples_per_s"] / result["synthetic"]["samples_per_s"]
    assert result["loader_over_synthetic"] == pytest.approx(ratio)
    assert "(a) synthetic, on the device" in proc.stdout and "(b) the loader, from shards" in proc.stdout
    assert not list(scratch.glob("valor-gpu-bench-*"))            # its shards are removed
