"""Layer-level bounds: each layer's certified constants against exact or searched values.

Convolutions are small enough here to build their full Jacobian, so their exact operator
norm (an SVD) and their exact per-example kernel-gradient factor can be compared with the
certified bounds. Non-linear layers are checked through Jacobians at random points and
Lipschitz ratios of nearby and distant pairs.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.func import functional_call, jacrev

import lipc
from lipc.check import layers as checked_layers
from lipc.nn.modules import LipschitzConv, fft_operator_norm, reshaped_kernel_bound, spectral_norm_upper_bound


def exact_operator_norm(matrix: torch.Tensor) -> float:
    """Largest singular value from a float64 SVD, with no slack added."""
    return float(torch.linalg.svdvals(matrix.detach().double())[0])


# (input shape, convolution declaration): every padding, strides, kernel sizes, 1-D and 2-D.
CONVOLUTIONS = [
    ([2, 7, 7], "conv2d 3 kernel=3 padding=same"),
    ([2, 7, 7], "conv2d 3 kernel=3 stride=2 padding=same bias_norm=0.5"),
    ([2, 6, 5], "conv2d 3 kernel=[2, 3] stride=[1, 2] padding=valid"),
    ([1, 6, 6], "conv2d 2 kernel=5 padding=same"),
    ([1, 6, 6], "conv2d 2 kernel=4 stride=3 padding=same"),
    ([2, 5, 6], "conv2d 2 kernel=3 padding=circular bias_norm=1.0"),
    ([2, 5, 6], "conv2d 2 kernel=3 stride=2 padding=circular"),
    ([1, 4, 4], "conv2d 3 kernel=1 padding=valid constraint=bjorck"),
    ([3, 11], "conv1d 2 kernel=5 stride=2 padding=valid bias_norm=0.2"),
    ([3, 11], "conv1d 4 kernel=4 padding=same constraint=bjorck"),
    ([2, 9], "conv1d 2 kernel=3 stride=3 padding=circular"),
    ([1, 9], "conv1d 1 kernel=5 padding=valid"),
]

CONVOLUTION_IDS = [f"{shape}-{decl}" for shape, decl in CONVOLUTIONS]


def compile_layer(input_shape, declaration: str, loss: str = "cross_entropy"):
    """Compile `input → declaration → flatten → dense 2` and return the network and the layer."""
    source = f"network n {{\n    input shape={input_shape} clip_norm=1.0\n    {declaration}\n    flatten\n    dense 2\n}}\nloss {loss}\n"
    compiled = lipc.compile_source(source)
    return compiled, compiled.checked.layers[1].layer, compiled.module[1]


def randomise(module, generator, scale: float = 1.0):
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(scale * torch.randn(parameter.shape, generator=generator))


def linear_map_matrix(function, input_shape) -> torch.Tensor:
    """The matrix of a linear map of one example, built column by column from its Jacobian."""
    x = torch.zeros(1, *input_shape, dtype=torch.float64)
    jacobian = jacrev(function)(x)
    outputs = jacobian.shape[: jacobian.dim() - x.dim()]
    return jacobian.reshape(math.prod(outputs), -1)


def convolution_without_bias(module: LipschitzConv):
    def apply(x):
        bias, module.bias = module.bias, None
        try:
            return module(x)
        finally:
            module.bias = bias

    return apply


@pytest.mark.parametrize("input_shape, declaration", CONVOLUTIONS, ids=CONVOLUTION_IDS)
def test_convolution_output_shape(input_shape, declaration):
    _, layer, module = compile_layer(input_shape, declaration)
    output = module(torch.zeros(1, *input_shape))
    assert tuple(output.shape[1:]) == layer.output_shape


@pytest.mark.parametrize("input_shape, declaration", CONVOLUTIONS, ids=CONVOLUTION_IDS)
def test_convolution_bounds_above_exact_norm(input_shape, declaration):
    generator = torch.Generator().manual_seed(0)
    _, layer, module = compile_layer(input_shape, declaration)
    module.double()
    randomise(module, generator)
    exact = exact_operator_norm(linear_map_matrix(convolution_without_bias(module), input_shape))
    bounds = module.operator_norm_bounds()
    assert bounds["reshaped kernel"] >= exact * (1 - 1e-9)
    assert bounds["FFT"] >= exact * (1 - 1e-9)

    module.project_()
    projected = spectral_norm_upper_bound(linear_map_matrix(convolution_without_bias(module), input_shape))
    assert projected <= layer.lipschitz_bound


@pytest.mark.parametrize("declaration", ["conv2d 3 kernel=3 padding=circular", "conv2d 2 kernel=[1, 3] padding=circular"])
def test_fft_bound_exact_for_circular(declaration):
    generator = torch.Generator().manual_seed(1)
    _, _, module = compile_layer([2, 5, 6], declaration)
    module.double()
    randomise(module, generator)
    exact = exact_operator_norm(linear_map_matrix(convolution_without_bias(module), [2, 5, 6]))
    assert module.operator_norm_bounds()["FFT"] == pytest.approx(exact, rel=1e-9)


@pytest.mark.parametrize(
    "input_shape, declaration",
    [
        ([2, 7, 6], "conv2d 3 kernel=3 padding=same bias_norm=1"),
        ([2, 7, 6], "conv2d 3 kernel=[2, 3] padding=same"),
        ([2, 8, 8], "conv2d 3 kernel=3 stride=2 padding=same"),
        ([2, 7, 6], "conv2d 3 kernel=3 padding=circular"),
        ([2, 9], "conv1d 3 kernel=4 padding=same"),
    ],
)
def test_convolution_matches_explicit_padding(input_shape, declaration):
    generator = torch.Generator().manual_seed(2)
    _, _, module = compile_layer(input_shape, declaration)
    randomise(module, generator)
    x = torch.randn(3, *input_shape, generator=generator)
    # F.pad lists the last axis first.
    amounts = [amount for before_after in reversed(module.padding) for amount in before_after]
    padded = torch.nn.functional.pad(x, amounts, mode="circular" if module.circular else "constant")
    function = torch.nn.functional.conv1d if len(input_shape) == 2 else torch.nn.functional.conv2d
    expected = function(padded, module.weight, module.bias, stride=module.stride)
    torch.testing.assert_close(module(x), expected)


def convolve(module: LipschitzConv, kernel: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The module's convolution, padding and stride, with `kernel` and no bias."""
    return module.convolve(x, kernel)


