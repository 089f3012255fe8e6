"""Build PyTorch modules and the loss from a checked spec."""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Iterable

import torch
from torch import nn
from torch.nn import functional as F

from lipc.check import layers as checked_layers
from lipc.check.checker import CheckedSpec
from lipc.check.losses import (
    BinaryCrossEntropyLoss,
    CrossEntropyLoss,
    HingeKRLoss,
    HingeLoss,
    HuberLoss,
    Loss,
    SquaredErrorLoss,
)
from lipc.nn import modules


def _build_convolution(layer: checked_layers.Convolution) -> nn.Module:
    circular = layer.padding == "circular"
    fft_sizes = tuple(axis.size if circular else axis.padded_size for axis in layer.axes)
    return modules.LipschitzConv(
        layer.in_channels,
        layer.out_channels,
        layer.kernel_size,
        layer.stride,
        tuple((axis.pad_before, axis.pad_after) for axis in layer.axes),
        circular,
        fft_sizes,
        layer.max_coverage,
        layer.bias_norm,
        layer.constraint,
    )


def _build_layer(layer: checked_layers.Layer) -> nn.Module:
    if isinstance(layer, checked_layers.InputLayer):
        return modules.ClipNorm(layer.clip_norm)
    if isinstance(layer, checked_layers.Flatten):
        return nn.Flatten()
    if isinstance(layer, checked_layers.ReLU):
        return nn.ReLU()
    if isinstance(layer, checked_layers.Abs):
        return modules.Abs()
    if isinstance(layer, checked_layers.GroupSort):
        return modules.GroupSort(layer.group_size)
    if isinstance(layer, checked_layers.Dense):
        return modules.SpectralDense(layer.in_features, layer.out_features, layer.bias_norm, layer.constraint)
    if isinstance(layer, checked_layers.Convolution):
        return _build_convolution(layer)
    if isinstance(layer, checked_layers.Pooling):
        return modules.WindowPool(layer.kind, layer.window)
    if isinstance(layer, checked_layers.GlobalPooling):
        return modules.GlobalAvgPool(layer.positions) if layer.kind == "global_avgpool" else modules.GlobalL2Pool()
    if isinstance(layer, checked_layers.Centering):
        return modules.Centering(layer.mode)
    if isinstance(layer, checked_layers.Residual):
        return modules.Residual(layer.alpha, _build_sequence(layer.inner))
    raise TypeError(f"no module for layer kind {layer.kind!r}")


def _build_sequence(layers: Iterable[checked_layers.Layer]) -> modules.LipschitzSequential:
    """Name each module KIND_INDEX, the names that the sensitivities are keyed by."""
    return modules.LipschitzSequential(OrderedDict((f"{layer.kind}_{index}", _build_layer(layer)) for index, layer in enumerate(layers)))


def build_module(checked: CheckedSpec) -> modules.LipschitzSequential:
    """Build the network, with weights already projected onto their constraints."""
    network = modules.LipschitzSequential(OrderedDict((bound.name, _build_layer(bound.layer)) for bound in checked.layers))
    network.project_()
    return network


def _targets(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Regression targets as a float tensor shaped like the outputs."""
    return targets.to(outputs.dtype).reshape(outputs.shape)


def build_loss(loss: Loss) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Return a function of (logits, labels) giving the per-example losses, unreduced."""
    if isinstance(loss, CrossEntropyLoss):
        temperature = loss.temperature
        return lambda logits, labels: F.cross_entropy(logits / temperature, labels, reduction="none")

    if isinstance(loss, HingeLoss):
        margin = loss.margin

        def hinge(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            # A comparison rather than F.one_hot, which checks the label range and so breaks vmap.
            classes = torch.arange(logits.shape[1], device=logits.device)
            signs = 2.0 * (labels.unsqueeze(1) == classes).to(logits.dtype) - 1.0
            return F.relu(margin - signs * logits).mean(dim=1)

        return hinge

    if isinstance(loss, BinaryCrossEntropyLoss):
        temperature = loss.temperature

        def binary_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            # Clamping keeps |sigmoid(z/τ) − y| ≤ 1, and so the bound 1/τ, for any label value.
            targets = labels.to(logits.dtype).clamp(0.0, 1.0)
            return F.binary_cross_entropy_with_logits(logits[:, 0] / temperature, targets, reduction="none")

        return binary_cross_entropy

    if isinstance(loss, HingeKRLoss):
        alpha, margin = loss.alpha, loss.margin

        def hinge_kr(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            signs = 2.0 * labels.to(logits.dtype).clamp(0.0, 1.0) - 1.0
            margins = signs * logits[:, 0]
            return -margins + alpha * F.relu(margin - margins)

        return hinge_kr

    if isinstance(loss, SquaredErrorLoss):
        target_bound = loss.target_bound

        def squared_error(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            # Project each target onto ‖t‖ ≤ target_bound, which the constant L = X_D + target_bound needs.
            targets = _targets(outputs, targets)
            norms = targets.flatten(1).norm(dim=1, keepdim=True).clamp_min(1e-12)
            targets = targets * (target_bound / norms).clamp(max=1.0)
            return 0.5 * (outputs - targets).pow(2).sum(dim=1)

        return squared_error

    if isinstance(loss, HuberLoss):
        delta = loss.delta
        return lambda outputs, targets: F.huber_loss(outputs, _targets(outputs, targets), reduction="none", delta=delta).sum(dim=1)

    raise TypeError(f"no loss function for {loss.kind!r}")
