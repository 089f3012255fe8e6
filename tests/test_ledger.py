"""The ledger of real runs: written every epoch, never behind the weights, and resumable after SIGKILL."""

from __future__ import annotations

import dataclasses
import io
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import onnx
import pytest
import torch

import lipc
from lipc.errors import RunError
from lipc.privacy import sampling
from lipc.privacy.accounting import compute_epsilon
from lipc.train import trainer
from lipc.train.run_folder import CHECKPOINT_FILE, LEDGER_FILE

from conftest import run_lipc

# A small digits network: a few milliseconds per step, 6 steps per epoch.
SPEC = """\
network small {
    input shape=[64] clip_norm=1.0
    dense 32
    groupsort 2
    dense 10
}
loss cross_entropy temperature=0.1
data {
    source = digits
}
train {
    epochs = 6
    batch_size = 256
    optimizer = adam(lr=0.004)
    seed = 1
}
privacy {
    epsilon = 3
}
"""
STEPS_PER_EPOCH = 6
EPOCHS = 6

# Runs lipc's CLI in a subprocess after wrapping one function so that it SIGKILLs the process
# on a chosen call: argv[1] is "MODULE:FUNCTION", argv[2] the call to die on, then lipc's arguments.
KILLER = """\
import importlib, os, signal, sys
module_name, function_name = sys.argv[1].split(":")
die_on = int(sys.argv[2])
module = importlib.import_module(module_name)
original = getattr(module, function_name)
calls = 0
def wrapper(*args, **kwargs):
    global calls
    calls += 1
    if calls == die_on:
        os.kill(os.getpid(), signal.SIGKILL)
    return original(*args, **kwargs)
setattr(module, function_name, wrapper)
from lipc.cli import main
sys.exit(main(sys.argv[3:]))
"""


@pytest.fixture
def spec(tmp_path) -> Path:
    path = tmp_path / "small.lip"
    path.write_text(SPEC)
    return path


def read_ledger(run_dir: Path) -> dict:
    return json.loads((run_dir / LEDGER_FILE).read_text())


def checkpoint_steps(run_dir: Path) -> int:
    checkpoint = torch.load(io.BytesIO((run_dir / CHECKPOINT_FILE).read_bytes()), weights_only=True)
    return checkpoint["steps_taken"]


