"""Residual blocks: nested syntax, module names and bounds."""

from __future__ import annotations

import math

import pytest

import lipc
from lipc.errors import SpecError
from lipc.lang import parse_source

NESTED = """\
network n {
    input shape=[4] clip_norm=2.0
    residual alpha=0.5 {
        dense 4 bias_norm=1.0
        residual 0.25 {
            dense 4
            abs
        }
    }
    dense 2
}
loss cross_entropy temperature=1.0
"""


def test_nested_blocks_parsed():
    (network,) = parse_source(NESTED).networks
    outer = network.layers[1]
    assert outer.kind == "residual"
    assert [decl.kind for decl in outer.body] == ["dense", "residual"]
    assert [decl.kind for decl in outer.body[1].body] == ["dense", "abs"]
    assert network.layers[0].body is None


def test_nested_block_parameter_names():
    compiled = lipc.compile_source(NESTED)
    assert set(compiled.sensitivities) == {
        "residual_1.inner.dense_0.weight",
        "residual_1.inner.dense_0.bias",
        "residual_1.inner.residual_1.inner.dense_0.weight",
        "dense_2.weight",
    }
    assert set(dict(compiled.module.named_parameters())) == set(compiled.sensitivities)


def test_nested_block_bounds():
    compiled = lipc.compile_source(NESTED)
    sensitivities = compiled.sensitivities
    margin = 1 + 1e-4
    loss_constant = math.sqrt(2)
    # The outer block's inner layers see 0.5·G, and the inner block's see 0.25·0.5·G.
    # The input norm grows by the bias inside the outer block: X = 0.5·2 + 0.5·(2 + 1) = 2.5.
    assert sensitivities["residual_1.inner.dense_0.weight"] == pytest.approx(0.5 * loss_constant * 2.0 * margin)
    assert sensitivities["residual_1.inner.dense_0.bias"] == pytest.approx(0.5 * loss_constant * margin)
    assert sensitivities["residual_1.inner.residual_1.inner.dense_0.weight"] == pytest.approx(0.125 * loss_constant * 3.0 * margin)
    assert sensitivities["dense_2.weight"] == pytest.approx(loss_constant * 2.5 * margin)


def test_unclosed_block_located():
    with pytest.raises(SpecError) as caught:
        parse_source("network n {\n    input shape=[4] clip_norm=1\n    residual alpha=0.5 {\n        abs\n}\n")
    assert caught.value.message.startswith("unexpected end of file")
