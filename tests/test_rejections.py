"""Layers and losses without a provable bound are rejected with a located reason and a hint."""

from __future__ import annotations

import pytest

from lipc.check import check_spec
from lipc.errors import SpecError
from lipc.lang import parse_source


def check(layers: str, loss: str = "cross_entropy", shape: str = "[2, 8, 8]"):
    source = f"network n {{\n    input shape={shape} clip_norm=1.0\n{layers}\n    flatten\n    dense 2\n}}\nloss {loss}\n"
    return check_spec(parse_source(source))


def rejection(layers: str, loss: str = "cross_entropy", shape: str = "[2, 8, 8]") -> SpecError:
    with pytest.raises(SpecError) as caught:
        check(layers, loss, shape)
    return caught.value


@pytest.mark.parametrize("kind", ["batchnorm", "dropout", "exp", "square", "layernorm"])
def test_unbounded_layer_rejected(kind):
    error = rejection(f"    {kind}")
    assert error.message.startswith(f"layer '{kind}' has no certified Lipschitz bound: ")
    assert (error.location.line, error.location.column) == (3, 5)
    assert error.hint


def test_overlapping_maxpool_rejected():
    error = rejection("    maxpool 3 stride=2")
    assert error.message.startswith("maxpool 3 with stride=2 is not supported: overlapping max pooling")
    assert (error.location.line, error.location.column) == (3, 15)
    assert error.hint == "remove stride, or set stride=3"


def test_missing_clip_norm_rejected():
    with pytest.raises(SpecError) as caught:
        check_spec(parse_source("network n {\n    input shape=[8]\n    dense 2\n}\nloss cross_entropy\n"))
    assert caught.value.message.startswith("input needs the option 'clip_norm': ")


@pytest.mark.parametrize("loss, hint_start", [("kr", "the Kantorovich–Rubinstein loss divides"), ("mse", "squared error has no Lipschitz constant")])
def test_unbounded_loss_rejected(loss, hint_start):
    error = rejection("    relu", loss)
    assert error.message == f"loss '{loss}' has no per-example Lipschitz constant"
    assert error.hint.startswith(hint_start)
    assert (error.location.line, error.location.column) == (7, 1)


def test_squared_error_needs_target_bound():
    error = rejection("    relu", "squared_error")
    assert error.message == "loss squared_error needs the option 'target_bound'"


def test_binary_loss_needs_single_logit():
    error = rejection("    relu", "binary_cross_entropy")
    assert error.message == "the network's output must be a single logit for binary_cross_entropy, but it has shape [2]"
    assert error.hint == "end the network with 'dense 1'"


def test_convolution_on_flat_input_rejected():
    error = rejection("    conv2d 4", shape="[16]")
    assert error.message == "conv2d expects an input of shape [channels, height, width], but its input has shape [16]"


def test_residual_shape_change_rejected():
    error = rejection("    residual alpha=0.5 {\n        conv2d 4\n    }")
    assert error.message == "the inner layers of a residual block must keep the shape [2, 8, 8], but they output shape [4, 8, 8]"
    assert (error.location.line, error.location.column) == (3, 5)


def test_residual_without_block_rejected():
    error = rejection("    residual alpha=0.5")
    assert error.message == "residual needs a block of inner layers"


def test_block_on_plain_layer_rejected():
    error = rejection("    relu {\n        abs\n    }")
    assert error.message == "layer 'relu' takes no block of inner layers"


@pytest.mark.parametrize("alpha", ["0", "1.5"])
def test_residual_alpha_range(alpha):
    error = rejection(f"    residual alpha={alpha} {{\n        abs\n    }}")
    assert error.message.startswith("residual option 'alpha' must be")


def test_invalid_padding_rejected():
    error = rejection("    conv2d 4 padding=reflect")
    assert error.message == "invalid padding reflect for conv2d"
    assert error.hint == "choose one of same, valid, circular"


def test_circular_kernel_larger_than_input_rejected():
    error = rejection("    conv2d 4 kernel=5 padding=circular", shape="[1, 4, 4]")
    assert error.message == "conv2d kernel 5 is larger than its input size 4 with circular padding"


def test_centering_channel_on_flat_input_rejected():
    error = rejection("    centering channel", shape="[6]")
    assert error.message == "centering channel needs spatial positions, but its input has shape [6]"