def run_killed(tmp_path: Path, target: str, die_on: int, *args: str) -> subprocess.CompletedProcess:
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    return subprocess.run([sys.executable, str(script), target, str(die_on), "--quiet", *args], cwd=tmp_path, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("uninterrupted")
    (folder / "small.lip").write_text(SPEC)
    result = run_lipc("--quiet", "train", "small.lip", "--out", "full", cwd=folder)
    assert result.returncode == 0, result.stderr
    return folder / "full"


def assert_same_run(resumed: Path, reference: Path) -> None:
    assert read_ledger(resumed) == read_ledger(reference)
    resumed_weights = torch.load(resumed / "weights.pt", weights_only=True)
    reference_weights = torch.load(reference / "weights.pt", weights_only=True)
    for name, tensor in reference_weights.items():
        assert torch.equal(resumed_weights[name], tensor), name


def test_ledger_written_after_each_epoch(uninterrupted):
    ledger = read_ledger(uninterrupted)
    assert [entry["steps_taken"] for entry in ledger["epochs"]] == [STEPS_PER_EPOCH * epoch for epoch in range(1, EPOCHS + 1)]
    for entry in ledger["epochs"]:
        direct = compute_epsilon(ledger["sampling_rate"], ledger["noise_multiplier"], entry["steps_taken"], ledger["delta"])
        assert entry["epsilon"] == pytest.approx(direct, rel=1e-12)
    assert ledger["finished"]
    assert not (uninterrupted / CHECKPOINT_FILE).exists()


def test_ledger_states_the_guarantee(uninterrupted):
    ledger = read_ledger(uninterrupted)
    assert ledger["accountant"] == "rdp"
    assert ledger["neighboring_relation"] == "add_or_remove_one"
    assert ledger["sampling"] == "poisson"
    assert ledger["steps_taken"] == STEPS_PER_EPOCH * EPOCHS
    assert set(ledger["tensors"]["dense_1.weight"]) == {"sensitivity", "noise_multiplier", "standard_deviation"}
    assert "constant 16" in ledger["preprocessing"]
    assert ledger["preprocessing_covered_by_guarantee"] is True


def test_sigkill_at_random_time_then_resume(spec, tmp_path, uninterrupted):
    process = subprocess.Popen([sys.executable, "-m", "lipc", "--quiet", "train", str(spec), "--out", "killed"], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run_dir = tmp_path / "killed"
    deadline = time.monotonic() + 300
    metrics = run_dir / "metrics.json"
    # metrics.json is written last after an epoch: waiting for it lets the kill land during a step.
    while time.monotonic() < deadline:
        if metrics.exists() and len(json.loads(metrics.read_text())["epochs"]) >= 2:
            break
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    if (run_dir / "weights.pt").exists():
        pytest.skip("the run finished before it could be killed")

    assert read_ledger(run_dir)["steps_taken"] >= checkpoint_steps(run_dir)
    resumed = run_lipc("--quiet", "train", "--resume", "killed", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    if read_ledger(run_dir)["steps_discarded"]:
        pytest.skip("killed between the ledger and the checkpoint writes; another test covers that")
    assert_same_run(run_dir, uninterrupted)


def test_sigkill_after_optimizer_step_then_resume(spec, tmp_path, uninterrupted):
    # Die on the 16th step, in epoch 3, after two epochs were recorded.
    result = run_killed(tmp_path, "lipc.train.trainer:private_step", 16, "train", str(spec), "--out", "killed")
    assert result.returncode == -signal.SIGKILL
    run_dir = tmp_path / "killed"
    assert read_ledger(run_dir)["steps_taken"] == 2 * STEPS_PER_EPOCH
    assert checkpoint_steps(run_dir) == 2 * STEPS_PER_EPOCH

    resumed = run_lipc("--quiet", "train", "--resume", "killed", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "privacy: ε = " in resumed.stdout
    assert_same_run(run_dir, uninterrupted)


def test_sigkill_between_ledger_and_checkpoint(spec, tmp_path, uninterrupted):
    # Calls of write_torch_atomically: 1 is the initial checkpoint, 2 the checkpoint of epoch 1,
    # 3 that of epoch 2, written just after epoch 2's ledger.
    result = run_killed(tmp_path, "lipc.train.run_folder:write_torch_atomically", 3, "train", str(spec), "--out", "killed")
    assert result.returncode == -signal.SIGKILL
    run_dir = tmp_path / "killed"
    assert read_ledger(run_dir)["steps_taken"] == 2 * STEPS_PER_EPOCH
    assert checkpoint_steps(run_dir) == STEPS_PER_EPOCH

    resumed = run_lipc("--quiet", "train", "--resume", "killed", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    ledger = read_ledger(run_dir)
    # The lost epoch stays counted: the ledger never counts fewer steps than were taken.
    assert ledger["steps_discarded"] == STEPS_PER_EPOCH
    assert ledger["steps_taken"] == (EPOCHS + 1) * STEPS_PER_EPOCH
    assert ledger["epsilon_spent"] == pytest.approx(compute_epsilon(ledger["sampling_rate"], ledger["noise_multiplier"], ledger["steps_taken"], ledger["delta"]))
    assert ledger["epsilon_spent"] > read_ledger(uninterrupted)["epsilon_spent"]


def test_resume_of_finished_run_rejected(uninterrupted):
    result = run_lipc("train", "--resume", "full", cwd=uninterrupted.parent)
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == "lipc: error: run full has already finished"


def test_resume_with_settings_rejected(spec, tmp_path):
    result = run_lipc("train", str(spec), "--resume", "somewhere", "--epochs", "3", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == "lipc: error: --resume continues a run with its own settings, so --spec, --epochs cannot be given with it"


def test_resume_of_missing_run_rejected(tmp_path):
    result = run_lipc("train", "--resume", "nowhere", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == "lipc: error: run folder not found: nowhere"


def test_export_of_unfinished_run_rejected(spec, tmp_path):
    run_killed(tmp_path, "lipc.train.trainer:private_step", 8, "train", str(spec), "--out", "killed")
    result = run_lipc("export", "killed", "-o", "model.onnx", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == ["lipc: error: run killed has not finished training", "hint: resume it with 'lipc train --resume killed'"]
    assert not (tmp_path / "model.onnx").exists()


def test_empty_batches_are_counted(spec, tmp_path, monkeypatch):
    # Every other Poisson batch comes back empty; each still takes a noisy step and is counted.
    draws = []

    def sometimes_empty(num_examples, sampling_rate, generator, device):
        batch = sampling.poisson_sample(num_examples, sampling_rate, generator, device)
        draws.append(len(batch))
        return batch[:0] if len(draws) % 2 else batch

    monkeypatch.setattr(trainer, "poisson_sample", sometimes_empty)
    compiled = lipc.compile(spec)
    config = dataclasses.replace(compiled.checked.train, epochs=2)
    result = trainer.train(compiled, config, tmp_path / "run", device="cpu", show_progress=False)
    assert len(draws) == 2 * STEPS_PER_EPOCH
    assert result.ledger.steps_taken == 2 * STEPS_PER_EPOCH
    assert read_ledger(tmp_path / "run")["steps_taken"] == 2 * STEPS_PER_EPOCH


def test_shuffled_batches_labelled_everywhere(spec, tmp_path):
    result = run_lipc("--quiet", "train", str(spec), "--sampling", "shuffle", "--epochs", "1", "--out", "run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "shuffled fixed-size batches, NOT covered by this ε, which assumes Poisson sampling" in result.stdout

    ledger = read_ledger(tmp_path / "run")
    assert ledger["sampling"] == "shuffle"
    assert ledger["epsilon_label"].startswith("NOT COVERED: ε assumes Poisson sampling")
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["epsilon_label"] == ledger["epsilon_label"]

    export = run_lipc("export", "run", "-o", "model.onnx", cwd=tmp_path)
    assert export.returncode == 0, export.stderr
    metadata = {entry.key: entry.value for entry in onnx.load(str(tmp_path / "model.onnx")).metadata_props}
    assert metadata["lipc.sampling"] == "shuffle"
    assert metadata["lipc.epsilon_label"] == ledger["epsilon_label"]


def test_poisson_is_the_default(uninterrupted):
    assert read_ledger(uninterrupted)["epsilon_label"] == "Poisson sampling at rate q, as the run used"


def test_resume_rejects_noise_below_sensitivity(spec, tmp_path, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "private_step", interrupt)
    compiled = lipc.compile(spec)
    with pytest.raises(KeyboardInterrupt):
        trainer.train(compiled, compiled.checked.train, tmp_path / "run", device="cpu", show_progress=False)
    monkeypatch.undo()

    # A ledger whose noise was sized for a smaller bound than the spec now proves.
    ledger = read_ledger(tmp_path / "run")
    ledger["tensors"]["dense_1.weight"]["sensitivity"] /= 2
    (tmp_path / "run" / LEDGER_FILE).write_text(json.dumps(ledger))
    with pytest.raises(RunError) as caught:
        trainer.resume(tmp_path / "run", device="cpu", show_progress=False)
    assert caught.value.message.startswith("the sensitivity of dense_1.weight is now 14.14")
