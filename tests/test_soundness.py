"""Soundness: real per-example gradients and Lipschitz ratios never exceed the reported bounds.

Per-example gradients come from torch.func (vmap over grad). Inputs are drawn on and beyond
the clipping sphere, then pushed by gradient ascent on the per-example gradient norm, and
checked again after training steps with large random updates.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.func import functional_call, grad, vmap

import lipc
from lipc.check.losses import BINARY_LABELS, REGRESSION_TARGETS
from lipc.privacy.noise import allocate_noise
from lipc.train.trainer import private_step

from conftest import MLP_SOURCE, SPECS

NETWORKS = {
    "digits_mlp": (SPECS / "digits_mlp.lip").read_text(),
    "biased_mlp": MLP_SOURCE,
    "image_input": """\
network image {
    input shape=[2, 3, 3] clip_norm=3.0
    flatten
    dense 16 bias_norm=2.0
    groupsort 4
    dense 16 bias_norm=0.1
    relu
    dense 4
}
loss cross_entropy temperature=2.0
""",
    "conv2d_strided": """\
network conv2d_strided {
    input shape=[2, 6, 6] clip_norm=2.0
    conv2d 4 kernel=3 stride=2 padding=same bias_norm=0.3
    maxmin
    conv2d 4 kernel=2 padding=valid
    abs
    flatten
    dense 3 bias_norm=0.1
}
loss cross_entropy temperature=0.5
""",
    "conv2d_circular_pooled": """\
network conv2d_circular_pooled {
    input shape=[1, 8, 8] clip_norm=1.0
    conv2d 4 kernel=3 padding=circular bias_norm=0.2 constraint=bjorck
    fullsort
    avgpool 2
    conv2d 4 kernel=[3, 1] padding=same
    l2pool 2
    centering channel
    flatten
    dense 4
}
loss hinge margin=0.5
""",
    "conv1d_regression": """\
network conv1d_regression {
    input shape=[1, 12] clip_norm=1.0
    conv1d 4 kernel=5 stride=2 padding=valid bias_norm=0.5
    groupsort 4
    conv1d 2 kernel=3 padding=circular
    global_l2pool
    dense 1 bias_norm=0.5
}
loss squared_error target_bound=2.0
""",
    "residual_binary": """\
network residual_binary {
    input shape=[2, 4, 4] clip_norm=1.0
    conv2d 4 kernel=3
    residual alpha=0.3 {
        conv2d 4 kernel=3 bias_norm=0.2
        groupsort 2
        residual alpha=0.5 {
            conv2d 4 kernel=1 constraint=bjorck
            relu
        }
    }
    maxpool 2
    global_avgpool
    dense 1
}
loss binary_cross_entropy temperature=0.5
""",
    "mlp_huber": """\
network mlp_huber {
    input shape=[6] clip_norm=1.0
    dense 8 bias_norm=0.5 constraint=bjorck
    maxmin
    centering
    residual alpha=0.5 {
        dense 8
        abs
    }
    dense 2
}
loss huber delta=0.5
""",
    "mlp_hinge_kr": """\