def search_kernel_gradient_factor(module: LipschitzConv, input_shape, generator, restarts: int = 6, iterations: int = 60) -> float:
    """Search sup ‖∇_K ⟨g, conv_K(x)⟩‖ over unit x and unit output gradients g.

    That norm equals sup over unit kernels V of the trilinear form ⟨g, conv_V(x)⟩. The search
    maximises it one argument at a time, from a constant start and from random ones. Each step
    is linear in its argument, so the value never decreases. The result is a lower bound on the
    supremum, so a value above the certified factor would break the bound.
    """
    weight_shape = module.weight.shape
    best = 0.0
    for restart in range(restarts):
        if restart == 0:
            x = torch.ones(1, *input_shape, dtype=torch.float64)
            kernel = torch.ones(weight_shape, dtype=torch.float64)
        else:
            x = torch.randn(1, *input_shape, generator=generator, dtype=torch.float64)
            kernel = torch.randn(weight_shape, generator=generator, dtype=torch.float64)
        x, kernel = x / x.norm(), kernel / kernel.norm()
        for _ in range(iterations):
            g = convolve(module, kernel, x)
            g = g / g.norm().clamp_min(1e-300)
            x = x.requires_grad_()
            (x_direction,) = torch.autograd.grad((g * convolve(module, kernel, x)).sum(), x)
            x = (x_direction / x_direction.norm().clamp_min(1e-300)).detach()
            kernel = kernel.requires_grad_()
            (kernel_direction,) = torch.autograd.grad((g * convolve(module, kernel, x)).sum(), kernel)
            kernel = (kernel_direction / kernel_direction.norm().clamp_min(1e-300)).detach()
        with torch.no_grad():
            best = max(best, float(convolve(module, kernel, x).norm()))
    return best


@pytest.mark.parametrize("input_shape, declaration", CONVOLUTIONS, ids=CONVOLUTION_IDS)
def test_kernel_gradient_within_coverage_bound(input_shape, declaration):
    generator = torch.Generator().manual_seed(2)
    _, layer, module = compile_layer(input_shape, declaration)
    module.double()
    bound = layer.parameter_sensitivities(1.0, 1.0)["weight"]
    worst = search_kernel_gradient_factor(module, input_shape, generator)
    assert worst <= bound * (1 + 1e-9)


@pytest.mark.parametrize("input_shape, declaration", [c for c in CONVOLUTIONS if "bias_norm" in c[1]])
def test_bias_gradient_factor_is_sqrt_positions(input_shape, declaration):
    _, layer, module = compile_layer(input_shape, declaration)
    module.double()
    weight = module.weight.detach()
    x = torch.zeros(1, *input_shape, dtype=torch.float64)

    def output(bias):
        return functional_call(module, {"weight": weight, "bias": bias}, (x,)).flatten()

    jacobian = jacrev(output)(module.bias.detach())
    exact = float(torch.linalg.matrix_norm(jacobian, ord=2))
    assert exact == pytest.approx(math.sqrt(layer.output_positions))
    assert layer.parameter_sensitivities(1.0, 1.0)["bias"] == pytest.approx(exact)


