"""`lipc report RUN`: a self-contained HTML page and PNG charts describing a trained run.

Training-data metrics (the training loss) are labelled as not covered by the privacy
guarantee; accuracy and certified accuracy are measured on held-out test data.
"""

from __future__ import annotations

import base64
import html
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lipc.errors import LipcError, RunError
from lipc.report import charts
from lipc.report.charts import Chart
from lipc.train.run_folder import SavedRun, load_compiled, read_run

logger = logging.getLogger(__name__)

HTML_FILE = "report.html"
# Points of the certified-accuracy curve, from radius 0 to just past the largest certified radius.
CURVE_POINTS = 200
CURVE_MARGIN = 1.05


@dataclass(frozen=True)
class ReportFiles:
    folder: Path
    html_path: Path
    chart_paths: tuple[Path, ...]


@dataclass(frozen=True)
class CertifiedCurve:
    """Certified accuracy at `radii`, or no curve with the reason when the test data cannot be loaded."""

    radii: tuple[float, ...]
    accuracy: tuple[float, ...]
    unavailable_reason: str | None = None


def write_report(run_dir: str | os.PathLike, output_dir: str | os.PathLike) -> ReportFiles:
    """Write report.html and one PNG per chart into `output_dir`, replacing any earlier report there."""
    run = read_run(run_dir)
    output_dir = Path(output_dir)
    epochs = run.metrics.get("epochs", [])
    if not epochs:
        raise RunError(f"run folder {run.path} records no epoch in metrics.json", hint="train again; the run is incomplete")

    curve = certified_curve(run)
    rendered = _render_charts(run, curve)
    page = _html_page(run, rendered, curve)
    _write_folder(output_dir, page, rendered)
    return ReportFiles(output_dir, output_dir / HTML_FILE, tuple(output_dir / chart.file_name for chart in rendered))


def certified_curve(run: SavedRun) -> CertifiedCurve:
    """Recompute certified accuracy on the run's test set at many radii, from its saved weights."""
    from lipc.data import load_run_dataset
    from lipc.train import evaluation

    try:
        compiled = load_compiled(run)
        dataset = load_run_dataset(run.config.get("train", {}), compiled)
    except LipcError as error:
        logger.warning("cannot reload the test data of %s, so the certified accuracy chart shows the recorded points only: %s", run.path, error.message)
        return CertifiedCurve((), (), error.message)

    logits = evaluation.predict_logits(compiled.module, dataset.test_inputs)
    lipschitz_constant = compiled.certified_lipschitz()
    correct = (logits.argmax(dim=1) == dataset.test_labels).numpy()
    radii = evaluation.certified_radii(logits, lipschitz_constant).numpy()
    largest = float(radii[correct].max()) if correct.any() else 1.0
    grid = np.linspace(0.0, largest * CURVE_MARGIN, CURVE_POINTS)
    accuracy = [float((correct & (radii > r)).mean()) for r in grid]
    return CertifiedCurve(tuple(float(r) for r in grid), tuple(accuracy))


def _render_charts(run: SavedRun, curve: CertifiedCurve) -> list[Chart]:
    epochs = run.metrics["epochs"]
    ledger = run.ledger
    recorded = {float(radius): value for radius, value in run.metrics.get("certified_accuracy", {}).items()}
    tensors = ledger.get("tensors", {})

    return [
        Chart(
            "training_curves.png",
            "Training loss and test accuracy",
            "Left: mean loss on the training batches of each epoch. It is computed on private training data "
            "and is not covered by the privacy guarantee. Right: accuracy on held-out test data after each epoch.",
            charts.training_curves(
                [e["epoch"] for e in epochs], [e["train_loss_not_private"] for e in epochs], [e["test_accuracy"] for e in epochs]
            ),
        ),
        Chart(
            "epsilon.png",
            "Privacy spent over steps",
            f"ε of the ({ledger.get('accountant', '?').upper()}-accounted) guarantee after each epoch, counting every noisy step, "
            "empty batches included.",
            charts.epsilon_over_steps(
                [e["steps"] for e in epochs], [e["epsilon"] for e in epochs], ledger.get("target_epsilon"), ledger.get("delta", float("nan"))
            ),
        ),
        Chart(
            "certified_accuracy.png",
            "Certified accuracy against radius",
            "Fraction of held-out test examples classified correctly with a certified ℓ2 radius above r, "
            "where r(x) = (z_top1 − z_top2) / (sqrt(2)·L) and L is the certified Lipschitz constant of the final weights."
            + (f" Only the recorded points are shown: {curve.unavailable_reason}." if curve.unavailable_reason else ""),
            charts.certified_accuracy_curve(list(curve.radii), list(curve.accuracy), list(recorded), list(recorded.values())),
        ),
        Chart(
            "tensor_noise.png",
            "Sensitivity and noise per parameter tensor",
            "Sensitivity Δ_t: proven bound on the norm of one example's gradient for tensor t. "
            "Noise: standard deviation of the Gaussian noise added to each coordinate of the batch gradient "
            "(loss summed over the batch, divided by the expected batch size).",
            charts.tensor_noise(
                list(tensors), [t["sensitivity"] for t in tensors.values()], [t["standard_deviation"] for t in tensors.values()]
            ),
        ),
    ]


