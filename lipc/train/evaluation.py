"""Test accuracy and certified accuracy of a Lipschitz classifier."""

from __future__ import annotations

import math

import torch


@torch.no_grad()
def predict_logits(module: torch.nn.Module, inputs: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    module.eval()
    logits = torch.cat([module(inputs[start : start + batch_size]) for start in range(0, len(inputs), batch_size)])
    module.train()
    return logits


def certified_radii(logits: torch.Tensor, lipschitz_constant: float) -> torch.Tensor:
    """Radius within which the prediction cannot change.

    With K ≥ 2 logits it is (z_top1 − z_top2) / (sqrt(2)·L). With a single logit z, the
    predicted class is the sign of z, which cannot change before |z| / L.
    """
    if logits.shape[1] == 1:
        return logits[:, 0].abs() / lipschitz_constant
    top_two = logits.topk(2, dim=1).values
    return (top_two[:, 0] - top_two[:, 1]) / (math.sqrt(2.0) * lipschitz_constant)


def predictions(logits: torch.Tensor) -> torch.Tensor:
    """Predicted classes: the largest logit, or for a single logit, 1 where it is positive."""
    if logits.shape[1] == 1:
        return (logits[:, 0] > 0).long()
    return logits.argmax(dim=1)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((predictions(logits) == labels).float().mean()) if len(labels) else 0.0


def certified_accuracy(logits: torch.Tensor, labels: torch.Tensor, lipschitz_constant: float, radii) -> dict[float, float]:
    """Fraction of examples classified correctly with a certified radius above each of `radii`."""
    correct = predictions(logits) == labels
    radius = certified_radii(logits, lipschitz_constant)
    return {float(r): float((correct & (radius > r)).float().mean()) for r in radii}
