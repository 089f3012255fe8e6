"""Training on the user's own files from the command line, and bad data rejected before training."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lipc.cli import main

from conftest import run_lipc
from test_data import toy_arrays, write_csv, write_npz

SPEC = """\
network toy {
    input shape=[4] clip_norm=2.0
    dense 16
    groupsort 2
    dense 3
}
loss cross_entropy temperature=0.25
train {
    epochs = 2
    batch_size = 16
}
privacy {
    epsilon = 4
}
data {
    SETTINGS
}
"""


def write_spec(folder, settings: str = "") -> str:
    path = folder / "toy.lip"
    path.write_text(SPEC.replace("SETTINGS", settings), encoding="utf-8")
    return str(path)


def separable_arrays(count: int = 240) -> tuple[np.ndarray, np.ndarray]:
    """Three well-separated clusters, so that two private epochs learn something."""
    generator = np.random.default_rng(0)
    labels = np.arange(count) % 3
    centers = np.array([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0]])
    return centers[labels] + generator.normal(0, 0.1, size=(count, 4)), labels


def test_train_on_npz_one_command(tmp_path):
    x, y = separable_arrays()
    write_npz(tmp_path / "mine.npz", x=x, y=y)
    spec = write_spec(tmp_path)
    result = run_lipc("train", spec, "--data", "mine.npz", "--out", "run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    ledger = json.loads((tmp_path / "run" / "ledger.json").read_text())
    assert ledger["dataset_size"] == 192
    assert ledger["preprocessing_covered_by_guarantee"] is True
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["data"] == str(tmp_path / "mine.npz")


def test_train_on_csv_from_spec(tmp_path, capsys):
    x, y = separable_arrays()
    write_csv(tmp_path / "mine.csv", x, y, label_column="kind")
    spec = write_spec(tmp_path, 'source = "mine.csv"\n    label_column = "kind"\n    preprocess = scale(factor=0.5)')
    assert main(["--quiet", "train", spec, "--out", str(tmp_path / "run")]) == 0
    ledger = json.loads((tmp_path / "run" / "ledger.json").read_text())
    assert ledger["preprocessing"] == "multiplied by the constant 0.5"
    assert "test accuracy" in capsys.readouterr().out


def test_data_statistics_recorded_in_ledger(tmp_path):
    x, y = separable_arrays()
    write_npz(tmp_path / "mine.npz", x=x, y=y)
    spec = write_spec(tmp_path, 'source = "mine.npz"\n    allow_data_statistics = true\n    preprocess = standardize')
    assert main(["--quiet", "train", spec, "--out", str(tmp_path / "run")]) == 0
    ledger = json.loads((tmp_path / "run" / "ledger.json").read_text())
    assert ledger["preprocessing_covered_by_guarantee"] is False


def nan_file(folder):
    x, y = toy_arrays()
    x[8, 0] = np.nan
    return write_npz(folder / "bad.npz", x=x, y=y), "row 8 (counting from 0) of {path} has a NaN or infinite value"


def shape_file(folder):
    x, y = toy_arrays()
    return write_npz(folder / "bad.npz", x=x[:, :3], y=y), "{path} has examples of shape [3], but the network's input has shape [4]"


def label_file(folder):
    x, y = toy_arrays()
    y[20] = 3
    return write_csv(folder / "bad.csv", x, y), "line 22 of {path} has label 3, outside the network's output range 0..2"


def empty_file(folder):
    return write_npz(folder / "bad.npz", x=np.zeros((0, 4)), y=np.zeros(0)), "the training set of {path} is empty"


def one_class_file(folder):
    x, _ = toy_arrays()
    return write_npz(folder / "bad.npz", x=x, y=np.zeros(len(x))), "the training set of {path} has only class 0; a classifier needs at least 2"


def missing_file(folder):
    return folder / "absent.npz", "data file not found: {path}"


def truncated_file(folder):
    path = write_npz(folder / "bad.npz")
    path.write_bytes(path.read_bytes()[:100])
    return path, "cannot read data file {path}: not a valid .npz archive, or truncated"


@pytest.mark.parametrize("make_file", [nan_file, shape_file, label_file, empty_file, one_class_file, missing_file, truncated_file])
def test_bad_data_rejected_before_training(tmp_path, capsys, make_file):
    path, expected = make_file(tmp_path)
    spec = write_spec(tmp_path)
    run_dir = tmp_path / "runs" / "toy"
    assert main(["train", spec, "--data", str(path), "--out", str(run_dir)]) == 1

    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].startswith("lipc: error: " + expected.format(path=path))
    assert len(lines) == 2
    assert lines[1].startswith("hint: ")
    assert not (tmp_path / "runs").exists()


def test_separate_test_data_option(tmp_path):
    x, y = separable_arrays()
    write_npz(tmp_path / "train.npz", x=x, y=y)
    write_csv(tmp_path / "test.csv", x[:30], y[:30])
    spec = write_spec(tmp_path)
    arguments = ["--quiet", "train", spec, "--data", str(tmp_path / "train.npz"), "--test-data", str(tmp_path / "test.csv")]
    assert main(arguments + ["--out", str(tmp_path / "run")]) == 0
    assert json.loads((tmp_path / "run" / "ledger.json").read_text())["dataset_size"] == len(y)


def test_builtin_data_option_shape(tmp_path, capsys, digits_spec):
    assert main(["train", str(digits_spec), "--epsilon", "3", "--data", "wine", "--out", str(tmp_path / "run")]) == 1
    error = capsys.readouterr().err.splitlines()[0]
    assert error == "lipc: error: wine has examples of shape [13], but the network's input has shape [64]"
    assert not (tmp_path / "run").exists()


def test_export_of_csv_run(tmp_path, capsys):
    x, y = separable_arrays()
    write_csv(tmp_path / "mine.csv", x, y, label_column="kind")
    spec = write_spec(tmp_path, 'source = "mine.csv"\n    label_column = "kind"')
    assert main(["--quiet", "train", spec, "--out", str(tmp_path / "run")]) == 0
    assert main(["--quiet", "export", str(tmp_path / "run")]) == 0
    assert (tmp_path / "run" / "model.onnx").is_file()
