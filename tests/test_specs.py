"""Every example network trains through `lipc.train`, and binary classifiers are evaluated by sign."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

import lipc
from lipc.errors import DataError, UsageError
from lipc.train import evaluation
from lipc.train.trainer import train

from conftest import SPECS

SPEC_FILES = sorted(SPECS.glob("*.lip"))


@pytest.mark.parametrize("path", SPEC_FILES, ids=[p.stem for p in SPEC_FILES])
def test_spec_trains_on_synthetic_file(path, tmp_path):
    torch.manual_seed(0)
    compiled = lipc.compile(path)
    classes = max(compiled.num_classes, 2)
    generator = np.random.default_rng(0)
    data_file = tmp_path / "synthetic.npz"
    np.savez(
        data_file,
        x=generator.normal(size=(64, *compiled.input_shape)).astype(np.float32),
        y=np.arange(64) % classes,
        x_test=generator.normal(size=(16, *compiled.input_shape)).astype(np.float32),
        y_test=np.arange(16) % classes,
    )
    config = dataclasses.replace(compiled.checked.train, data=str(data_file), epochs=1, batch_size=32, epsilon=8.0)

    result = train(compiled, config, tmp_path / "run", device="cpu", show_progress=False)

    assert result.ledger.steps_taken == 2
    assert result.ledger.epsilon_spent <= 8.0
    assert result.lipschitz_constant <= compiled.checked.lipschitz_bound * (1 + 1e-6)
    assert 0.0 <= result.test_accuracy <= 1.0


def test_single_logit_predictions_by_sign():
    logits = torch.tensor([[2.0], [-0.5], [0.1]])
    labels = torch.tensor([1, 0, 0])
    assert evaluation.accuracy(logits, labels) == pytest.approx(2 / 3)


def test_single_logit_certified_radius():
    logits = torch.tensor([[2.0], [-0.5]])
    assert evaluation.certified_radii(logits, 0.5).tolist() == pytest.approx([4.0, 1.0])


def test_two_logit_certified_radius():
    logits = torch.tensor([[3.0, 1.0]])
    assert float(evaluation.certified_radii(logits, 1.0)[0]) == pytest.approx(2 / math.sqrt(2))


def test_spec_without_data_rejected(tmp_path):
    source = "network n {\n    input shape=[64] clip_norm=1\n    dense 10\n}\nloss cross_entropy\n"
    compiled = lipc.compile_source(source)
    config = dataclasses.replace(compiled.checked.train, epsilon=3.0)
    with pytest.raises(DataError) as caught:
        train(compiled, config, tmp_path / "run", device="cpu", show_progress=False)
    assert caught.value.message == "no data set: the spec's data section names none"
    assert not (tmp_path / "run").exists()


def test_regression_loss_rejected_by_trainer(tmp_path):
    source = "network n {\n    input shape=[64] clip_norm=1\n    dense 2\n}\nloss squared_error target_bound=1\ndata {\n    source = digits\n}\n"
    compiled = lipc.compile_source(source)
    config = dataclasses.replace(compiled.checked.train, epsilon=3.0)
    with pytest.raises(UsageError) as caught:
        train(compiled, config, tmp_path / "run", device="cpu", show_progress=False)
    assert "needs real-valued targets" in caught.value.message
    assert not (tmp_path / "run").exists()
