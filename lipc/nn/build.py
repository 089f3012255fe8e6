"""Build PyTorch modules and the loss from a checked spec."""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from lipc.check.checker import CheckedSpec
from lipc.check.layers import Dense, Flatten, GroupSort, InputLayer, Layer, ReLU
from lipc.check.losses import CrossEntropyLoss, Loss
from lipc.nn import modules


def _build_layer(layer: Layer) -> nn.Module:
    if isinstance(layer, InputLayer):
        return modules.ClipNorm(layer.clip_norm)
    if isinstance(layer, Flatten):
        return nn.Flatten()
    if isinstance(layer, ReLU):
        return nn.ReLU()
    if isinstance(layer, GroupSort):
        return modules.GroupSort(layer.group_size)
    if isinstance(layer, Dense):
        return modules.SpectralDense(layer.in_features, layer.out_features, layer.bias_norm)
    raise TypeError(f"no module for layer kind {layer.kind!r}")


def build_module(checked: CheckedSpec) -> modules.LipschitzSequential:
    """Build the network, with weights already projected onto their constraints."""
    network = modules.LipschitzSequential(OrderedDict((bound.name, _build_layer(bound.layer)) for bound in checked.layers))
    network.project_()
    return network


def build_loss(loss: Loss) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Return a function of (logits, labels) giving the per-example losses, unreduced."""
    if isinstance(loss, CrossEntropyLoss):
        temperature = loss.temperature
        return lambda logits, labels: F.cross_entropy(logits / temperature, labels, reduction="none")
    raise TypeError(f"no loss function for {loss.kind!r}")
