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

from lipc.check.arguments import ArgumentReader, describe_value, spec_error
from lipc.errors import Location, SpecError, did_you_mean
from lipc.lang.expand import use_notes
from lipc.lang.syntax import LayerDecl, ListValue, Number, SpecFile

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

    @property
    def has_parameters(self) -> bool:
        return False

    @property
    def parameter_elements(self) -> int:
        """The number of trainable values, over all parameter tensors."""
        return 0

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
    """Sorts each group of `group_size` consecutive channels: a permutation, so norms are kept.

    `fullsort` is the case group_size = channels and `maxmin` the case group_size = 2.
    """

    group_size: int

    def describe(self) -> str:
        if self.kind == "groupsort":
            return f"groupsort {self.group_size}"
        return self.kind


@dataclass(frozen=True)
class Abs(Layer):
    """|x|, elementwise: 1-Lipschitz and norm preserving."""


# Ways to keep a weight's operator norm at most 1. Both end in the certified normalisation
# W ← W / max(1, U(W)), where U(W) is a certified upper bound on the operator norm.
#   spectral: the normalisation alone.
#   bjorck: Björck orthogonalisation of the (reshaped) weight first, so that its singular
#           values are close to 1 and the layer is nearly gradient-norm preserving.
CONSTRAINTS = ("spectral", "bjorck")


@dataclass(frozen=True)
class Dense(Layer):
    """y = W x (+ b) with ‖W‖₂ ≤ 1 and, with a bias, ‖b‖ ≤ bias_norm.

    Bounds: l = 1; X_d = X_{d-1} + bias_norm; Δ_W = G_d·X_{d-1} because the per-example
    gradient g xᵀ has Frobenius norm ‖g‖·‖x‖; Δ_b = G_d (the bias is added at one position).
    """

    bias_norm: float | None
    constraint: str = "spectral"

    @property
    def in_features(self) -> int:
        return self.input_shape[0]

    @property
    def out_features(self) -> int:
        return self.output_shape[0]

    @property
    def has_parameters(self) -> bool:
        return True

    @property
    def parameter_elements(self) -> int:
        return self.in_features * self.out_features + (self.out_features if self.bias_norm is not None else 0)

    def output_norm_bound(self, input_norm_bound: float) -> float:
        return input_norm_bound + (self.bias_norm or 0.0)

    def parameter_sensitivities(self, input_norm_bound: float, output_gradient_bound: float) -> dict[str, float]:
        sensitivities = {"weight": output_gradient_bound * input_norm_bound}
        if self.bias_norm is not None:
            sensitivities["bias"] = output_gradient_bound
        return sensitivities

    def describe(self) -> str:
        bias = f" bias_norm={self.bias_norm:g}" if self.bias_norm is not None else ""
        constraint = f" constraint={self.constraint}" if self.constraint != "spectral" else ""
        return f"dense {self.out_features}{bias}{constraint}"


PADDINGS = ("same", "valid", "circular")


@dataclass(frozen=True)
class ConvolutionAxis:
    """The geometry of a convolution along one spatial axis: sizes, padding, and coverage.

    Output position p reads input positions p·stride + t − pad_before for t < kernel_size;
    with zero padding, positions outside [0, size) read zeros; with circular padding they
    wrap around. `max_coverage` is the largest number of (output position, kernel tap)
    pairs that read any single input position, counted exactly.
    """

    size: int
    kernel_size: int
    stride: int
    pad_before: int
    pad_after: int
    output_size: int
    max_coverage: int

    @property
    def padded_size(self) -> int:
        return self.size + self.pad_before + self.pad_after


