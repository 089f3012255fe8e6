"""The charts of a run report, drawn with Matplotlib's object API (Agg, no pyplot state)."""

from __future__ import annotations

import io
from dataclasses import dataclass

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

FIGURE_SIZE = (9.0, 3.6)
DPI = 110
TRAIN_COLOR, TEST_COLOR, PRIVACY_COLOR, NOISE_COLOR = "#b5651d", "#1f77b4", "#6a3d9a", "#33a02c"


@dataclass(frozen=True)
class Chart:
    """A rendered chart: its file name, title, caption and PNG bytes."""

    file_name: str
    title: str
    caption: str
    png: bytes


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def training_curves(epochs: list[int], train_loss: list[float], test_accuracy: list[float]) -> bytes:
    figure = Figure(figsize=FIGURE_SIZE)
    loss_axes, accuracy_axes = figure.subplots(1, 2)

    loss_axes.plot(epochs, train_loss, marker="o", color=TRAIN_COLOR)
    loss_axes.set_title("Training loss\n(training data: not covered by the privacy guarantee)", fontsize=9)
    loss_axes.set_xlabel("epoch")
    loss_axes.set_ylabel("mean loss per example")
    loss_axes.grid(alpha=0.3)
    loss_axes.xaxis.set_major_locator(MaxNLocator(integer=True))

    accuracy_axes.plot(epochs, test_accuracy, marker="o", color=TEST_COLOR)
    accuracy_axes.set_title("Test accuracy (held-out data)", fontsize=9)
    accuracy_axes.set_xlabel("epoch")
    accuracy_axes.set_ylabel("accuracy")
    accuracy_axes.set_ylim(0, 1)
    accuracy_axes.grid(alpha=0.3)
    accuracy_axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    return _png(figure)


def epsilon_over_steps(steps: list[int], epsilon: list[float], target_epsilon: float | None, delta: float) -> bytes:
    figure = Figure(figsize=FIGURE_SIZE)
    axes = figure.subplots()
    axes.plot([0] + steps, [0.0] + epsilon, marker="o", color=PRIVACY_COLOR, label="ε spent")
    if target_epsilon is not None:
        axes.axhline(target_epsilon, linestyle="--", color="gray", label=f"target ε = {target_epsilon:g}")
    axes.set_title(f"Privacy spent (δ = {delta:g})", fontsize=9)
    axes.set_xlabel("noisy steps taken")
    axes.set_ylabel("ε")
    axes.set_ylim(bottom=0)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    return _png(figure)


def certified_accuracy_curve(
    radii: list[float], accuracy: list[float], recorded_radii: list[float], recorded_accuracy: list[float]
) -> bytes:
    figure = Figure(figsize=FIGURE_SIZE)
    axes = figure.subplots()
    if radii:
        axes.plot(radii, accuracy, color=TEST_COLOR, label="certified accuracy")
    axes.plot(recorded_radii, recorded_accuracy, "o", color="black", label="recorded at the end of training")
    axes.set_title("Certified accuracy against ℓ2 radius (held-out data)", fontsize=9)
    axes.set_xlabel("radius r")
    axes.set_ylabel("fraction correct with certified radius > r")
    axes.set_ylim(0, 1)
    axes.set_xlim(left=0)
    axes.grid(alpha=0.3)
    axes.legend(loc="upper right")
    return _png(figure)


def tensor_noise(names: list[str], sensitivities: list[float], standard_deviations: list[float]) -> bytes:
    height = max(FIGURE_SIZE[1], 0.45 * len(names) + 1.5)
    figure = Figure(figsize=(FIGURE_SIZE[0], height))
    sensitivity_axes, noise_axes = figure.subplots(1, 2, sharey=True)
    positions = list(range(len(names)))

    bars = sensitivity_axes.barh(positions, sensitivities, color=PRIVACY_COLOR)
    sensitivity_axes.bar_label(bars, fmt="%.4g", padding=2, fontsize=8)
    sensitivity_axes.margins(x=0.2)
    sensitivity_axes.set_yticks(positions, names, fontsize=8)
    sensitivity_axes.invert_yaxis()
    sensitivity_axes.set_title("Sensitivity Δ_t\n(bound on one example's gradient norm)", fontsize=9)
    sensitivity_axes.grid(axis="x", alpha=0.3)

    bars = noise_axes.barh(positions, standard_deviations, color=NOISE_COLOR)
    noise_axes.bar_label(bars, fmt="%.4g", padding=2, fontsize=8)
    noise_axes.margins(x=0.2)
    noise_axes.set_title("Noise standard deviation per coordinate\n(added to the averaged gradient)", fontsize=9)
    noise_axes.grid(axis="x", alpha=0.3)
    return _png(figure)
