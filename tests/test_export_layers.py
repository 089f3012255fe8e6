"""Every layer kind exports to ONNX, and onnxruntime gives PyTorch's outputs."""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
import torch

import lipc
from lipc.export.onnx_export import INPUT_NAME, OUTPUT_NAME, VERIFICATION_TOLERANCE, _export_graph

from conftest import SPECS
from test_soundness import NETWORKS

EXAMPLE_SPECS = sorted(path.stem for path in SPECS.glob("*.lip"))
# Networks whose layers the example specs and the export command's own tests leave out.
EXPORTED_NETWORKS = sorted(set(NETWORKS) - {"digits_mlp", "biased_mlp"})


def assert_onnx_matches(compiled, path, generator):
    module = compiled.module.eval()
    # Large random weights, so that sorting, pooling and clipping all act on the outputs.
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator))
    module.project_()
    inputs = 3 * compiled.input_clip_norm * torch.randn(16, *compiled.input_shape, generator=generator)

    _export_graph(module, inputs[:2], path)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (onnx_outputs,) = session.run([OUTPUT_NAME], {INPUT_NAME: inputs.numpy()})
    with torch.no_grad():
        torch_outputs = module(inputs).numpy()
    scale = max(1.0, float(np.abs(torch_outputs).max()))
    assert float(np.abs(onnx_outputs - torch_outputs).max()) <= VERIFICATION_TOLERANCE * scale


@pytest.mark.parametrize("network", EXPORTED_NETWORKS)
def test_network_exports(network, tmp_path):
    assert_onnx_matches(lipc.compile_source(NETWORKS[network]), tmp_path / "model.onnx", torch.Generator().manual_seed(0))


@pytest.mark.parametrize("spec", EXAMPLE_SPECS)
def test_example_spec_exports(spec, tmp_path):
    assert_onnx_matches(lipc.compile(SPECS / f"{spec}.lip"), tmp_path / "model.onnx", torch.Generator().manual_seed(1))