STYLE = """
body { font-family: system-ui, sans-serif; max-width: 960px; margin: 2em auto; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 1.8em; }
table { border-collapse: collapse; margin: 0.5em 0; }
td, th { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; font-size: 0.9em; }
th { background: #f3f3f3; }
img { max-width: 100%; border: 1px solid #ddd; }
.note { background: #fff8e1; border-left: 4px solid #f0a800; padding: 0.5em 0.8em; }
.warning { background: #fdecea; border-left: 4px solid #c62828; padding: 0.5em 0.8em; }
.caption { font-size: 0.9em; color: #444; }
"""


def _table(rows: list[tuple[str, str]]) -> str:
    cells = "".join(f"<tr><th>{html.escape(key)}</th><td>{html.escape(value)}</td></tr>" for key, value in rows)
    return f"<table>{cells}</table>"


def _html_page(run: SavedRun, rendered: list[Chart], curve: CertifiedCurve) -> str:
    metrics, ledger, config = run.metrics, run.ledger, run.config
    train = config.get("train", {})
    network = config.get("network", run.path.name)

    privacy = [
        ("ε spent", f"{ledger.get('epsilon_spent', float('nan')):.4f} (target {ledger.get('target_epsilon')})"),
        ("δ", f"{ledger.get('delta')}"),
        ("accountant", str(ledger.get("accountant"))),
        ("neighbouring relation", str(ledger.get("neighboring_relation"))),
        ("sampling", f"{ledger.get('sampling')}, rate q = {ledger.get('sampling_rate', float('nan')):.5f}, expected batch size {ledger.get('expected_batch_size')}"),
        ("noise multiplier", f"{ledger.get('noise_multiplier', float('nan')):.4f} ({ledger.get('noise_strategy')})"),
        ("steps taken", f"{ledger.get('steps_taken')} of {ledger.get('steps_planned')} planned"),
        ("training examples", str(ledger.get("dataset_size"))),
        ("data", str(train.get("data"))),
        ("preprocessing", str(ledger.get("preprocessing"))),
    ]
    held_out = [("test accuracy", f"{metrics.get('test_accuracy', float('nan')):.4f}")]
    held_out += [(f"certified accuracy at r = {radius}", f"{value:.4f}") for radius, value in metrics.get("certified_accuracy", {}).items()]
    held_out.append(("certified Lipschitz constant", f"{metrics.get('lipschitz_constant', float('nan')):.6g}"))
    last_epoch = metrics["epochs"][-1]
    training_data = [("training loss, last epoch", f"{last_epoch['train_loss_not_private']:.4f}")]

    warning = ""
    if not ledger.get("preprocessing_covered_by_guarantee", True):
        warning = (
            '<p class="warning">The preprocessing of this run read statistics of the training data '
            "(allow_data_statistics = true). The (ε, δ) guarantee does not cover that step.</p>"
        )

    sections = []
    for chart in rendered:
        encoded = base64.b64encode(chart.png).decode("ascii")
        sections.append(
            f"<h2>{html.escape(chart.title)}</h2>\n"
            f'<img src="data:image/png;base64,{encoded}" alt="{html.escape(chart.title)}">\n'
            f'<p class="caption">{html.escape(chart.caption)}</p>'
        )

    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>lipc report: {html.escape(network)}</title>
<style>{STYLE}</style>
</head>
<body>
<h1>lipc report: {html.escape(network)}</h1>
<p>Run folder {html.escape(str(run.path))}, lipc {html.escape(str(config.get("lipc_version")))}, device {html.escape(str(config.get("device")))}.</p>
{warning}
<h2>Privacy guarantee</h2>
{_table(privacy)}
<h2>Held-out test metrics</h2>
{_table(held_out)}
<h2>Training-data metrics</h2>
<p class="note">These numbers are computed on the private training data without noise. They are not covered by the privacy guarantee; do not publish them as private results.</p>
{_table(training_data)}
{chr(10).join(sections)}
</body>
</html>
"""


def _write_folder(output_dir: Path, page: str, rendered: list[Chart]) -> None:
    """Write into a temporary folder beside `output_dir`, then swap it into place."""
    parent = output_dir.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", dir=parent))
        # mkdtemp makes the folder private (0700); give the report the usual permissions.
        umask = os.umask(0)
        os.umask(umask)
        staging.chmod(0o777 & ~umask)
    except OSError as error:
        raise RunError(f"cannot create the report folder in {parent}: {error.strerror}", hint="choose a writable -o") from None

    previous = None
    try:
        (staging / HTML_FILE).write_text(page, encoding="utf-8")
        for chart in rendered:
            (staging / chart.file_name).write_bytes(chart.png)
        if output_dir.exists():
            if not output_dir.is_dir() or not (output_dir / HTML_FILE).exists() and any(output_dir.iterdir()):
                raise RunError(f"{output_dir} exists and is not a lipc report folder", hint="choose another -o, or remove it")
            previous = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.old.", dir=parent))
            os.replace(output_dir, previous / output_dir.name)
        os.replace(staging, output_dir)
    except OSError as error:
        if previous is not None and not output_dir.exists():
            os.replace(previous / output_dir.name, output_dir)
            previous = None
        raise RunError(f"cannot write the report folder {output_dir}: {error.strerror}", hint="check the disk space and permissions") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if previous is not None:
            shutil.rmtree(previous, ignore_errors=True)