network mlp_hinge_kr {
    input shape=[5] clip_norm=3.0
    dense 6
    groupsort 3
    dense 1 bias_norm=1.0
}
loss hinge_kr alpha=5 margin=0.5
""",
}


def per_example_gradients(compiled, inputs, labels):
    module = compiled.module
    params = {name: p.detach() for name, p in module.named_parameters()}

    def example_loss(params, x, y):
        logits = functional_call(module, params, (x.unsqueeze(0),))
        return compiled.loss_function(logits, y.unsqueeze(0)).sum()

    return vmap(grad(example_loss), in_dims=(None, 0, 0))(params, inputs, labels)


def gradient_norms(compiled, inputs, labels) -> dict[str, torch.Tensor]:
    grads = per_example_gradients(compiled, inputs, labels)
    return {name: g.flatten(1).norm(dim=1) for name, g in grads.items()}


def on_sphere(count: int, shape, radius: float, generator) -> torch.Tensor:
    x = torch.randn(count, *shape, generator=generator)
    return radius * x / x.flatten(1).norm(dim=1).view(-1, *[1] * len(shape))


def adversarial_inputs(compiled, inputs, labels, steps: int = 30, step_size: float = 0.1) -> dict[str, torch.Tensor]:
    """For each parameter tensor, inputs found by ascent on that tensor's per-example gradient norm."""
    module = compiled.module
    params = {name: p.detach() for name, p in module.named_parameters()}
    radius = compiled.input_clip_norm
    found = {}
    for target in params:
        def gradient_norm(x, y):
            def example_loss(p):
                return compiled.loss_function(functional_call(module, p, (x.unsqueeze(0),)), y.unsqueeze(0)).sum()
            return grad(example_loss)(params)[target].norm()

        ascent = vmap(grad(gradient_norm), in_dims=(0, 0))
        x = inputs.clone()
        for _ in range(steps):
            direction = ascent(x, labels)
            x = x + step_size * radius * direction / direction.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (x.dim() - 1))
            # Stay on the clipping sphere: the boundary of the admissible set.
            x = radius * x / x.flatten(1).norm(dim=1).view(-1, *[1] * (x.dim() - 1))
        found[target] = x.detach()
    return found


def assert_within_bounds(compiled, inputs, labels, only: str | None = None):
    norms = gradient_norms(compiled, inputs, labels)
    for name, bound in compiled.sensitivities.items():
        if only is not None and name != only:
            continue
        worst = float(norms[name].max())
        assert worst <= bound, f"{name}: per-example gradient norm {worst} exceeds its bound {bound}"


def all_labels(compiled, count, generator=None):
    """Every class in turn; for regression, random targets, many far beyond any target bound."""
    if compiled.checked.label_kind == BINARY_LABELS:
        return torch.arange(count) % 2
    if compiled.checked.label_kind == REGRESSION_TARGETS:
        generator = generator or torch.Generator().manual_seed(count)
        scale = torch.linspace(0.1, 10.0, count).unsqueeze(1)
        return scale * torch.randn(count, compiled.num_classes, generator=generator)
    return torch.arange(count) % compiled.num_classes


def randomise_weights(compiled, generator, bias_scale: float = 10.0):
    """Large random weights, then the projection: singular values and bias norms at their budget."""
    with torch.no_grad():
        for name, parameter in compiled.module.named_parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * bias_scale)
    compiled.module.project_()


@pytest.mark.parametrize("network", sorted(NETWORKS))
def test_gradients_bounded_on_sphere(network):
    generator = torch.Generator().manual_seed(0)
    compiled = lipc.compile_source(NETWORKS[network])
    shape = compiled.input_shape
    for radius_factor in (1.0, 5.0):  # on the sphere, and far outside it (clipped by the model)
        inputs = on_sphere(256, shape, compiled.input_clip_norm * radius_factor, generator)
        assert_within_bounds(compiled, inputs, all_labels(compiled, 256))
    randomise_weights(compiled, generator)
    inputs = on_sphere(256, shape, compiled.input_clip_norm, generator)
    assert_within_bounds(compiled, inputs, all_labels(compiled, 256))


@pytest.mark.parametrize("network", sorted(NETWORKS))
def test_gradients_bounded_on_adversarial_inputs(network):
    generator = torch.Generator().manual_seed(1)
    compiled = lipc.compile_source(NETWORKS[network])
    randomise_weights(compiled, generator)
    inputs = on_sphere(32, compiled.input_shape, compiled.input_clip_norm, generator)
    labels = all_labels(compiled, 32)
    for target, adversarial in adversarial_inputs(compiled, inputs, labels).items():
        assert_within_bounds(compiled, adversarial, labels, only=target)


@pytest.mark.parametrize("network", sorted(NETWORKS))
def test_gradients_bounded_after_training_steps(network):
    generator = torch.Generator().manual_seed(2)
    compiled = lipc.compile_source(NETWORKS[network])
    module = compiled.module
    parameters = dict(module.named_parameters())
    for parameter in parameters.values():
        parameter.grad = torch.zeros_like(parameter)
    optimizer = torch.optim.SGD(parameters.values(), lr=5.0)
    allocation = allocate_noise(compiled.sensitivities, 1.0, 16.0)

    for _ in range(10):
        inputs = on_sphere(16, compiled.input_shape, compiled.input_clip_norm * 3, generator)
        labels = all_labels(compiled, 16, generator)[torch.randperm(16, generator=generator)]
        private_step(compiled, module, optimizer, parameters, allocation, inputs, labels, 16.0, generator)
        assert compiled.certified_lipschitz() <= 1.0
        probe = on_sphere(128, compiled.input_shape, compiled.input_clip_norm, generator)
        assert_within_bounds(compiled, probe, all_labels(compiled, 128))