def test_max_coverage_of_axes():
    assert checked_layers.convolution_axis(7, 3, 1, "same").max_coverage == 3
    assert checked_layers.convolution_axis(7, 3, 2, "same").max_coverage == 2
    assert checked_layers.convolution_axis(9, 5, 1, "valid").max_coverage == 5
    # Outputs 0, 2 and 4 read {0, 1}, {2, 3} and {4, 0}: the wrap-around reads position 0
    # twice, once more than ⌈kernel/stride⌉ = 1.
    assert checked_layers.convolution_axis(5, 2, 2, "circular").max_coverage == 2
    assert checked_layers.convolution_axis(5, 3, 2, "circular").max_coverage == 2


def test_output_sizes_of_axes():
    assert checked_layers.convolution_axis(7, 3, 2, "same").output_size == 4
    assert checked_layers.convolution_axis(7, 3, 2, "valid").output_size == 3
    assert checked_layers.convolution_axis(6, 4, 3, "circular").output_size == 2


# Regression tests for bounds that published implementations got wrong.

def test_bias_bound_counts_positions():
    """A bias broadcast over P positions has gradient norm up to sqrt(P)·G, not G."""
    compiled, layer, _ = compile_layer([1, 4, 4], "conv2d 1 kernel=1 bias_norm=1.0", "cross_entropy temperature=1")
    module = compiled.module
    positions = layer.output_positions
    # The dense layer reads the mean direction of the feature map, so the loss gradient is the
    # same at every position and the bias gradient sums P equal terms.
    with torch.no_grad():
        module[3].weight.copy_(torch.stack([torch.ones(positions), -torch.ones(positions)]) / math.sqrt(2 * positions))
        module[1].weight.fill_(1.0)
    compiled.module.project_()
    inputs = torch.zeros(2, 1, 4, 4)
    inputs[:, 0, 0, 0] = 1.0
    labels = torch.tensor([0, 1])

    logits = module(inputs)
    gradients = []
    for index in range(2):
        module.zero_grad()
        compiled.loss_function(logits[index : index + 1], labels[index : index + 1]).sum().backward(retain_graph=True)
        gradients.append(float(module[1].bias.grad.norm()))
    bound = compiled.sensitivities["conv2d_1.bias"]
    output_gradient_bound = compiled.checked.layers[1].output_gradient_bound
    assert max(gradients) > 1.5 * output_gradient_bound, "the single-position bound G would be broken"
    assert max(gradients) <= bound
    assert layer.output_norm_bound(1.0) == pytest.approx(1.0 + math.sqrt(positions))


def test_kernel_bound_uses_maximum_coverage():
    """Zero padding lowers the average coverage of input positions, never the maximum m."""
    generator = torch.Generator().manual_seed(3)
    _, layer, module = compile_layer([1, 9], "conv1d 1 kernel=5 padding=valid")
    module.double()
    axis = layer.axes[0]
    mean_coverage = axis.output_size * axis.kernel_size / axis.size
    worst = search_kernel_gradient_factor(module, [1, 9], generator)
    assert worst > math.sqrt(mean_coverage), "a bound with the mean coverage would be broken"
    assert worst <= layer.parameter_sensitivities(1.0, 1.0)["weight"]


def test_power_iteration_underestimates():
    """A few power iterations give a lower bound on ‖W‖₂; the projection uses exact singular values."""
    generator = torch.Generator().manual_seed(4)
    singular_values = torch.tensor([1.0, 0.99, 0.98, 0.97], dtype=torch.float64) * 3.0
    left, _ = torch.linalg.qr(torch.randn(4, 4, generator=generator, dtype=torch.float64))
    right, _ = torch.linalg.qr(torch.randn(4, 4, generator=generator, dtype=torch.float64))
    matrix = left @ torch.diag(singular_values) @ right.T
    vector = torch.randn(4, generator=generator, dtype=torch.float64)
    for _ in range(3):
        vector = matrix.T @ (matrix @ vector)
        vector = vector / vector.norm()
    estimate = float((matrix @ vector).norm())
    assert estimate < 3.0
    assert spectral_norm_upper_bound(matrix) == pytest.approx(3.0, rel=1e-8)

    compiled, _, _ = compile_layer([4], "dense 4")
    with torch.no_grad():
        compiled.module[1].weight.copy_(matrix.float())
    compiled.module.project_()
    assert spectral_norm_upper_bound(compiled.module[1].weight) <= 1.0


