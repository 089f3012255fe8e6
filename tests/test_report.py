"""`lipc report`: the HTML page, its embedded charts and the PNG files."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess

import numpy as np
import pytest

from lipc.cli import main
from lipc.errors import RunError
from lipc.report import write_report

from test_data import write_npz
from test_data_cli import separable_arrays, write_spec

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CHARTS = ("training_curves.png", "epsilon.png", "certified_accuracy.png", "tensor_noise.png")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    x, y = separable_arrays()
    write_npz(folder / "mine.npz", x=x, y=y)
    spec = write_spec(folder, 'source = "mine.npz"')
    assert main(["--quiet", "train", spec, "--out", str(folder / "run")]) == 0
    return folder / "run"


def embedded_images(html: str) -> list[bytes]:
    return [base64.b64decode(data) for data in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)]


def test_report_writes_page_and_charts(run_dir, tmp_path):
    report = write_report(run_dir, tmp_path / "report")
    assert report.html_path == tmp_path / "report" / "report.html"
    assert sorted(path.name for path in report.chart_paths) == sorted(CHARTS)
    for path in report.chart_paths:
        assert path.read_bytes().startswith(PNG_MAGIC)


def test_report_page_is_self_contained(run_dir, tmp_path):
    html = write_report(run_dir, tmp_path / "report").html_path.read_text(encoding="utf-8")
    images = embedded_images(html)
    assert len(images) == len(CHARTS)
    assert all(image.startswith(PNG_MAGIC) for image in images)
    assert re.findall(r'(?:src|href)="(?!data:)', html) == []


def test_report_labels_training_metrics(run_dir, tmp_path):
    html = write_report(run_dir, tmp_path / "report").html_path.read_text(encoding="utf-8")
    assert "They are not covered by the privacy guarantee" in html
    assert "Held-out test metrics" in html


def test_report_default_folder(run_dir, capsys):
    assert main(["report", str(run_dir)]) == 0
    assert (run_dir / "report" / "report.html").is_file()
    assert capsys.readouterr().out.splitlines()[0] == f"wrote {run_dir / 'report' / 'report.html'}"


def test_report_replaces_old_report(run_dir, tmp_path):
    output = tmp_path / "report"
    output.mkdir()
    (output / "report.html").write_text("old", encoding="utf-8")
    (output / "stale.png").write_bytes(b"old")
    write_report(run_dir, output)
    assert sorted(path.name for path in output.iterdir()) == sorted(CHARTS + ("report.html",))


def test_report_keeps_foreign_folder(run_dir, tmp_path):
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(RunError) as caught:
        write_report(run_dir, tmp_path)
    assert caught.value.message == f"{tmp_path} exists and is not a lipc report folder"
    assert (tmp_path / "notes.txt").read_text(encoding="utf-8") == "mine"


def test_report_without_test_data(run_dir, tmp_path):
    moved = tmp_path / "run"
    shutil.copytree(run_dir, moved)
    (run_dir.parent / "mine.npz").rename(tmp_path / "elsewhere.npz")
    try:
        html = write_report(moved, tmp_path / "report").html_path.read_text(encoding="utf-8")
    finally:
        (tmp_path / "elsewhere.npz").rename(run_dir.parent / "mine.npz")
    assert f"Only the recorded points are shown: data file not found: {run_dir.parent / 'mine.npz'}." in html


def test_report_of_missing_run(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nothing")]) == 1
    assert capsys.readouterr().err.splitlines()[0] == f"lipc: error: run folder not found: {tmp_path / 'nothing'}"
    assert not (tmp_path / "nothing").exists()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
)
SCREENSHOT_SIZE = (1000, 3400)


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed")
def test_report_renders_in_chromium(run_dir, tmp_path):
    from PIL import Image

    report = write_report(run_dir, tmp_path / "report")
    screenshot = tmp_path / "screenshot.png"
    subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", f"--window-size={SCREENSHOT_SIZE[0]},{SCREENSHOT_SIZE[1]}",
         f"--screenshot={screenshot}", report.html_path.as_uri()],
        capture_output=True, timeout=120, check=True,
    )
    pixels = np.asarray(Image.open(screenshot).convert("L"))
    assert pixels.shape == (SCREENSHOT_SIZE[1], SCREENSHOT_SIZE[0])
    # The charts put plotted colours well below the page's white: far more than text alone would.
    assert (pixels < 200).mean() > 0.02


def test_report_warns_on_data_statistics(tmp_path):
    x, y = separable_arrays()
    write_npz(tmp_path / "mine.npz", x=x, y=y)
    spec = write_spec(tmp_path, 'source = "mine.npz"\n    allow_data_statistics = true\n    preprocess = standardize')
    assert main(["--quiet", "train", spec, "--out", str(tmp_path / "run")]) == 0
    html = write_report(tmp_path / "run", tmp_path / "report").html_path.read_text(encoding="utf-8")
    assert "The (ε, δ) guarantee does not cover that step." in html
