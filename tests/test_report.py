"""valor-data report: figures from every stage, opened in a real headless Chromium."""

import shutil
import subprocess
import sys

import pytest
from test_shards_build import built_workdir  # noqa: F401  (session fixture)

from valor_data.report.html import build_report
from valor_data.workdir import Workdir

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def report(built_workdir, tmp_path_factory):  # noqa: F811
    workdir = Workdir.create(tmp_path_factory.mktemp("report") / "w")
    shutil.copytree(built_workdir, workdir.root, dirs_exist_ok=True)
    return build_report(workdir)


def test_report_files(report):
    folder = report.parent
    page = report.read_text(encoding="utf-8")
    for name in ("funnel", "rejections", "fetch", "labels", "captions", "contact"):
        assert (folder / f"{name}.png").stat().st_size > 1000
        assert f'id="fig-{name}"' in page and "data:image/png;base64," in page
    # stages that did not run in this work dir are named, not drawn empty
    assert "not available" in page
    assert "http://" not in page and "https://" not in page   # self-contained


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium not installed (.ci/run installs it)")
def test_report_opens_in_headless_chromium(report, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    errors = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(report.as_uri())
            images = page.eval_on_selector_all("img", "els => els.map(e => [e.id, e.complete, e.naturalWidth])")
            page.screenshot(path=str(tmp_path / "shot.png"), full_page=True)
        finally:
            browser.close()
    assert errors == []
    assert len(images) >= 6 and all(complete and width > 0 for _, complete, width in images), images
    from PIL import Image

    shot = Image.open(tmp_path / "shot.png").convert("L")
    low, high = shot.getextrema()
    assert high - low > 100 and shot.height > 2000   # not blank: text and figures drawn


def test_report_command(report):
    proc = subprocess.run([sys.executable, "-m", "valor_data.cli", "report", str(report.parent.parent)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "report:" in proc.stdout


def test_training_figures_read_the_trainer_outputs(tmp_path):
    """The shapes of W/train/<run>/log.jsonl and W/validation.json as valor_data.train writes them."""
    import json

    from valor_data.report import figures
    from valor_data.report.data import load

    workdir = Workdir.create(tmp_path / "w")
    (workdir.root / "train" / "validate").mkdir(parents=True)       # one training run; controls derange at evaluation
    (workdir.root / "train" / "validate" / "log.jsonl").write_text(
        "".join(json.dumps({"step": s, "loss": 5.0 - s / 10, "mga": 1.0, "mgc": 3.0}) + "\n" for s in (10, 20)))
    recall = {"r1": 0.2, "r5": 0.6, "r10": 0.8, "median_rank": 4.0}
    chance = {"r1": 0.0125, "r5": 0.0625, "r10": 0.125, "median_rank": 40.5}
    (workdir.root / "validation.json").write_text(json.dumps({
        "passed": True, "eval_split": "valor32k-test",
        "metrics": {"chance": chance, "retrieval": {g: recall for g in ("tv", "ta", "tav")}},
        "controls": {kind: {g: chance for g in ("tv", "ta", "tav")} for kind in ("captions", "audio", "video")}}))
    data = load(workdir)
    assert set(data.train_logs) == {"validate"}
    curves, bars = figures.training_curves(data), figures.validation_metrics(data)
    assert len(curves.axes[0].lines) == 1
    assert len(bars.axes[0].patches) == 18 and "PASSED" in bars.axes[0].get_title()
