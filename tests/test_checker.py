"""Checking: shapes, compliance and bound propagation, with located errors."""

from __future__ import annotations

import math

import pytest

import lipc
from lipc.check import check_spec
from lipc.check.checker import SENSITIVITY_SAFETY_MARGIN
from lipc.errors import SpecError
from lipc.lang import parse_source

from conftest import MLP_SOURCE

NETWORK_TEMPLATE = "network n {{\n    input shape=[8] clip_norm=1.0\n{layers}\n}}\nloss cross_entropy\n"


def check_layers(*layers: str):
    source = NETWORK_TEMPLATE.format(layers="\n".join(f"    {layer}" for layer in layers))
    return check_spec(parse_source(source, "net.lip"))


def error_of(*layers: str) -> SpecError:
    with pytest.raises(SpecError) as caught:
        check_layers(*layers)
    return caught.value


def test_bounds_of_mlp_follow_the_formulas():
    checked = check_spec(parse_source(MLP_SOURCE))
    margin = 1 + SENSITIVITY_SAFETY_MARGIN
    loss_lipschitz = math.sqrt(2) / 0.5
    x0, bias = 2.0, 0.5

    # Every layer is 1-Lipschitz, so G is L everywhere; the biased dense adds 0.5 to X.
    assert [b.output_gradient_bound for b in checked.layers] == pytest.approx([loss_lipschitz] * 6)
    assert [b.output_norm_bound for b in checked.layers] == pytest.approx([x0, x0 + bias, x0 + bias, x0 + bias, x0 + bias, x0 + bias])
    assert checked.sensitivities == pytest.approx({
        "dense_1.weight": loss_lipschitz * x0 * margin,
        "dense_1.bias": loss_lipschitz * margin,
        "dense_3.weight": loss_lipschitz * (x0 + bias) * margin,
        "dense_5.weight": loss_lipschitz * (x0 + bias) * margin,
    })


def test_sensitivity_keys_match_module_parameters():
    compiled = lipc.compile_source(MLP_SOURCE)
    assert set(compiled.sensitivities) == {name for name, _ in compiled.module.named_parameters()}


def test_flatten_makes_a_vector():
    source = "network n {\n    input shape=[2, 3, 4] clip_norm=1\n    flatten\n    dense 5\n}\nloss cross_entropy\n"
    checked = check_spec(parse_source(source))
    assert checked.layers[1].layer.output_shape == (24,)


def test_unknown_layer_suggests_the_closest():
    error = error_of("dens 10")
    assert error.message == "unknown layer 'dens'"
    assert (error.location.line, error.location.column) == (3, 5)
    assert error.hint == "did you mean 'dense'?"


def test_unknown_option_suggests_the_closest():
    error = error_of("dense 10 bias_nrom=1")
    assert error.message == "unknown option 'bias_nrom' for dense"
    assert (error.location.line, error.location.column) == (3, 14)
    assert error.hint == "did you mean 'bias_norm'?"


def test_batchnorm_rejected_with_reason():
    error = error_of("batchnorm", "dense 10")
    assert error.message == "layer 'batchnorm' has no certified Lipschitz bound: batch normalisation mixes the examples of a batch, so no per-example bound holds"
    assert error.hint == "use 'centering', which subtracts a mean within each example, or remove it"


def test_groupsort_needs_divisible_width():
    error = error_of("dense 9", "groupsort 2", "dense 3")
    assert "groupsort 2 needs a channel count divisible by 2" in error.message
    assert error.location.line == 4


def test_dense_after_image_needs_flatten():
    source = "network n {\n    input shape=[1, 4, 4] clip_norm=1\n    dense 10\n}\nloss cross_entropy\n"
    with pytest.raises(SpecError) as caught:
        check_spec(parse_source(source))
    assert "dense expects a flat vector, but its input has shape [1, 4, 4]" in caught.value.message
    assert caught.value.hint == "add a 'flatten' layer before it"


def test_missing_input_layer():
    source = "network n {\n    dense 10\n}\nloss cross_entropy\n"
    with pytest.raises(SpecError) as caught:
        check_spec(parse_source(source))
    assert caught.value.message.startswith("the network must start with an 'input' layer: ")


