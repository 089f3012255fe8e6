"""Loss constants: ‖∇_z loss(z, y)‖ never exceeds L, for random and adversarial logits and every label."""

from __future__ import annotations

import math

import pytest
import torch

import lipc

# Float32 rounding of logits, targets and δ may put a gradient a few ulps above the exact
# constant. The checker's relative safety margin of 1e-4 on every sensitivity absorbs it.
ROUNDING = 1 + 1e-6


def compile_with_loss(loss: str, outputs: int, clip_norm: float = 1.0):
    source = f"network n {{\n    input shape=[4] clip_norm={clip_norm}\n    dense {outputs} bias_norm=0.5\n}}\nloss {loss}\n"
    return lipc.compile_source(source)


def logit_gradient_norms(compiled, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    logits = logits.clone().requires_grad_()
    compiled.loss_function(logits, labels).sum().backward()
    return logits.grad.flatten(1).norm(dim=1)


def worst_gradient(compiled, logits, labels) -> float:
    return float(logit_gradient_norms(compiled, logits, labels).max())


def random_logits(count: int, outputs: int, generator, scale: float = 20.0) -> torch.Tensor:
    return scale * torch.randn(count, outputs, generator=generator)


@pytest.mark.parametrize("margin", [0.1, 1.0, 5.0])
@pytest.mark.parametrize("classes", [2, 3, 10])
def test_hinge_constant(margin, classes):
    compiled = compile_with_loss(f"hinge margin={margin}", classes)
    bound = compiled.checked.loss.lipschitz
    assert bound == pytest.approx(1 / math.sqrt(classes))
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(4096) % classes
    assert worst_gradient(compiled, random_logits(4096, classes, generator), labels) <= bound * ROUNDING

    # Every logit on the wrong side of its margin: every coordinate of the gradient is ±1/K.
    labels = torch.arange(classes)
    signs = 2.0 * torch.nn.functional.one_hot(labels, classes) - 1.0
    adversarial = -signs * (margin + 1.0)
    worst = worst_gradient(compiled, adversarial, labels)
    assert worst <= bound * ROUNDING
    assert worst == pytest.approx(bound)


@pytest.mark.parametrize("temperature", [0.05, 0.5, 1.0, 4.0])
def test_binary_cross_entropy_constant(temperature):
    compiled = compile_with_loss(f"binary_cross_entropy temperature={temperature}", 1)
    bound = compiled.checked.loss.lipschitz
    assert bound == pytest.approx(1 / temperature)
    generator = torch.Generator().manual_seed(1)
    assert worst_gradient(compiled, random_logits(4096, 1, generator), torch.arange(4096) % 2) <= bound * ROUNDING

    # A confident wrong logit, and labels outside {0, 1}, which the loss clamps.
    adversarial = torch.tensor([[-1e4], [1e4], [-1e4], [1e4]])
    labels = torch.tensor([1, 0, 7, -3])
    worst = worst_gradient(compiled, adversarial, labels)
    assert worst <= bound * ROUNDING
    assert worst > 0.99 * bound


@pytest.mark.parametrize("alpha, margin", [(0.0, 1.0), (5.0, 0.5), (50.0, 2.0)])
def test_hinge_kr_constant(alpha, margin):
    compiled = compile_with_loss(f"hinge_kr alpha={alpha} margin={margin}", 1)
    bound = compiled.checked.loss.lipschitz
    assert bound == pytest.approx(1 + alpha)
    generator = torch.Generator().manual_seed(2)
    assert worst_gradient(compiled, random_logits(4096, 1, generator), torch.arange(4096) % 2) <= bound * ROUNDING

    adversarial = torch.tensor([[-margin - 1.0], [margin + 1.0], [0.0], [0.0]])
    labels = torch.tensor([1, 0, 5, -5])
    worst = worst_gradient(compiled, adversarial, labels)
    assert worst <= bound * ROUNDING
    assert worst == pytest.approx(bound)


@pytest.mark.parametrize("target_bound", [0.5, 3.0])
@pytest.mark.parametrize("outputs", [1, 3])
def test_squared_error_constant(target_bound, outputs):
    compiled = compile_with_loss(f"squared_error target_bound={target_bound}", outputs, clip_norm=2.0)
    output_norm_bound = compiled.checked.layers[-1].output_norm_bound
    bound = compiled.checked.loss.lipschitz
    assert bound == pytest.approx(output_norm_bound + target_bound)
    generator = torch.Generator().manual_seed(3)

    # Logits on the sphere of radius X_D, and targets of any norm, many far beyond the bound.
    logits = torch.randn(4096, outputs, generator=generator)
    logits = output_norm_bound * logits / logits.norm(dim=1, keepdim=True)
    targets = torch.linspace(0.0, 100.0, 4096).unsqueeze(1) * torch.randn(4096, outputs, generator=generator)
    assert worst_gradient(compiled, logits, targets) <= bound * ROUNDING

    # Logit and target on opposite sides: the gradient reaches X_D + target_bound.
    direction = torch.ones(1, outputs) / math.sqrt(outputs)
    worst = worst_gradient(compiled, output_norm_bound * direction, -1e3 * direction)
    assert worst <= bound * ROUNDING
    assert worst == pytest.approx(bound, rel=1e-5)


def test_squared_error_outputs_reach_their_bound():
    """The network's real outputs stay within X_D, which the squared-error constant assumes."""
    compiled = compile_with_loss("squared_error target_bound=1", 2, clip_norm=2.0)
    generator = torch.Generator().manual_seed(4)
    inputs = 10 * torch.randn(2048, 4, generator=generator)
    with torch.no_grad():
        outputs = compiled.module(inputs)
    assert float(outputs.norm(dim=1).max()) <= compiled.checked.layers[-1].output_norm_bound


@pytest.mark.parametrize("delta", [0.1, 1.0])
@pytest.mark.parametrize("outputs", [1, 4])
def test_huber_constant(delta, outputs):
    compiled = compile_with_loss(f"huber delta={delta}", outputs)
    bound = compiled.checked.loss.lipschitz
    assert bound == pytest.approx(delta * math.sqrt(outputs))
    generator = torch.Generator().manual_seed(5)
    targets = 50 * torch.randn(4096, outputs, generator=generator)
    assert worst_gradient(compiled, random_logits(4096, outputs, generator), targets) <= bound * ROUNDING

    adversarial = torch.full((1, outputs), 10.0 * delta)
    worst = worst_gradient(compiled, adversarial, torch.zeros(1, outputs))
    assert worst <= bound * ROUNDING
    assert worst == pytest.approx(bound)


@pytest.mark.parametrize("temperature", [0.1, 1.0])
def test_cross_entropy_every_label(temperature):
    classes = 5
    compiled = compile_with_loss(f"cross_entropy temperature={temperature}", classes)
    bound = compiled.checked.loss.lipschitz
    labels = torch.arange(classes).repeat_interleave(classes)
    wrong = torch.full((classes * classes, classes), -1e4)
    wrong[torch.arange(classes * classes), torch.arange(classes).repeat(classes)] = 1e4
    assert worst_gradient(compiled, wrong, labels) <= bound * ROUNDING
