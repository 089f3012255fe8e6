"""Audit of the sensitivities: the largest per-example gradient norm found, against each bound.

Per-example gradients come from torch.func (vmap over grad). The search starts from random
inputs on the clipping sphere, with every label, then follows gradient ascent on each
parameter tensor's per-example gradient norm, staying on the sphere. What it finds is a lower
bound on the true supremum, so a ratio near 1 shows a tight bound and a ratio above 1 a bug.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch.func import functional_call, grad, vmap
from tqdm import tqdm

from lipc.check.losses import BINARY_LABELS, REGRESSION_TARGETS

logger = logging.getLogger(__name__)

# Inputs per search, ascent steps, and the step length as a fraction of the clipping radius.
AUDIT_SAMPLES = 32
AUDIT_STEPS = 20
AUDIT_STEP_SIZE = 0.1
# Regression targets are drawn up to this multiple of the target bound, so that the loss's
# own target projection is exercised too.
TARGET_SCALE = 3.0


@dataclass(frozen=True)
class TensorAudit:
    """The worst per-example gradient norm found for one parameter tensor, and its bound Δ."""

    name: str
    worst: float
    bound: float

    @property
    def ratio(self) -> float:
        return self.worst / self.bound if self.bound > 0 else 0.0


def _labels(compiled, count: int, generator: torch.Generator) -> torch.Tensor:
    kind = compiled.checked.label_kind
    if kind == BINARY_LABELS:
        return torch.arange(count) % 2
    if kind == REGRESSION_TARGETS:
        scale = getattr(compiled.checked.loss, "target_bound", 1.0) * TARGET_SCALE
        return scale * torch.randn(count, compiled.num_classes, generator=generator)
    return torch.arange(count) % compiled.num_classes


def _on_sphere(x: torch.Tensor, radius: float) -> torch.Tensor:
    return radius * x / x.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (x.dim() - 1))


def audit_sensitivities(compiled, samples: int = AUDIT_SAMPLES, steps: int = AUDIT_STEPS, seed: int = 0, show_progress: bool = True) -> list[TensorAudit]:
    """Search, for every parameter tensor, the largest per-example gradient norm at the current weights."""
    module = compiled.module
    was_training = module.training
    module.eval()
    params = {name: parameter.detach() for name, parameter in module.named_parameters()}
    generator = torch.Generator().manual_seed(seed)
    radius = compiled.input_clip_norm
    start = _on_sphere(torch.randn(samples, *compiled.input_shape, generator=generator), radius)
    labels = _labels(compiled, samples, generator)

    def example_gradients(parameters, x, y):
        def example_loss(p):
            return compiled.loss_function(functional_call(module, p, (x.unsqueeze(0),)), y.unsqueeze(0)).sum()

        return grad(example_loss)(parameters)

    results = []
    try:
        for target in tqdm(params, desc="audit", disable=None if show_progress else True, leave=False, unit="tensor"):
            def gradient_norm(x, y, target=target):
                return example_gradients(params, x, y)[target].norm()

            ascent = vmap(grad(gradient_norm))
            norms = vmap(gradient_norm)
            x = start.clone()
            worst = float(norms(x, labels).max())
            for _ in range(steps):
                direction = ascent(x, labels)
                x = _on_sphere(x + AUDIT_STEP_SIZE * _on_sphere(direction, radius), radius)
                worst = max(worst, float(norms(x, labels).max()))
            results.append(TensorAudit(target, worst, compiled.sensitivities[target]))
            logger.debug("audit %s: worst %.6g, bound %.6g", target, worst, compiled.sensitivities[target])
    finally:
        module.train(was_training)
    return results


def format_audit(results: list[TensorAudit]) -> str:
    """Render the audit as an aligned table."""
    header = ("parameter", "worst found", "bound Δ", "worst / bound")
    rows = [(r.name, f"{r.worst:.6g}", f"{r.bound:.6g}", f"{r.ratio:.3f}") for r in results]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["audit: largest per-example gradient norm found by search, against each bound"]
    for row in [header, *rows]:
        lines.append("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return "\n".join(lines)