def test_missing_clip_norm():
    source = "network n {\n    input shape=[8]\n    dense 10\n}\nloss cross_entropy\n"
    with pytest.raises(SpecError) as caught:
        check_spec(parse_source(source))
    assert caught.value.message.startswith("input needs the option 'clip_norm': ")
    assert caught.value.location.line == 2


@pytest.mark.parametrize("value", ["0", "-1", "[1]", "inf_value"])
def test_invalid_clip_norm(value):
    source = f"network n {{\n    input shape=[8] clip_norm={value}\n    dense 10\n}}\nloss cross_entropy\n"
    with pytest.raises(SpecError) as caught:
        check_spec(parse_source(source))
    assert "clip_norm" in caught.value.message
    assert caught.value.location.line == 2


def test_output_must_be_logits():
    error = error_of("dense 1")
    assert "at least 2 logits" in error.message


def test_missing_loss():
    with pytest.raises(SpecError) as caught:
        check_spec(parse_source("network n {\n    input shape=[8] clip_norm=1\n    dense 2\n}\n"))
    assert caught.value.message == "the file has no loss"


def test_unknown_loss():
    with pytest.raises(SpecError) as caught:
        check_spec(parse_source("network n {\n    input shape=[8] clip_norm=1\n    dense 2\n}\nloss crossentropy\n"))
    assert caught.value.hint == "did you mean 'cross_entropy'?"


def test_invalid_temperature():
    with pytest.raises(SpecError) as caught:
        check_spec(parse_source("network n {\n    input shape=[8] clip_norm=1\n    dense 2\n}\nloss cross_entropy temperature=0\n"))
    assert caught.value.message == "loss cross_entropy option 'temperature' must be greater than 0, not 0"
    assert (caught.value.location.line, caught.value.location.column) == (5, 20)


SETTING_ERRORS = [
    ("train", "epochs = 0", "epochs must be at least 1, not 0"),
    ("privacy", "delta = 1", "delta must be less than 1, not 1"),
    ("privacy", "epsilon = -3", "epsilon must be greater than 0, not -3"),
    ("train", "batch_size = 2.5", "train setting 'batch_size' must be a whole number, not 2.5"),
    ("data", "source = digts", "invalid data source digts"),
    ("train", "optimizer = adma(lr=0.1)", "unknown optimizer 'adma'"),
    ("train", "optimizer = adam(lrr=0.1)", "unknown option 'lrr' for optimizer adam"),
    ("train", "optimizer = adam(lr=-1)", "lr must be greater than 0, not -1"),
    ("train", "epoch = 3", "unknown setting 'epoch' for train"),
    ("train", "delta = 1e-5", "'delta' is a privacy setting, not a train setting"),
    ("train", "data = digits", "'data' is not a setting; the data set is the 'source' setting of the data section"),
    ("train", "device = tpu", "invalid device tpu"),
]


@pytest.mark.parametrize("section, setting, message", SETTING_ERRORS)
def test_invalid_setting(section, setting, message):
    source = f"network n {{\n    input shape=[8] clip_norm=1\n    dense 2\n}}\nloss cross_entropy\n{section} {{\n    {setting}\n}}\n"
    with pytest.raises(SpecError) as caught:
        check_spec(parse_source(source))
    assert caught.value.message == message
    assert caught.value.location.line == 7


def test_optimizer_resolves_to_torch_class():
    source = "network n {\n    input shape=[8] clip_norm=1\n    dense 2\n}\nloss cross_entropy\ntrain {\n    optimizer = sgd(lr=0.1, momentum=0.9)\n}\n"
    checked = check_spec(parse_source(source))
    assert checked.train.optimizer.name == "SGD"
    assert dict(checked.train.optimizer.arguments) == {"lr": 0.1, "momentum": 0.9}


def test_several_networks_need_a_choice():
    source = "network a {\n    input shape=[8] clip_norm=1\n    dense 2\n}\nnetwork b {\n    input shape=[8] clip_norm=1\n    dense 3\n}\nloss cross_entropy\n"
    with pytest.raises(SpecError) as caught:
        check_spec(parse_source(source))
    assert caught.value.hint == "pick one with --network NAME"
    assert check_spec(parse_source(source), "b").num_classes == 3
