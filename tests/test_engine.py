"""The privacy engine in a user's own training loop, and the example in docs/privacy.md."""

from __future__ import annotations

import re

import pytest
import torch

import lipc
from lipc.privacy.accounting import compute_epsilon
from lipc.privacy.engine import PrivacyEngine

from conftest import MLP_SOURCE, REPO


def make_engine(**overrides):
    compiled = lipc.compile_source(MLP_SOURCE)
    settings = {"dataset_size": 200, "batch_size": 20, "epochs": 2, "epsilon": 2.0, "seed": 0, **overrides}
    return compiled, PrivacyEngine(compiled, **settings)


def test_engine_plans_the_noise():
    _, engine = make_engine()
    assert engine.plan.steps == 20
    assert engine.ledger.noise_multiplier == engine.plan.noise_multiplier
    assert compute_epsilon(0.1, engine.plan.noise_multiplier, 20, 1e-5) <= 2.0


def test_wrapped_step_noises_projects_and_counts():
    compiled, engine = make_engine()
    optimizer = engine.wrap(torch.optim.SGD(compiled.module.parameters(), lr=50.0))
    inputs, labels = torch.randn(5, 12), torch.tensor([0, 1, 2, 0, 1])
    before = {name: parameter.detach().clone() for name, parameter in compiled.module.named_parameters()}

    optimizer.zero_grad()
    engine.batch_loss(compiled.module(inputs), labels).backward()
    optimizer.step()

    assert engine.steps_taken == 1
    for name, parameter in compiled.module.named_parameters():
        assert not torch.equal(parameter, before[name]), name
    for name, module in compiled.module.named_children():
        if hasattr(module, "certified_lipschitz"):
            assert module.certified_lipschitz() <= 1.0, name


def test_step_on_empty_batch_is_noise_only():
    compiled, engine = make_engine()
    optimizer = engine.wrap(torch.optim.SGD(compiled.module.parameters(), lr=1.0))
    optimizer.zero_grad()
    optimizer.step()
    assert engine.steps_taken == 1
    assert engine.epsilon == pytest.approx(compute_epsilon(0.1, engine.plan.noise_multiplier, 1, 1e-5))


def test_batch_loss_divides_by_expected_size():
    compiled, engine = make_engine()
    inputs, labels = torch.randn(3, 12), torch.tensor([0, 1, 2])
    outputs = compiled.module(inputs)
    expected = compiled.loss_function(outputs, labels).sum() / 20.0
    assert float(engine.batch_loss(outputs, labels).detach()) == pytest.approx(float(expected.detach()))


def test_epsilon_after_planned_steps_meets_target():
    compiled, engine = make_engine(accountant="pld")
    optimizer = engine.wrap(torch.optim.SGD(compiled.module.parameters(), lr=0.1))
    for _ in range(engine.plan.steps):
        optimizer.zero_grad()
        optimizer.step()
    assert engine.epsilon <= 2.0
    assert engine.epsilon > 1.9


def test_docs_example_runs(monkeypatch):
    monkeypatch.chdir(REPO)
    text = (REPO / "docs" / "privacy.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    example = next(block for block in blocks if "PrivacyEngine" in block)
    namespace = {}
    exec(compile(example, "docs/privacy.md", "exec"), namespace)
    assert namespace["engine"].steps_taken == namespace["engine"].plan.steps
    assert namespace["engine"].epsilon <= 3.0