def lipschitz_ratios(module, x, y):
    with torch.no_grad():
        return (module(x) - module(y)).flatten(1).norm(dim=1) / (x - y).flatten(1).norm(dim=1)


@pytest.mark.parametrize("network", sorted(NETWORKS))
def test_lipschitz_constant_never_exceeded(network):
    generator = torch.Generator().manual_seed(3)
    compiled = lipc.compile_source(NETWORKS[network])
    randomise_weights(compiled, generator)
    module = compiled.module
    certified = compiled.certified_lipschitz()
    radius = compiled.input_clip_norm

    x = on_sphere(512, compiled.input_shape, radius * 0.9, generator)
    for scale in (1e-3, 0.1, 1.0):  # close pairs, and pairs across the ball
        y = x + scale * torch.randn(x.shape, generator=generator)
        assert float(lipschitz_ratios(module, x, y).max()) <= certified

    # Ascent on the ratio over pairs, from random starting points.
    x = on_sphere(64, compiled.input_shape, radius * 0.5, generator).requires_grad_()
    y = (x.detach() + 0.05 * torch.randn(x.shape, generator=generator)).requires_grad_()
    optimizer = torch.optim.Adam([x, y], lr=0.01)
    for _ in range(100):
        optimizer.zero_grad()
        ratio = (module(x) - module(y)).flatten(1).norm(dim=1) / (x - y).flatten(1).norm(dim=1)
        (-ratio.sum()).backward()
        optimizer.step()
    worst = float(lipschitz_ratios(module, x.detach(), y.detach()).max())
    assert worst <= certified
    # Random weights compose to well below the product of norms; the search must still find
    # ratios of the right order, or it would not test anything.
    assert worst > 0.1 * certified


@pytest.mark.parametrize("temperature", [0.05, 0.2, 1.0, 4.0])
def test_cross_entropy_constant_holds(temperature):
    compiled = lipc.compile_source(NETWORKS["digits_mlp"].replace("temperature=0.1", f"temperature={temperature}"))
    bound = compiled.checked.loss.lipschitz
    assert bound == pytest.approx(math.sqrt(2) / temperature)
    classes = compiled.num_classes
    generator = torch.Generator().manual_seed(4)

    random_logits = 20 * torch.randn(4096, classes, generator=generator)
    # Adversarial logits: all mass on one wrong class, which drives ‖p − e_y‖ towards sqrt(2).
    wrong = torch.full((classes * classes, classes), -1e4)
    labels = torch.arange(classes).repeat_interleave(classes)
    wrong[torch.arange(classes * classes), torch.arange(classes).repeat(classes)] = 1e4
    for logits, targets in ((random_logits, torch.arange(4096) % classes), (wrong, labels)):
        logits = logits.clone().requires_grad_()
        compiled.loss_function(logits, targets).sum().backward()
        worst = float(logits.grad.norm(dim=1).max())
        assert worst <= bound
    assert worst > 0.99 * bound, "the adversarial logits should reach the constant"


def test_bounds_tight_for_orthogonal_weights():
    """With orthogonal weights and GroupSort, the adversarial search reaches the bound almost exactly."""
    generator = torch.Generator().manual_seed(5)
    compiled = lipc.compile_source(NETWORKS["digits_mlp"])
    inputs = on_sphere(32, compiled.input_shape, compiled.input_clip_norm, generator)
    labels = all_labels(compiled, 32)
    for target, adversarial in adversarial_inputs(compiled, inputs, labels).items():
        worst = float(gradient_norms(compiled, adversarial, labels)[target].max())
        assert worst > 0.95 * compiled.sensitivities[target]
