"""The step-cost benchmark's torch.nn copies of lipc networks, and its ratio cells."""

from __future__ import annotations

import argparse
import importlib.util
import sys

import pytest
import torch

import lipc

from conftest import REPO, SPECS

spec = importlib.util.spec_from_file_location("step_cost", REPO / "benchmarks" / "step_cost.py")
step_cost = importlib.util.module_from_spec(spec)
# Registered before it runs, because its dataclasses look their module up in sys.modules.
sys.modules["step_cost"] = step_cost
spec.loader.exec_module(step_cost)


@pytest.mark.parametrize("file", ["mnist_cnn.lip", "cifar_resnet.lip", "mnist1d_cnn.lip"])
def test_plain_copy_computes_same_outputs(file):
    compiled = lipc.compile(SPECS / file)
    inputs = torch.randn(3, *compiled.input_shape, generator=torch.Generator().manual_seed(0))
    copy = step_cost.plain_copy(compiled.module)
    torch.testing.assert_close(copy(inputs), compiled.module(inputs), rtol=1e-5, atol=1e-6)


def test_plain_copy_has_only_torch_layers():
    compiled = lipc.compile(SPECS / "cifar_resnet.lip")
    copy = step_cost.plain_copy(compiled.module)
    layer_types = {type(module) for module in copy.modules() if any(True for _ in module.parameters(recurse=False))}
    assert layer_types == {torch.nn.Conv2d, torch.nn.Linear}


def test_ratio_cell_marks_target():
    assert step_cost._ratio_cell(1.2, 1.0, 1.5) == "1.20 met"
    assert step_cost._ratio_cell(2.0, 1.0, 1.5) == "2.00 missed"
    assert step_cost._ratio_cell(2.0, 1.0, None) == "2.00"
    assert step_cost._ratio_cell(None, 1.0, 1.5) == "n/a"


TIMING = {"warmup": 1, "min_steps": 2, "max_steps": 2, "time_budget": 0.0}


@pytest.mark.parametrize("configuration", ["plain", "lipc_no_noise", "lipc_dp"])
def test_worker_times_steps(configuration):
    measurement = step_cost.run_worker("mlp", 32, configuration, "cpu", TIMING)
    assert measurement.timed_steps == 2
    assert measurement.median_step_seconds > 0


def test_memory_pass_measures_step_memory():
    # In a fresh process, as the benchmark runs it: memory freed by earlier work in this one
    # would be reused without raising the resident size.
    args = argparse.Namespace(device="cpu", warmup=1, min_steps=1, max_steps=1, time_budget=0.0, threads=1)
    measurement, failure = step_cost._run_worker_process("mlp", 256, "plain", args, memory_pass=True)
    assert failure == ""
    # Adam's two state tensors alone take 8 bytes per parameter.
    parameters = 784 * 512 + 512 * 512 + 512 * 10
    assert measurement.peak_memory_bytes >= 8 * parameters
