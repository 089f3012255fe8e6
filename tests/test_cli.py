"""The `lipc` command end to end, run as a user would, from outside the source tree."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from importlib import resources

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

import lipc
from lipc.privacy.accounting import compute_epsilon
from lipc.train.run_folder import load_compiled, read_run

from conftest import REPO, run_lipc

METADATA_KEYS = {
    "lipc.lipschitz_constant",
    "lipc.input_clip_norm",
    "lipc.epsilon",
    "lipc.delta",
    "lipc.accountant",
    "lipc.noise_multiplier",
    "lipc.sampling_rate",
    "lipc.steps",
    "lipc.spec_sha256",
    "lipc.version",
}


def test_grammar_ships_with_the_package():
    grammar = resources.files("lipc.grammar").joinpath("lipc.lark")
    assert "network" in grammar.read_text(encoding="utf-8")


def test_compile_prints_bound_table(digits_spec, tmp_path):
    result = run_lipc("compile", str(digits_spec), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "dense_1.weight" in result.stdout
    assert "certified Lipschitz constant" in result.stdout


def test_compile_json_matches_python_api(digits_spec, tmp_path):
    result = run_lipc("compile", str(digits_spec), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    compiled = lipc.compile(digits_spec)
    assert report["sensitivities"] == pytest.approx(compiled.sensitivities)
    assert [layer["output_shape"] for layer in report["layers"]] == [[64], [64], [64], [10]]
    assert report["certified_lipschitz_constant"] <= 1.0


def test_compile_error_is_located_without_traceback(tmp_path):
    spec = tmp_path / "bad.lip"
    spec.write_text("network n {\n    input shape=[8] clip_norm=1\n    dens 10\n}\nloss cross_entropy\n")
    result = run_lipc("compile", str(spec), cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0] == f"{spec}:3:5: error: unknown layer 'dens'"
    assert lines[1] == "        dens 10"
    assert lines[2] == "        ^"
    assert lines[3] == "hint: did you mean 'dense'?"
    assert "Traceback" not in result.stderr


def test_missing_spec_is_one_line(tmp_path):
    result = run_lipc("compile", "missing.lip", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["lipc: error: spec file not found: missing.lip", "hint: check the path"]


@pytest.mark.parametrize(
    "option, message",
    [
        (["--epsilon", "-1"], "epsilon must be greater than 0, not -1"),
        (["--epsilon", "abc"], "expected a number, not 'abc'"),
        (["--delta", "2"], "delta must be less than 1, not 2"),
        (["--epochs", "0"], "expected a number of at least 1, not 0"),
        (["--lr", "nan"], "lr must be a finite number, not nan"),
    ],
)
def test_nonsensical_option_rejected(digits_spec, tmp_path, option, message):
    result = run_lipc("train", str(digits_spec), *option, cwd=tmp_path)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert message in result.stderr
    assert not (tmp_path / "runs").exists()


def test_train_without_epsilon_rejected(digits_spec, tmp_path):
    result = run_lipc("train", str(digits_spec), cwd=tmp_path)
    assert result.returncode == 1
    assert "no privacy target" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_unavailable_device_rejected(digits_spec, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    result = run_lipc("train", str(digits_spec), "--epsilon", "3", "--device", "cuda", cwd=tmp_path)
    assert result.returncode == 1
    assert "no CUDA GPU is available" in result.stderr


def test_train_export_and_run_onnx(digits_spec, tmp_path):
    train = run_lipc("--quiet", "train", str(digits_spec), "--epsilon", "2", "--epochs", "3", "--seed", "1", "--out", "run", cwd=tmp_path)
    assert train.returncode == 0, train.stderr
    assert "test accuracy" in train.stdout
    run_dir = tmp_path / "run"
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.json", "ledger.json", "metrics.json", "spec.lip", "weights.pt"]

    # The ledger's ε is dp-accounting's for the same q, steps and noise multiplier, within the target.
    ledger = json.loads((run_dir / "ledger.json").read_text())
    assert ledger["steps_taken"] == 3 * 6
    direct = compute_epsilon(ledger["sampling_rate"], ledger["noise_multiplier"], ledger["steps_taken"], ledger["delta"])
    assert ledger["epsilon_spent"] == pytest.approx(direct, rel=1e-12)
    assert ledger["epsilon_spent"] <= 2.0
    assert set(ledger["tensors"]) == {"dense_1.weight", "dense_3.weight"}

    export = run_lipc("export", "run", "-o", "model.onnx", cwd=tmp_path)
    assert export.returncode == 0, export.stderr
    assert "largest difference" in export.stdout

    model = onnx.load(str(tmp_path / "model.onnx"))
    metadata = {entry.key: entry.value for entry in model.metadata_props}
    assert METADATA_KEYS <= set(metadata)
    assert float(metadata["lipc.epsilon"]) == pytest.approx(ledger["epsilon_spent"])
    assert int(metadata["lipc.steps"]) == 18
    assert float(metadata["lipc.lipschitz_constant"]) <= 1.0

    # The ONNX graph includes the input clipping: inputs far outside the ball give PyTorch's logits.
    compiled = load_compiled(read_run(run_dir))
    inputs = 50 * torch.randn(64, 64, generator=torch.Generator().manual_seed(0))
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    (onnx_logits,) = session.run(["logits"], {"input": inputs.numpy()})
    with torch.no_grad():
        torch_logits = compiled.module.eval()(inputs).numpy()
    np.testing.assert_allclose(onnx_logits, torch_logits, atol=1e-5)


def test_existing_run_folder_refused(digits_spec, tmp_path):
    (tmp_path / "run").mkdir()
    result = run_lipc("train", str(digits_spec), "--epsilon", "3", "--out", "run", cwd=tmp_path)
    assert result.returncode == 1
    assert "run folder already exists: run" in result.stderr


def test_export_of_missing_run(tmp_path):
    result = run_lipc("export", "nowhere", "-o", "model.onnx", cwd=tmp_path)
    assert result.returncode == 1
    assert "run folder not found: nowhere" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_export_of_damaged_run_leaves_no_file(digits_spec, tmp_path):
    train = run_lipc("--quiet", "train", str(digits_spec), "--epsilon", "3", "--epochs", "1", "--out", "run", cwd=tmp_path)
    assert train.returncode == 0, train.stderr
    (tmp_path / "run" / "weights.pt").write_bytes(b"not a checkpoint")
    result = run_lipc("export", "run", "-o", "model.onnx", cwd=tmp_path)
    assert result.returncode == 1
    assert "cannot read" in result.stderr
    assert "weights.pt" in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_digits_accuracy_at_epsilon_3(digits_spec, tmp_path):
    """The README's first command: median test accuracy over seeds 0, 1, 2 is at least 85%."""
    from lipc.train.trainer import train

    accuracies = []
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        compiled = lipc.compile(digits_spec)
        config = compiled.checked.train
        config = type(config)(**{**config.__dict__, "epsilon": 3.0, "seed": seed})
        result = train(compiled, config, tmp_path / f"seed{seed}", device="cpu", show_progress=False)
        assert result.ledger.epsilon_spent <= 3.0
        accuracies.append(result.test_accuracy)
    assert statistics.median(accuracies) >= 0.85, accuracies


def test_import_from_source_checkout():
    """`import lipc` from the repository root loads the source tree, which must find the grammar too."""
    code = "import lipc; print(lipc.__file__); print(lipc.compile('specs/digits_mlp.lip').name)"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    module_file, network = result.stdout.split()
    assert module_file.startswith(str(REPO / "lipc"))
    assert network == "digits_mlp"
