"""Layer kinds of the language: their options, shapes and proven bounds.

Notation, per layer d mapping h_{d-1} to h_d: X bounds the ℓ2 norm of an example's
activation, l is the layer's Lipschitz constant (ℓ2 to ℓ2) with respect to its input,
and G bounds the norm of one example's loss gradient with respect to the layer's output.
Each layer gives l, the map X_{d-1} -> X_d, and the per-example gradient bound Δ of each
parameter tensor given X_{d-1} and G_d. The formulas follow Béthune et al.,
"DP-SGD Without Clipping: The Lipschitz Neural Network Way" (ICLR 2024).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from lipc.check.arguments import ArgumentReader, spec_error
from lipc.errors import Location, did_you_mean
from lipc.lang.syntax import LayerDecl, SpecFile

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Layer:
    """A checked layer: its kind, where it was declared, and its input and output shapes."""

    kind: str
    location: Location
    input_shape: Shape
    output_shape: Shape

    @property
    def lipschitz_bound(self) -> float:
        """The Lipschitz constant l that the layer is constrained to, whatever its weights."""
        return 1.0

    def output_norm_bound(self, input_norm_bound: float) -> float:
        return self.lipschitz_bound * input_norm_bound

    def parameter_sensitivities(self, input_norm_bound: float, output_gradient_bound: float) -> dict[str, float]:
        """Per-example gradient norm bound of each parameter tensor, by local name."""
        return {}

    def describe(self) -> str:
        return self.kind


@dataclass(frozen=True)
class InputLayer(Layer):
    """Projects each example onto the ball ‖x‖ ≤ clip_norm, so X_0 = clip_norm."""

    clip_norm: float

    def output_norm_bound(self, input_norm_bound: float) -> float:
        return min(self.clip_norm, input_norm_bound)

    def describe(self) -> str:
        return f"input clip_norm={self.clip_norm:g}"


@dataclass(frozen=True)
class Flatten(Layer):
    """A reshape: l = 1 and norms are unchanged."""


@dataclass(frozen=True)
class ReLU(Layer):
    """max(0, x): 1-Lipschitz with ReLU(0) = 0, so ‖ReLU(x)‖ ≤ ‖x‖."""


@dataclass(frozen=True)
class GroupSort(Layer):
    """Sorts each group of `group_size` consecutive channels: a permutation, so norms are kept."""

    group_size: int

    def describe(self) -> str:
        return f"groupsort {self.group_size}"


@dataclass(frozen=True)
class Dense(Layer):
    """y = W x (+ b) with ‖W‖₂ ≤ 1 and, with a bias, ‖b‖ ≤ bias_norm.

    Bounds: l = 1; X_d = X_{d-1} + bias_norm; Δ_W = G_d·X_{d-1} because the per-example
    gradient g xᵀ has Frobenius norm ‖g‖·‖x‖; Δ_b = G_d (the bias is added at one position).
    """

    bias_norm: float | None

    @property
    def in_features(self) -> int:
        return self.input_shape[0]

    @property
    def out_features(self) -> int:
        return self.output_shape[0]

    def output_norm_bound(self, input_norm_bound: float) -> float:
        return input_norm_bound + (self.bias_norm or 0.0)

    def parameter_sensitivities(self, input_norm_bound: float, output_gradient_bound: float) -> dict[str, float]:
        sensitivities = {"weight": output_gradient_bound * input_norm_bound}
        if self.bias_norm is not None:
            sensitivities["bias"] = output_gradient_bound
        return sensitivities

    def describe(self) -> str:
        bias = f" bias_norm={self.bias_norm:g}" if self.bias_norm is not None else ""
        return f"dense {self.out_features}{bias}"


LayerParser = Callable[[ArgumentReader, LayerDecl, Shape], Layer]


def _parse_input(reader: ArgumentReader, decl: LayerDecl, input_shape: Shape) -> Layer:
    shape = reader.shape("shape")
    clip_norm = reader.number("clip_norm", exclusive_minimum=0.0)
    return InputLayer("input", decl.location, shape, shape, clip_norm)


def _parse_flatten(reader: ArgumentReader, decl: LayerDecl, input_shape: Shape) -> Layer:
    return Flatten("flatten", decl.location, input_shape, (math.prod(input_shape),))


def _parse_relu(reader: ArgumentReader, decl: LayerDecl, input_shape: Shape) -> Layer:
    return ReLU("relu", decl.location, input_shape, input_shape)


def _parse_groupsort(reader: ArgumentReader, decl: LayerDecl, input_shape: Shape) -> Layer:
    group_size = reader.integer("group_size", 2, minimum=2)
    channels = input_shape[0]
    if channels % group_size:
        raise reader.error(
            reader.location_of("group_size"),
            f"groupsort {group_size} needs a channel count divisible by {group_size}, but its input has shape {list(input_shape)}",
            f"choose a group size that divides {channels}, or change the width of the layer before it",
        )
    return GroupSort("groupsort", decl.location, input_shape, input_shape, group_size)


def _parse_dense(reader: ArgumentReader, decl: LayerDecl, input_shape: Shape) -> Layer:
    width = reader.integer("width", minimum=1)
    bias_norm = reader.number("bias_norm", None, minimum=0.0)
    if len(input_shape) != 1:
        raise reader.error(
            decl.location,
            f"dense expects a flat vector, but its input has shape {list(input_shape)}",
            "add a 'flatten' layer before it",
        )
    return Dense("dense", decl.location, input_shape, (width,), bias_norm)


# For each layer kind: its parser, the options it may take positionally, and all its options.
LAYER_KINDS: dict[str, tuple[LayerParser, tuple[str, ...], tuple[str, ...]]] = {
    "input": (_parse_input, (), ("shape", "clip_norm")),
    "flatten": (_parse_flatten, (), ()),
    "relu": (_parse_relu, (), ()),
    "groupsort": (_parse_groupsort, ("group_size",), ("group_size",)),
    "dense": (_parse_dense, ("width",), ("width", "bias_norm")),
}

# Layers that practitioners reach for but that have no bound lipc can prove.
UNBOUNDED_LAYERS = {
    "batchnorm": "batch normalisation mixes examples within a batch, so no per-example bound holds; use 'centering' (planned) or remove it",
    "batch_norm": "batch normalisation mixes examples within a batch, so no per-example bound holds; remove it",
    "dropout": "dropout changes the network's scale between training and evaluation; remove it",
    "softmax": "apply no softmax inside the network: the loss takes logits",
}


def parse_layer(spec: SpecFile, decl: LayerDecl, input_shape: Shape) -> Layer:
    """Check one layer declaration against the shape that reaches it."""
    if decl.kind in UNBOUNDED_LAYERS:
        raise spec_error(spec, decl.location, f"layer '{decl.kind}' has no certified Lipschitz bound", UNBOUNDED_LAYERS[decl.kind])
    if decl.kind not in LAYER_KINDS:
        hint = did_you_mean(decl.kind, LAYER_KINDS) or f"the layers are {', '.join(sorted(LAYER_KINDS))}"
        raise spec_error(spec, decl.location, f"unknown layer '{decl.kind}'", hint)
    parser, positional, keywords = LAYER_KINDS[decl.kind]
    reader = ArgumentReader(spec, decl.kind, decl.location, decl.arguments, positional, keywords)
    return parser(reader, decl, input_shape)
