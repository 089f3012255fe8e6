"""`lipc privacy`: the three planning questions from the command line, and its errors."""

from __future__ import annotations

import json

import pytest

from lipc.privacy import planning

from conftest import run_lipc

SIZE = ["--dataset-size", "60000", "--batch-size", "256"]


def test_noise_question(tmp_path):
    result = run_lipc("privacy", *SIZE, "--epochs", "60", "--epsilon", "3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    expected = planning.noise_multiplier_for_epsilon(3.0, 1e-5, 60000, 256, 60)
    lines = result.stdout.splitlines()
    assert lines[0] == f"noise multiplier: {expected.noise_multiplier:.6g}"
    assert lines[1] == expected.describe()


def test_epsilon_question(tmp_path):
    result = run_lipc("privacy", *SIZE, "--epochs", "60", "--noise-multiplier", "1.1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    expected = planning.epsilon_for_noise_multiplier(1.1, 1e-5, 60000, 256, 60)
    assert result.stdout.splitlines()[0] == f"ε: {expected.epsilon:.6g}"


def test_epochs_question_json(tmp_path):
    result = run_lipc("privacy", *SIZE, "--noise-multiplier", "1.1", "--epsilon", "3", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["epochs"] == planning.max_epochs_for_budget(1.1, 3.0, 1e-5, 60000, 256).epochs
    assert answer["accountant"] == "rdp"
    assert answer["neighboring_relation"] == "add_or_remove_one"
    assert answer["sampling"] == "poisson"


def test_spec_supplies_defaults(digits_spec, tmp_path):
    result = run_lipc("privacy", str(digits_spec), "--epsilon", "3", "--accountant", "pld", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert (answer["dataset_size"], answer["batch_size"], answer["epochs"]) == (1437, 256, 40)
    assert answer["accountant"] == "pld"
    assert answer["epsilon"] <= 3.0


def test_weak_delta_warns_once(tmp_path):
    result = run_lipc("privacy", *SIZE, "--epochs", "1", "--noise-multiplier", "1", "--delta", "0.001", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == ["δ = 0.001 is at least 1/N = 1.67e-05: a mechanism that publishes one random example meets such a δ; use δ well below 1/N"]


def test_dp_accounting_output_hidden(tmp_path):
    result = run_lipc("privacy", "--dataset-size", "10", "--batch-size", "10", "--noise-multiplier", "0.06", "--epochs", "3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "absl" not in result.stderr
    assert "converge" not in result.stderr


@pytest.mark.parametrize(
    "options, code, message",
    [
        (["--epsilon", "0"], 2, "lipc: error: argument --epsilon: epsilon must be greater than 0, not 0 (see 'lipc privacy --help')"),
        (["--epsilon", "inf"], 2, "lipc: error: argument --epsilon: epsilon must be a finite number, not inf (see 'lipc privacy --help')"),
        (["--epsilon", "3", "--delta", "1"], 2, "lipc: error: argument --delta: delta must be less than 1, not 1 (see 'lipc privacy --help')"),
        (["--noise-multiplier", "-1"], 2, "lipc: error: argument --noise-multiplier: noise_multiplier must be greater than 0, not -1 (see 'lipc privacy --help')"),
        ([], 1, "lipc: error: no question asked"),
        (["--epsilon", "3", "--noise-multiplier", "1", "--epochs", "2"], 1, "lipc: error: --epsilon, --noise-multiplier and --epochs all given: there is nothing to compute"),
        (["--epsilon", "1e-6", "--epochs", "100000"], 1, "lipc: error: no noise multiplier up to 10000 reaches ε = 1e-06 at δ = 1e-05 with 23400000 steps at sampling rate 0.004267"),
    ],
)
def test_invalid_question_rejected(tmp_path, options, code, message):
    result = run_lipc("privacy", *SIZE, *options, cwd=tmp_path)
    assert result.returncode == code
    assert result.stderr.splitlines()[0] == message
    assert "Traceback" not in result.stderr


def test_missing_sizes_rejected(tmp_path):
    result = run_lipc("privacy", "--epsilon", "3", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == ["lipc: error: the data set size and the batch size are needed", "hint: pass --dataset-size and --batch-size, or a .lip file"]


def test_batch_larger_than_data_rejected(tmp_path):
    result = run_lipc("privacy", "--dataset-size", "100", "--batch-size", "200", "--epsilon", "3", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == "lipc: error: batch size must be between 1 and the data set size 100, not 200"