def test_bjorck_ends_certified():
    generator = torch.Generator().manual_seed(5)
    compiled, _, module = compile_layer([6, 6, 6], "conv2d 6 kernel=3 constraint=bjorck")
    randomise(module, generator, scale=10.0)
    module.project_()
    assert module.certified_lipschitz() <= 1.0
    assert reshaped_kernel_bound(module.weight, module.max_coverage) >= module.certified_lipschitz()
    assert fft_operator_norm(module.weight, module.fft_sizes) <= 1.0


def test_bjorck_dense_nearly_orthogonal():
    generator = torch.Generator().manual_seed(6)
    compiled, _, _ = compile_layer([8], "dense 8 constraint=bjorck")
    dense = compiled.module[1]
    randomise(dense, generator)
    dense.project_()
    singular_values = torch.linalg.svdvals(dense.weight.detach().double())
    assert float(singular_values.max()) <= 1.0
    assert float(singular_values.min()) > 0.9


# (input shape, declaration): the layers without parameters.
ACTIVATIONS_AND_POOLING = [
    ([4, 6, 6], "groupsort 2"),
    ([6, 5], "groupsort 3"),
    ([4, 3, 3], "maxmin"),
    ([5, 4], "fullsort"),
    ([3, 4, 4], "abs"),
    ([3, 4, 4], "relu"),
    ([2, 6, 6], "maxpool 2"),
    ([2, 7, 7], "maxpool 3"),
    ([2, 6, 6], "avgpool 2"),
    ([2, 9], "avgpool 3"),
    ([2, 6, 6], "l2pool 2"),
    ([2, 8], "l2pool 4"),
    ([3, 4, 4], "global_avgpool"),
    ([3, 10], "global_avgpool"),
    ([3, 4, 4], "global_l2pool"),
    ([3, 4, 4], "centering channel"),
    ([3, 4, 4], "centering layer"),
    ([6], "centering"),
    ([2, 3, 3], "flatten"),
]

ACTIVATION_IDS = [f"{shape}-{decl}" for shape, decl in ACTIVATIONS_AND_POOLING]


def compile_parameterless(input_shape, declaration):
    flatten = "" if declaration == "flatten" else "\n    flatten"
    source = f"network n {{\n    input shape={input_shape} clip_norm=1.0\n    {declaration}{flatten}\n    dense 2\n}}\nloss cross_entropy\n"
    compiled = lipc.compile_source(source)
    return compiled.checked.layers[1].layer, compiled.module[1].double()


@pytest.mark.parametrize("input_shape, declaration", ACTIVATIONS_AND_POOLING, ids=ACTIVATION_IDS)
def test_layer_jacobian_within_lipschitz_bound(input_shape, declaration):
    generator = torch.Generator().manual_seed(7)
    layer, module = compile_parameterless(input_shape, declaration)
    for _ in range(8):
        x = torch.randn(1, *input_shape, generator=generator, dtype=torch.float64)
        jacobian = jacrev(module)(x).reshape(math.prod(layer.output_shape), -1)
        assert exact_operator_norm(jacobian) <= layer.lipschitz_bound * (1 + 1e-9)
    if hasattr(module, "certified_lipschitz"):
        assert module.certified_lipschitz() == pytest.approx(layer.lipschitz_bound)


@pytest.mark.parametrize("input_shape, declaration", ACTIVATIONS_AND_POOLING, ids=ACTIVATION_IDS)
def test_layer_ratios_within_lipschitz_bound(input_shape, declaration):
    generator = torch.Generator().manual_seed(8)
    layer, module = compile_parameterless(input_shape, declaration)
    x = torch.randn(256, *input_shape, generator=generator, dtype=torch.float64)
    worst = 0.0
    directions = (torch.randn(x.shape, generator=generator, dtype=torch.float64), torch.ones(x.shape, dtype=torch.float64))
    for scale in (1e-4, 0.1, 3.0):
        for direction in directions:
            y = x + scale * direction
            ratios = (module(x) - module(y)).flatten(1).norm(dim=1) / (x - y).flatten(1).norm(dim=1)
            worst = max(worst, float(ratios.max()))
    assert worst <= layer.lipschitz_bound * (1 + 1e-9)
    assert worst > 0.5 * layer.lipschitz_bound, "the search should come near the constant"


@pytest.mark.parametrize("input_shape, declaration", ACTIVATIONS_AND_POOLING, ids=ACTIVATION_IDS)
def test_layer_output_norm_within_bound(input_shape, declaration):
    generator = torch.Generator().manual_seed(9)
    layer, module = compile_parameterless(input_shape, declaration)
    x = torch.randn(512, *input_shape, generator=generator, dtype=torch.float64)
    x = 2.0 * x / x.flatten(1).norm(dim=1).view(-1, *[1] * len(input_shape))
    assert float(module(x).flatten(1).norm(dim=1).max()) <= layer.output_norm_bound(2.0) * (1 + 1e-9)