def convolution_axis(size: int, kernel_size: int, stride: int, padding: str) -> ConvolutionAxis:
    """Geometry of one axis; `same` and `circular` give ⌈size/stride⌉ outputs, `valid` no padding."""
    if padding == "valid":
        output_size = (size - kernel_size) // stride + 1
        pad_before = pad_after = 0
    else:
        output_size = -(-size // stride)
        total = max((output_size - 1) * stride + kernel_size - size, 0)
        pad_before, pad_after = total // 2, total - total // 2

    coverage = [0] * size
    for position in range(output_size):
        for tap in range(kernel_size):
            index = position * stride + tap - pad_before
            if padding == "circular":
                coverage[index % size] += 1
            elif 0 <= index < size:
                coverage[index] += 1
    return ConvolutionAxis(size, kernel_size, stride, pad_before, pad_after, output_size, max(coverage))


@dataclass(frozen=True)
class Convolution(Layer):
    """A 1-D or 2-D convolution whose operator norm is at most 1, with an optional bias.

    The per-example gradient of the kernel is G·Patches, where row p of Patches is the input
    patch read at output position p. Σ_p ‖patch_p‖² = Σ_i coverage(i)·x_i² ≤ m·‖x‖², with m
    the largest coverage of any input position (zero padding lowers the average coverage,
    never the maximum). Hence Δ_K = sqrt(m)·G_d·X_{d-1}. The bias is added at P output
    positions: its forward contribution has norm sqrt(P)·‖b‖ and its gradient Σ_p g_p has
    norm at most sqrt(P)·G_d.
    """

    axes: tuple[ConvolutionAxis, ...]
    padding: str
    bias_norm: float | None
    constraint: str

    @property
    def in_channels(self) -> int:
        return self.input_shape[0]

    @property
    def out_channels(self) -> int:
        return self.output_shape[0]

    @property
    def kernel_size(self) -> tuple[int, ...]:
        return tuple(axis.kernel_size for axis in self.axes)

    @property
    def stride(self) -> tuple[int, ...]:
        return tuple(axis.stride for axis in self.axes)

    @property
    def max_coverage(self) -> int:
        """m: the largest number of output positions and taps that read one input position."""
        return math.prod(axis.max_coverage for axis in self.axes)

    @property
    def output_positions(self) -> int:
        """P: the number of output positions, at each of which the bias is added."""
        return math.prod(axis.output_size for axis in self.axes)

    @property
    def has_parameters(self) -> bool:
        return True

    @property
    def parameter_elements(self) -> int:
        kernel = self.out_channels * self.in_channels * math.prod(self.kernel_size)
        return kernel + (self.out_channels if self.bias_norm is not None else 0)

    def output_norm_bound(self, input_norm_bound: float) -> float:
        return input_norm_bound + math.sqrt(self.output_positions) * (self.bias_norm or 0.0)

    def parameter_sensitivities(self, input_norm_bound: float, output_gradient_bound: float) -> dict[str, float]:
        sensitivities = {"weight": math.sqrt(self.max_coverage) * output_gradient_bound * input_norm_bound}
        if self.bias_norm is not None:
            sensitivities["bias"] = math.sqrt(self.output_positions) * output_gradient_bound
        return sensitivities

    def describe(self) -> str:
        kernel = "x".join(str(k) for k in self.kernel_size)
        text = f"{self.kind} {self.out_channels} kernel={kernel}"
        if any(s != 1 for s in self.stride):
            text += " stride=" + "x".join(str(s) for s in self.stride)
        text += f" padding={self.padding}"
        if self.bias_norm is not None:
            text += f" bias_norm={self.bias_norm:g}"
        if self.constraint != "spectral":
            text += f" constraint={self.constraint}"
        return text


@dataclass(frozen=True)
class Pooling(Layer):
    """Pooling over non-overlapping windows (window = stride) on every spatial axis.

    Each input position lies in at most one window, so the layer is 1-Lipschitz when each
    window's map is. Max is 1-Lipschitz in ℓ∞ and so in ℓ2. The scaled average
    Σ_window x / sqrt(n) over n positions has gradient norm 1. The ℓ2 norm
    sqrt(Σ_window x² + ε) has gradient norm below 1. Positions past the last whole window
    are dropped, which is a projection.
    """

    window: int

    @property
    def windows(self) -> int:
        """The number of windows over all channels: one per output value."""
        return math.prod(self.output_shape)

    def output_norm_bound(self, input_norm_bound: float) -> float:
        if self.kind == "l2pool":
            # Each window adds ε under the square root: ‖y‖² ≤ ‖x‖² + ε·windows.
            return math.sqrt(input_norm_bound**2 + L2_POOL_EPSILON * self.windows)
        return input_norm_bound

    def describe(self) -> str:
        return f"{self.kind} {self.window}"


# Added under the square root of ℓ2-norm pooling, so that its gradient is defined at 0.
L2_POOL_EPSILON = 1e-12


@dataclass(frozen=True)
class GlobalPooling(Layer):
    """Pooling over all P spatial positions of each channel, to a vector of channels.

    global_avgpool: the mean has l = 1/sqrt(P), since |mean(v)| ≤ ‖v‖/sqrt(P).
    global_l2pool: sqrt(Σ v² + ε) per channel has l = 1 and ‖y‖² ≤ ‖x‖² + ε·channels.
    """

    @property
    def positions(self) -> int:
        return math.prod(self.input_shape[1:])

    @property
    def lipschitz_bound(self) -> float:
        if self.kind == "global_avgpool":
            return 1.0 / math.sqrt(self.positions)
        return 1.0

    def output_norm_bound(self, input_norm_bound: float) -> float:
        if self.kind == "global_l2pool":
            return math.sqrt(input_norm_bound**2 + L2_POOL_EPSILON * self.output_shape[0])
        return self.lipschitz_bound * input_norm_bound


@dataclass(frozen=True)
class Centering(Layer):
    """Subtracts a mean: per channel over its spatial positions, or over the whole example.

    Subtracting a mean is an orthogonal projection, so l = 1 and ‖y‖ ≤ ‖x‖.
    """

    mode: str

    def describe(self) -> str:
        return f"centering {self.mode}"


@dataclass(frozen=True)
class Residual(Layer):
    """y = (1 − α)·x + α·f(x), with f the inner layers, whose output shape equals the input's.

    Bounds: l = (1 − α) + α·l_f; X_d = (1 − α)·X_{d-1} + α·X_f, where X_f propagates X_{d-1}
    through f; the inner layers see α·G_d at the output of f and propagate it backward.
    """

    alpha: float
    inner: tuple[Layer, ...]

    @property
    def inner_lipschitz_bound(self) -> float:
        return math.prod(layer.lipschitz_bound for layer in self.inner)

    @property
    def lipschitz_bound(self) -> float:
        return (1.0 - self.alpha) + self.alpha * self.inner_lipschitz_bound

    @property
    def has_parameters(self) -> bool:
        return any(layer.has_parameters for layer in self.inner)

    @property
    def parameter_elements(self) -> int:
        return sum(layer.parameter_elements for layer in self.inner)

    def inner_input_norm_bounds(self, input_norm_bound: float) -> list[float]:
        """X before each inner layer, then X_f after the last one."""
        norms = [input_norm_bound]
        for layer in self.inner:
            norms.append(layer.output_norm_bound(norms[-1]))
        return norms

    def output_norm_bound(self, input_norm_bound: float) -> float:
        inner_output = self.inner_input_norm_bounds(input_norm_bound)[-1]
        return (1.0 - self.alpha) * input_norm_bound + self.alpha * inner_output

    def parameter_sensitivities(self, input_norm_bound: float, output_gradient_bound: float) -> dict[str, float]:
        norms = self.inner_input_norm_bounds(input_norm_bound)
        gradients = [0.0] * len(self.inner)
        gradient = self.alpha * output_gradient_bound
        for index in reversed(range(len(self.inner))):
            gradients[index] = gradient
            gradient *= self.inner[index].lipschitz_bound

        sensitivities = {}
        for index, (layer, name) in enumerate(zip(self.inner, self.inner_names())):
            for local, value in layer.parameter_sensitivities(norms[index], gradients[index]).items():
                sensitivities[f"{name}.{local}"] = value
        return sensitivities

    def inner_names(self) -> list[str]:
        """Return each inner layer's module name, relative to the residual block."""
        return [f"{INNER_MODULE_NAME}.{layer.kind}_{index}" for index, layer in enumerate(self.inner)]

    def describe(self) -> str:
        return f"residual alpha={self.alpha:g}"


# Name of a residual block's inner sequence in the compiled module.
INNER_MODULE_NAME = "inner"


LayerParser = Callable[[ArgumentReader, LayerDecl, Shape], Layer]


def _parse_input(reader: ArgumentReader, decl: LayerDecl, input_shape: Shape) -> Layer:
    if not reader.has("clip_norm"):
        raise reader.error(
            decl.location,
            "input needs the option 'clip_norm': without a radius onto which each input is projected, "
            "no input norm is bounded, and neither is any sensitivity",
            "add clip_norm=C, as in 'input shape=[64] clip_norm=1.0'",
        )
    shape = reader.shape("shape")
    clip_norm = reader.number("clip_norm", exclusive_minimum=0.0)
    return InputLayer("input", decl.location, shape, shape, clip_norm)


def _parse_flatten(reader: ArgumentReader, decl: LayerDecl, input_shape: Shape) -> Layer:
    return Flatten("flatten", decl.location, input_shape, (math.prod(input_shape),))


def _parse_relu(reader: ArgumentReader, decl: LayerDecl, input_shape: Shape) -> Layer:
    return ReLU("relu", decl.location, input_shape, input_shape)


def _parse_abs(reader: ArgumentReader, decl: LayerDecl, input_shape: Shape) -> Layer:
    return Abs("abs", decl.location, input_shape, input_shape)


def _check_group_size(reader: ArgumentReader, kind: str, group_size: int, input_shape: Shape, option: str | None) -> None:
    channels = input_shape[0]
    if channels % group_size:
        raise reader.error(
            reader.location_of(option) if option else reader.location,
            f"{kind} {group_size} needs a channel count divisible by {group_size}, but its input has shape {list(input_shape)}"
            if kind == "groupsort"
            else f"{kind} needs an even channel count, but its input has shape {list(input_shape)}",
            f"choose a group size that divides {channels}, or change the width of the layer before it"
            if kind == "groupsort"
            else "change the width of the layer before it",
        )


def _parse_groupsort(reader: ArgumentReader, decl: LayerDecl, input_shape: Shape) -> Layer:
    group_size = reader.integer("group_size", 2, minimum=2)
    _check_group_size(reader, "groupsort", group_size, input_shape, "group_size")
    return GroupSort("groupsort", decl.location, input_shape, input_shape, group_size)


def _parse_maxmin(reader: ArgumentReader, decl: LayerDecl, input_shape: Shape) -> Layer:
    _check_group_size(reader, "maxmin", 2, input_shape, None)
    return GroupSort("maxmin", decl.location, input_shape, input_shape, 2)


def _parse_fullsort(reader: ArgumentReader, decl: LayerDecl, input_shape: Shape) -> Layer:
    return GroupSort("fullsort", decl.location, input_shape, input_shape, input_shape[0])


def _parse_dense(reader: ArgumentReader, decl: LayerDecl, input_shape: Shape) -> Layer:
    width = reader.integer("width", minimum=1)
    bias_norm = reader.number("bias_norm", None, minimum=0.0)
    constraint = reader.choice("constraint", CONSTRAINTS, "spectral")
    if len(input_shape) != 1:
        raise reader.error(
            decl.location,
            f"dense expects a flat vector, but its input has shape {list(input_shape)}",
            "add a 'flatten' layer before it",
        )
    return Dense("dense", decl.location, input_shape, (width,), bias_norm, constraint)


def _spatial_sizes(reader: ArgumentReader, decl: LayerDecl, input_shape: Shape, dimensions: int | None) -> tuple[int, ...]:
    """Return the spatial sizes of a channels-first input with `dimensions` spatial axes (None: 1 or 2)."""
    allowed = (dimensions,) if dimensions else (1, 2)
    if len(input_shape) - 1 not in allowed:
        expected = " or ".join(f"[channels{', length' if d == 1 else ', height, width'}]" for d in allowed)
        raise reader.error(
            decl.location,
            f"{decl.kind} expects an input of shape {expected}, but its input has shape {list(input_shape)}",
            "declare the input channels first, as in 'input shape=[1, 28, 28]' or 'input shape=[1, 40]'",
        )
    return input_shape[1:]


def _per_axis(reader: ArgumentReader, name: str, default: int, dimensions: int) -> tuple[int, ...]:
    """Read a whole number for every axis, or a list with one per axis."""
    if reader.has(name) and isinstance(reader.values[name].value, ListValue):
        items = reader.values[name].value.items
        valid = len(items) == dimensions and all(isinstance(i, Number) and isinstance(i.value, int) and i.value >= 1 for i in items)
        if not valid:
            raise reader.error(
                reader.location_of(name),
                f"{reader.owner} option '{name}' must be a positive whole number or a list of {dimensions}, not {describe_value(reader.values[name].value)}",
                f"write {name}=3, or one whole number per spatial axis" + (", as in [3, 3]" if dimensions == 2 else ""),
            )
        return tuple(i.value for i in items)
    return (reader.integer(name, default, minimum=1),) * dimensions


def _convolution_parser(dimensions: int) -> LayerParser:
    def parse(reader: ArgumentReader, decl: LayerDecl, input_shape: Shape) -> Layer:
        channels = reader.integer("channels", minimum=1)
        sizes = _spatial_sizes(reader, decl, input_shape, dimensions)
        kernel = _per_axis(reader, "kernel", DEFAULT_KERNEL_SIZE, dimensions)
        stride = _per_axis(reader, "stride", 1, dimensions)
        padding = reader.choice("padding", PADDINGS, "same")
        bias_norm = reader.number("bias_norm", None, minimum=0.0)
        constraint = reader.choice("constraint", CONSTRAINTS, "spectral")

        for size, kernel_size in zip(sizes, kernel):
            if padding != "same" and kernel_size > size:
                raise reader.error(
                    reader.location_of("kernel"),
                    f"{decl.kind} kernel {kernel_size} is larger than its input size {size} with {padding} padding",
                    "use a smaller kernel, or padding=same",
                )
        # Checked before the geometry, whose coverage count takes size·kernel steps per axis.
        kernel_elements = channels * input_shape[0] * math.prod(kernel)
        _check_tensor_size(reader, decl, f"its kernel of shape {[channels, input_shape[0], *kernel]}", kernel_elements)
        for size, kernel_size in zip(sizes, kernel):
            _check_tensor_size(reader, decl, f"its coverage count on an axis of size {size} with kernel {kernel_size}", size * kernel_size)
        axes = tuple(convolution_axis(n, k, s, padding) for n, k, s in zip(sizes, kernel, stride))
        output_shape = (channels, *(axis.output_size for axis in axes))
        # The FFT certificate of the operator norm holds c_out·c_in blocks on the padded grid.
        spectrum_elements = channels * input_shape[0] * math.prod(axis.padded_size for axis in axes)
        _check_tensor_size(reader, decl, "the spectrum that certifies its operator norm", spectrum_elements)
        return Convolution(decl.kind, decl.location, input_shape, output_shape, axes, padding, bias_norm, constraint)

    return parse


DEFAULT_KERNEL_SIZE = 3

# The maximum number of values in one tensor of a layer: a parameter tensor, the activation of
# one example, or a work array of the checker or of the operator-norm certificate. It is a
# sanity limit (2**28 float32 values take 1 GiB) that turns a mistyped width or shape into an
# error here rather than an allocation failure or hours of work when the network is built.
MAX_TENSOR_ELEMENTS = 2**28


def _check_tensor_size(reader: ArgumentReader, decl: LayerDecl, what: str, elements: int) -> None:
    if elements > MAX_TENSOR_ELEMENTS:
        raise reader.error(
            decl.location,
            f"{decl.kind} is too large: {what} would hold {elements:,} values, more than the limit of {MAX_TENSOR_ELEMENTS:,}",
            "check the widths, channels, kernel size and input shape",
        )


def _parse_pooling(reader: ArgumentReader, decl: LayerDecl, input_shape: Shape) -> Layer:
    window = reader.integer("window", minimum=1)
    stride = reader.integer("stride", window, minimum=1)
    sizes = _spatial_sizes(reader, decl, input_shape, None)
    if stride != window:
        reason = (
            "overlapping max pooling reads an input position in several windows, and lipc proves bounds only for window = stride"
            if decl.kind == "maxpool" and stride < window
            else f"{decl.kind} is bounded here only with window = stride"
        )
        raise reader.error(reader.location_of("stride"), f"{decl.kind} {window} with stride={stride} is not supported: {reason}", f"remove stride, or set stride={window}")
    if any(size < window for size in sizes):
        raise reader.error(
            reader.location_of("window"),
            f"{decl.kind} {window} needs spatial sizes of at least {window}, but its input has shape {list(input_shape)}",
            f"use a window of at most {min(sizes)}, or remove the layer",
        )
    output_shape = (input_shape[0], *(size // window for size in sizes))
    return Pooling(decl.kind, decl.location, input_shape, output_shape, window)


def _parse_global_pooling(reader: ArgumentReader, decl: LayerDecl, input_shape: Shape) -> Layer:
    _spatial_sizes(reader, decl, input_shape, None)
    return GlobalPooling(decl.kind, decl.location, input_shape, (input_shape[0],))


def _parse_centering(reader: ArgumentReader, decl: LayerDecl, input_shape: Shape) -> Layer:
    mode = reader.choice("mode", ("channel", "layer"), "layer")
    if mode == "channel" and len(input_shape) < 2:
        raise reader.error(
            reader.location_of("mode"),
            f"centering channel needs spatial positions, but its input has shape {list(input_shape)}",
            "use 'centering layer' on a flat vector",
        )
    return Centering("centering", decl.location, input_shape, input_shape, mode)


def _parse_residual(reader: ArgumentReader, decl: LayerDecl, input_shape: Shape) -> Layer:
    alpha = reader.number("alpha", exclusive_minimum=0.0, maximum=1.0)
    if not decl.body:
        raise reader.error(decl.location, "residual needs a block of inner layers", "write 'residual alpha=0.5 {', the inner layers one per line, then '}'")

    inner = []
    shape = input_shape
    for inner_decl in decl.body:
        if inner_decl.kind == "input":
            raise reader.error(inner_decl.location, "an 'input' layer cannot be inside a residual block", "declare the input once, at the top of the network")
        layer = parse_layer(reader.spec, inner_decl, shape)
        inner.append(layer)
        shape = layer.output_shape
    if shape != input_shape:
        raise reader.error(
            decl.location,
            f"the inner layers of a residual block must keep the shape {list(input_shape)}, but they output shape {list(shape)}",
            "make the inner layers keep the number of channels and the spatial size (stride 1, padding=same)",
        )
    return Residual("residual", decl.location, input_shape, input_shape, alpha, tuple(inner))


# For each layer kind: its parser, the options it may take positionally, and all its options.
LAYER_KINDS: dict[str, tuple[LayerParser, tuple[str, ...], tuple[str, ...]]] = {
    "input": (_parse_input, (), ("shape", "clip_norm")),
    "flatten": (_parse_flatten, (), ()),
    "relu": (_parse_relu, (), ()),
    "abs": (_parse_abs, (), ()),
    "groupsort": (_parse_groupsort, ("group_size",), ("group_size",)),
    "maxmin": (_parse_maxmin, (), ()),
    "fullsort": (_parse_fullsort, (), ()),
    "dense": (_parse_dense, ("width",), ("width", "bias_norm", "constraint")),
    "conv1d": (_convolution_parser(1), ("channels",), ("channels", "kernel", "stride", "padding", "bias_norm", "constraint")),
    "conv2d": (_convolution_parser(2), ("channels",), ("channels", "kernel", "stride", "padding", "bias_norm", "constraint")),
    "maxpool": (_parse_pooling, ("window",), ("window", "stride")),
    "avgpool": (_parse_pooling, ("window",), ("window", "stride")),
    "l2pool": (_parse_pooling, ("window",), ("window", "stride")),
    "global_avgpool": (_parse_global_pooling, (), ()),
    "global_l2pool": (_parse_global_pooling, (), ()),
    "centering": (_parse_centering, ("mode",), ("mode",)),
    "residual": (_parse_residual, ("alpha",), ("alpha",)),
}

# Layers that practitioners reach for but that have no bound lipc can prove: the reason, and
# what to write instead.
UNBOUNDED_LAYERS = {
    "batchnorm": ("batch normalisation mixes the examples of a batch, so no per-example bound holds", "use 'centering', which subtracts a mean within each example, or remove it"),
    "batch_norm": ("batch normalisation mixes the examples of a batch, so no per-example bound holds", "use 'centering', which subtracts a mean within each example, or remove it"),
    "dropout": ("dropout rescales activations by 1/(1 − p) in training, which breaks the bound of 1", "remove it: the Lipschitz constraint already regularises the network"),
    "softmax": ("the loss applies its own softmax to the logits", "remove it: end the network with the logits"),
    "exp": ("exp has no Lipschitz constant on the real line", "use 'groupsort 2', 'abs' or 'relu'"),
    "square": ("x² has no Lipschitz constant on the real line", "use 'groupsort 2', 'abs' or 'relu'"),
    "layernorm": ("layer normalisation divides by the example's own norm, which has no Lipschitz bound near 0", "use 'centering layer'"),
}

# Activations that lipc does not implement, although some of them are 1-Lipschitz: the hint
# names the layers that take their place.
MISSING_ACTIVATIONS = ("sigmoid", "tanh", "relu6", "leaky_relu", "prelu", "elu", "selu", "gelu", "silu", "swish", "softplus", "mish")
ACTIVATION_HINT = "use 'groupsort 2' (or 'maxmin'), which is 1-Lipschitz and keeps gradient norms; 'abs' and 'relu' are 1-Lipschitz too"


def check_layer_kind(spec: SpecFile, decl: LayerDecl) -> None:
    """Reject a layer kind that is unknown or has no certified bound."""
    if decl.kind in UNBOUNDED_LAYERS:
        reason, hint = UNBOUNDED_LAYERS[decl.kind]
        raise spec_error(spec, decl.location, f"layer '{decl.kind}' has no certified Lipschitz bound: {reason}", hint)
    if decl.kind in MISSING_ACTIVATIONS:
        raise spec_error(spec, decl.location, f"lipc has no '{decl.kind}' activation", ACTIVATION_HINT)
    if decl.kind not in LAYER_KINDS:
        names = list(LAYER_KINDS) + [block.name for block in spec.blocks] + ["repeat"]
        hint = did_you_mean(decl.kind, names) or f"the layers are {', '.join(sorted(LAYER_KINDS))}"
        raise spec_error(spec, decl.location, f"unknown layer '{decl.kind}'", hint)


def check_layer_options(spec: SpecFile, decl: LayerDecl) -> None:
    """Check what does not depend on the input shape: the kind, the option names and the inner layers' too."""
    check_layer_kind(spec, decl)
    if decl.body is not None and decl.kind != "residual":
        raise spec_error(spec, decl.location, f"layer '{decl.kind}' takes no block of inner layers", "only 'residual' has a block; remove the braces")
    _, positional, keywords = LAYER_KINDS[decl.kind]
    ArgumentReader(spec, decl.kind, decl.location, decl.arguments, positional, keywords)
    for inner in decl.body or ():
        check_layer_options(spec, inner)


def parse_layer(spec: SpecFile, decl: LayerDecl, input_shape: Shape) -> Layer:
    """Check one layer declaration against the shape that reaches it."""
    try:
        check_layer_kind(spec, decl)
        if decl.body is not None and decl.kind != "residual":
            raise spec_error(spec, decl.location, f"layer '{decl.kind}' takes no block of inner layers", "only 'residual' has a block; remove the braces")
        parser, positional, keywords = LAYER_KINDS[decl.kind]
        reader = ArgumentReader(spec, decl.kind, decl.location, decl.arguments, positional, keywords)
        layer = parser(reader, decl, input_shape)
        if not isinstance(layer, Residual):
            _check_tensor_size(reader, decl, "its parameters", layer.parameter_elements)
        _check_tensor_size(reader, decl, f"its output of shape {list(layer.output_shape)}", math.prod(layer.output_shape))
        return layer
    except SpecError as error:
        # Point from a layer inside a block to the lines that used the block.
        if decl.used_at and not error.notes:
            error.with_notes(use_notes(spec, decl.used_at))
        raise
