"""The valor-data command as users run it (a subprocess, real exit codes and output)."""

import subprocess
import sys

import pyarrow.parquet as pq

from valor_data import __version__

from helpers import official_csv


def run(*args, check=False):
    proc = subprocess.run([sys.executable, "-m", "valor_data.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_help_and_version():
    assert run("--version", check=True).stdout.strip() == f"valor-data, version {__version__}"
    out = run("--help", check=True).stdout
    assert "manifest" in out and "synth" in out
    assert "--workdir" in run("manifest", "audioset", "--help", check=True).stdout


def test_manifest_audioset_reports_rows_kept_and_rejected(tmp_path, shared_data):
    audioset = shared_data / "audioset"
    csv = official_csv(tmp_path / "eval_segments.csv",
                       ['--PJHxphWEs, 30.000, 40.000, "/m/09x0r"', '#NAME?, 1.000, 2.000, "/m/09x0r"'])
    proc = run("manifest", "audioset", csv, "-w", tmp_path / "w", "--labels",
               audioset / "class_labels_indices.csv", "--ontology", audioset / "ontology.json", check=True)
    assert "rows read 2  kept 1  rejected 1" in proc.stdout
    assert "rejected bad_video_id: 1" in proc.stdout
    assert pq.read_table(tmp_path / "w" / "manifest.parquet").num_rows == 1


def test_errors_are_one_line_without_traceback(tmp_path):
    proc = run("manifest", "audioset", tmp_path / "missing_segments.csv", "-w", tmp_path / "w")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "Traceback" not in proc.stderr and "missing_segments.csv" in proc.stderr
    verbose = run("-v", "manifest", "audioset", tmp_path / "missing_segments.csv", "-w", tmp_path / "w")
    assert verbose.returncode != 0 and "Traceback" in verbose.stderr
    usage = run("manifest", "audioset", "-w", tmp_path / "w")
    assert usage.returncode == 2 and "give segment CSVs or --download" in usage.stderr


def test_synth_make_and_serve(tmp_path):
    out = tmp_path / "corpus"
    proc = run("synth", "make", out, "--clips", "2", "--defects", "zero_bytes,black=2", "--source-seconds", "10",
               check=True)
    assert "made 5 clips" in proc.stdout and "black: 2" in proc.stdout
    server = subprocess.Popen([sys.executable, "-m", "valor_data.cli", "synth", "serve", str(out),
                               "--write-urls", str(tmp_path / "urls.csv")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        assert "serving" in line and "http://127.0.0.1:" in line
        assert (tmp_path / "urls.csv").read_text().count("http://127.0.0.1:") == 5
    finally:
        server.terminate()
        server.wait(timeout=30)
    bad = run("synth", "make", out, "--defects", "not_a_defect")
    assert bad.returncode == 1 and "unknown defect" in bad.stderr
