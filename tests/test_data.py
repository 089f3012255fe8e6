"""Data loading: built-in sets, each file format, preprocessing and every validation error."""

from __future__ import annotations

import builtins
import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from lipc.check import check_spec
from lipc.data import L2Normalize, Normalize, Scale, Standardize, load_dataset
from lipc.errors import DataError, SpecError
from lipc.lang import parse_source

FEATURES = 4
CLASSES = 3
EXAMPLES = 60


def toy_arrays(count: int = EXAMPLES, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    generator = np.random.default_rng(seed)
    return generator.uniform(0, 1, size=(count, FEATURES)), np.arange(count) % CLASSES


def write_npz(path: Path, **arrays) -> Path:
    if not arrays:
        x, y = toy_arrays()
        arrays = {"x": x, "y": y}
    np.savez(path, **arrays)
    return path


def write_csv(path: Path, features: np.ndarray, labels, label_column: str = "label") -> Path:
    header = ",".join([f"f{i}" for i in range(features.shape[1])] + [label_column])
    rows = [",".join([repr(float(v)) for v in row] + [str(label)]) for row, label in zip(features, labels)]
    path.write_text("\n".join([header] + rows) + "\n", encoding="utf-8")
    return path


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", size) for size in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_folder(folder: Path, compress: bool, with_test: bool = True) -> Path:
    folder.mkdir()
    generator = np.random.default_rng(0)
    splits = [("train", 30)] + ([("t10k", 12)] if with_test else [])
    for prefix, count in splits:
        images = generator.integers(0, 256, size=(count, 2, 2))
        labels = np.arange(count) % CLASSES
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            data = idx_bytes(array)
            name = f"{prefix}-{kind}-ubyte"
            if compress:
                (folder / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (folder / name).write_bytes(data)
    return folder


def write_cifar_folder(folder: Path, batches: int = 2, with_test: bool = True) -> Path:
    folder.mkdir()
    generator = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, batches + 1)] + (["test_batch"] if with_test else [])
    for name in names:
        batch = {
            b"batch_label": name.encode(),
            b"labels": [i % CLASSES for i in range(10)],
            b"data": generator.integers(0, 256, size=(10, 3072), dtype=np.uint8),
            b"filenames": [f"{i}.png".encode() for i in range(10)],
        }
        with (folder / name).open("wb") as handle:
            pickle.dump(batch, handle, protocol=2)
    return folder


def message_of(source, shape=(FEATURES,), **options) -> str:
    with pytest.raises(DataError) as caught:
        load_dataset(str(source), shape, num_classes=CLASSES, **options)
    return caught.value.message


# Built-in data sets ----------------------------------------------------------------------

BUILTINS = [("digits", 64, 10, 1797), ("breast_cancer", 30, 2, 569), ("wine", 13, 3, 178), ("mnist1d", 40, 10, 5000)]


@pytest.mark.parametrize("name, features, classes, total", BUILTINS)
def test_builtin_shapes(name, features, classes, total):
    dataset = load_dataset(name, (features,))
    assert dataset.train_inputs.shape == (total - round(0.2 * total + 0.4999), features)
    assert len(dataset.test_labels) == total - len(dataset.train_labels)
    assert dataset.num_classes == classes
    assert "no statistics of the data" in dataset.preprocessing


@pytest.mark.parametrize("name", ["digits", "wine"])
def test_builtin_split_is_fixed(name):
    first, second = load_dataset(name, (64,) if name == "digits" else (13,)), load_dataset(name, (64,) if name == "digits" else (13,))
    assert first.test_inputs.equal(second.test_inputs)


def test_mnist1d_generated_offline(tmp_path, monkeypatch):
    import requests

    def no_network(*args, **kwargs):
        raise AssertionError("mnist1d tried to download")

    monkeypatch.setattr(requests, "get", no_network)
    monkeypatch.chdir(tmp_path)
    dataset = load_dataset("mnist1d", (1, 40))
    assert dataset.train_inputs.shape == (4000, 1, 40)
    assert list(tmp_path.iterdir()) == []


def test_mnist1d_keeps_global_random_state():
    np.random.seed(7)
    expected = np.random.rand()
    np.random.seed(7)
    load_dataset("mnist1d", (40,))
    assert np.random.rand() == expected


# File formats ----------------------------------------------------------------------------


def test_npz_split_is_seeded(tmp_path):
    path = write_npz(tmp_path / "train.npz")
    dataset = load_dataset(str(path), (FEATURES,), num_classes=CLASSES)
    assert (len(dataset.train_labels), len(dataset.test_labels)) == (48, 12)
    assert dataset.test_inputs.equal(load_dataset(str(path), (FEATURES,), num_classes=CLASSES).test_inputs)


def test_npz_own_test_split(tmp_path):
    x, y = toy_arrays()
    x_test, y_test = toy_arrays(9, seed=1)
    path = write_npz(tmp_path / "data.npz", x=x, y=y, x_test=x_test, y_test=y_test)
    dataset = load_dataset(str(path), (FEATURES,), num_classes=CLASSES)
    assert len(dataset.train_labels) == EXAMPLES
    assert np.allclose(dataset.test_inputs.numpy(), x_test.astype(np.float32))


def test_npz_reshaped_to_input(tmp_path):
    path = write_npz(tmp_path / "train.npz")
    dataset = load_dataset(str(path), (1, 2, 2), num_classes=CLASSES)
    assert dataset.train_inputs.shape[1:] == (1, 2, 2)


def test_separate_test_file(tmp_path):
    train = write_npz(tmp_path / "train.npz")
    x, y = toy_arrays(15, seed=2)
    test = write_csv(tmp_path / "test.csv", x, y)
    dataset = load_dataset(str(train), (FEATURES,), num_classes=CLASSES, test_source=str(test))
    assert len(dataset.train_labels) == EXAMPLES
    assert len(dataset.test_labels) == 15


def test_csv_label_column(tmp_path):
    x, y = toy_arrays()
    path = write_csv(tmp_path / "data.csv", x, y, label_column="species")
    dataset = load_dataset(str(path), (FEATURES,), num_classes=CLASSES, label_column="species")
    train_and_test = np.concatenate([dataset.train_inputs.numpy(), dataset.test_inputs.numpy()])
    assert sorted(map(tuple, train_and_test.round(5))) == sorted(map(tuple, x.astype(np.float32).round(5)))


def test_csv_quoted_fields(tmp_path):
    x, y = toy_arrays()
    plain = write_csv(tmp_path / "plain.csv", x, y)
    quoted = tmp_path / "quoted.csv"
    quoted.write_text("\n".join(",".join(f'"{cell}"' for cell in line.split(",")) for line in plain.read_text().splitlines()) + "\n")
    expected = load_dataset(str(plain), (FEATURES,), num_classes=CLASSES)
    dataset = load_dataset(str(quoted), (FEATURES,), num_classes=CLASSES)
    assert dataset.train_inputs.equal(expected.train_inputs)


@pytest.mark.parametrize("compress", [True, False])
def test_idx_folder(tmp_path, compress):
    folder = write_idx_folder(tmp_path / "mnist", compress)
    dataset = load_dataset(str(folder), (1, 2, 2), num_classes=CLASSES)
    assert (len(dataset.train_labels), len(dataset.test_labels)) == (30, 12)


def test_idx_images_file(tmp_path):
    folder = write_idx_folder(tmp_path / "mnist", compress=True, with_test=False)
    dataset = load_dataset(str(folder / "train-images-idx3-ubyte.gz"), (FEATURES,), num_classes=CLASSES)
    assert len(dataset.train_labels) + len(dataset.test_labels) == 30


def test_cifar10_folder(tmp_path):
    folder = write_cifar_folder(tmp_path / "cifar-10-batches-py")
    dataset = load_dataset(str(folder), (3, 32, 32), num_classes=CLASSES)
    assert (len(dataset.train_labels), len(dataset.test_labels)) == (20, 10)


# Preprocessing ---------------------------------------------------------------------------


def test_scale_applies_constant(tmp_path):
    x, y = toy_arrays()
    path = write_npz(tmp_path / "data.npz", x=x, y=y, x_test=x, y_test=y)
    dataset = load_dataset(str(path), (FEATURES,), num_classes=CLASSES, preprocess=(Scale(0.5, 1.0),))
    assert np.allclose(dataset.test_inputs.numpy(), x * 0.5 + 1.0, atol=1e-6)


def test_normalize_per_channel(tmp_path):
    x, y = toy_arrays()
    path = write_npz(tmp_path / "data.npz", x=x, y=y, x_test=x, y_test=y)
    dataset = load_dataset(str(path), (2, 2), num_classes=CLASSES, preprocess=(Normalize((0.5, 0.0), (0.25, 2.0)),))
    expected = (x.reshape(-1, 2, 2) - np.array([0.5, 0.0])[None, :, None]) / np.array([0.25, 2.0])[None, :, None]
    assert np.allclose(dataset.test_inputs.numpy(), expected, atol=1e-5)


def test_normalize_channel_mismatch(tmp_path):
    path = write_npz(tmp_path / "data.npz")
    message = message_of(path, (FEATURES,), preprocess=(Normalize((0.5, 0.5), (1.0, 1.0)),))
    assert message == "normalize has 2 values per statistic, but the network's input has 4 channels (shape [4])"


def test_l2_normalize_each_example(tmp_path):
    path = write_npz(tmp_path / "data.npz")
    dataset = load_dataset(str(path), (FEATURES,), num_classes=CLASSES, preprocess=(L2Normalize(),))
    assert np.allclose(dataset.train_inputs.norm(dim=1).numpy(), 1.0, atol=1e-6)


def test_standardize_rejected_without_flag(tmp_path):
    path = write_npz(tmp_path / "data.npz")
    message = message_of(path, preprocess=(Standardize(),))
    assert message == "preprocessing 'standardize' computes statistics of the private training data, which the privacy guarantee does not cover"


def test_standardize_allowed_is_recorded(tmp_path):
    path = write_npz(tmp_path / "data.npz")
    dataset = load_dataset(str(path), (FEATURES,), num_classes=CLASSES, preprocess=(Standardize(),), allow_data_statistics=True)
    assert dataset.uses_training_statistics
    assert "NOT COVERED by the privacy guarantee" in dataset.preprocessing
    assert np.allclose(dataset.train_inputs.mean(dim=0).numpy(), 0.0, atol=1e-5)


# Validation: one line per kind of bad data -----------------------------------------------


def test_shape_mismatch(tmp_path):
    path = write_npz(tmp_path / "data.npz")
    with pytest.raises(DataError) as caught:
        load_dataset(str(path), (8,), num_classes=CLASSES)
    assert caught.value.message == f"{path} has examples of shape [4], but the network's input has shape [8]"
    assert caught.value.hint == "set the input layer to shape=[4] (any shape with 4 values), or reshape the data"


def test_nan_row_in_npz(tmp_path):
    x, y = toy_arrays()
    x[17, 2] = np.nan
    x[30, 0] = np.inf
    path = write_npz(tmp_path / "data.npz", x=x, y=y)
    assert message_of(path) == f"row 17 (counting from 0) of {path} has a NaN or infinite value"


def test_infinite_row_in_csv(tmp_path):
    x, y = toy_arrays()
    x[5, 1] = np.inf
    path = write_csv(tmp_path / "data.csv", x, y)
    assert message_of(path) == f"line 7 of {path} has a NaN or infinite value"


def test_csv_line_after_blank_line(tmp_path):
    x, y = toy_arrays()
    x[5, 1] = np.nan
    path = write_csv(tmp_path / "data.csv", x, y)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:3] + [""] + lines[3:]) + "\n")
    assert message_of(path) == f"line 8 of {path} has a NaN or infinite value"


def test_nan_in_test_split(tmp_path):
    x, y = toy_arrays()
    x_test = x[:5].copy()
    x_test[3, 3] = np.nan
    path = write_npz(tmp_path / "data.npz", x=x, y=y, x_test=x_test, y_test=y[:5])
    assert message_of(path) == f"row 3 (counting from 0) of {path} (x_test) has a NaN or infinite value"


def test_label_outside_output_range(tmp_path):
    x, y = toy_arrays()
    y[11] = 7
    path = write_npz(tmp_path / "data.npz", x=x, y=y)
    assert message_of(path) == f"row 11 (counting from 0) of {path} has label 7, outside the network's output range 0..2"


def test_negative_label(tmp_path):
    x, y = toy_arrays()
    y[4] = -1
    path = write_csv(tmp_path / "data.csv", x, y)
    assert message_of(path) == f"line 6 of {path} has label -1, outside the network's output range 0..2"


def test_fractional_label(tmp_path):
    x, _ = toy_arrays()
    y = (np.arange(EXAMPLES) % CLASSES).astype(float)
    y[2] = 0.5
    path = write_npz(tmp_path / "data.npz", x=x, y=y)
    assert message_of(path) == f"row 2 (counting from 0) of {path} has label 0.5, not a class index"


def test_empty_training_set(tmp_path):
    path = write_npz(tmp_path / "data.npz", x=np.zeros((0, FEATURES)), y=np.zeros(0))
    assert message_of(path) == f"the training set of {path} is empty"


def test_empty_csv_training_set(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("f0,f1,f2,f3,label\n", encoding="utf-8")
    assert message_of(path) == f"the training set of {path} is empty"


def test_one_class_training_set(tmp_path):
    x, _ = toy_arrays()
    path = write_npz(tmp_path / "data.npz", x=x, y=np.full(EXAMPLES, 2))
    assert message_of(path) == f"the training set of {path} has only class 2; a classifier needs at least 2"


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.npz"
    assert message_of(path) == f"data file not found: {path}"


def test_unreadable_file(tmp_path, monkeypatch):
    x, y = toy_arrays()
    path = write_csv(tmp_path / "data.csv", x, y)

    def permission_denied(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    # Root reads files whatever their mode, so simulate the refusal the kernel gives others.
    monkeypatch.setattr(Path, "read_text", permission_denied)
    assert message_of(path) == f"cannot read data file {path}: permission denied"


def test_garbage_npz(tmp_path):
    path = tmp_path / "data.npz"
    path.write_bytes(b"this is not a zip archive")
    assert message_of(path).startswith(f"cannot read data file {path}: not a valid .npz archive, or truncated")


def test_truncated_npz(tmp_path):
    path = write_npz(tmp_path / "data.npz")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert message_of(path).startswith(f"cannot read data file {path}: not a valid .npz archive, or truncated")


def test_npz_without_arrays(tmp_path):
    x, y = toy_arrays()
    path = write_npz(tmp_path / "data.npz", features=x, labels=y)
    assert message_of(path) == f"data file {path} has arrays ['features', 'labels'], but no 'x' and 'y'"


def test_csv_missing_label_column(tmp_path):
    x, y = toy_arrays()
    path = write_csv(tmp_path / "data.csv", x, y, label_column="target")
    assert message_of(path) == f"data file {path} has no column 'label'; its columns are f0, f1, f2, f3, target"


def test_csv_text_cell(tmp_path):
    x, y = toy_arrays()
    path = write_csv(tmp_path / "data.csv", x, y)
    lines = path.read_text().splitlines()
    lines[3] = "0.1,abc,0.2,0.3,1"
    path.write_text("\n".join(lines) + "\n")
    assert message_of(path) == f"line 4 of {path}, column 'f1': 'abc' is not a number"


def test_csv_ragged_row(tmp_path):
    x, y = toy_arrays()
    path = write_csv(tmp_path / "data.csv", x, y)
    lines = path.read_text().splitlines()
    lines[9] = "0.1,0.2,1"
    path.write_text("\n".join(lines) + "\n")
    assert message_of(path) == f"line 10 of {path} has 3 values, but the header has 5 columns"


def test_csv_not_utf8(tmp_path):
    path = tmp_path / "data.csv"
    path.write_bytes(b"f0,label\n\xff\xfe,1\n")
    assert message_of(path) == f"cannot read data file {path}: not a UTF-8 text file"


@pytest.mark.parametrize("compress", [True, False])
def test_truncated_idx(tmp_path, compress):
    folder = write_idx_folder(tmp_path / "mnist", compress=False, with_test=False)
    images = folder / "train-images-idx3-ubyte"
    data = images.read_bytes()[:-10]
    if compress:
        images.unlink()
        images = folder / "train-images-idx3-ubyte.gz"
        data = gzip.compress(data)
    images.write_bytes(data)
    expected = f"cannot read data file {images}: truncated: the header declares shape [30, 2, 2] (120 bytes of values), the file has 110"
    assert message_of(folder, (1, 2, 2)) == expected


def test_cut_gzip_stream(tmp_path):
    folder = write_idx_folder(tmp_path / "mnist", compress=True, with_test=False)
    images = folder / "train-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[:-12])
    assert message_of(folder, (1, 2, 2)).startswith(f"cannot read data file {images}: damaged or truncated gzip stream")


def test_idx_missing_labels(tmp_path):
    folder = write_idx_folder(tmp_path / "mnist", compress=False, with_test=False)
    (folder / "train-labels-idx1-ubyte").unlink()
    assert message_of(folder, (1, 2, 2)) == f"labels file not found: {folder / 'train-labels-idx1-ubyte'}[.gz]"


def test_truncated_cifar_batch(tmp_path):
    folder = write_cifar_folder(tmp_path / "cifar")
    batch = folder / "data_batch_2"
    batch.write_bytes(batch.read_bytes()[:1000])
    assert message_of(folder, (3, 32, 32)).startswith(f"cannot read data file {batch}: not a CIFAR-10 batch, or truncated")


def test_cifar_pickle_cannot_run_code(tmp_path):
    folder = write_cifar_folder(tmp_path / "cifar", batches=1, with_test=False)

    class Exploit:
        def __reduce__(self):
            return (builtins.print, ("pwned",))

    with (folder / "data_batch_1").open("wb") as handle:
        pickle.dump({b"data": Exploit(), b"labels": []}, handle)
    assert message_of(folder, (3, 32, 32)) == f"cannot read data file {folder / 'data_batch_1'}: not a CIFAR-10 batch, or truncated (forbidden global builtins.print)"


def test_unknown_format(tmp_path):
    path = tmp_path / "data.parquet"
    path.write_bytes(b"PAR1")
    assert message_of(path) == f"unknown data format: {path}"


def test_folder_without_data(tmp_path):
    assert message_of(tmp_path) == f"data folder {tmp_path} contains neither CIFAR-10 batches nor MNIST IDX files"


# Settings of the data section -------------------------------------------------------------

SPEC = """network n {{
    input shape=[4] clip_norm=1
    dense 3
}}
loss cross_entropy
data {{
    {settings}
}}
"""


def parse_train(settings: str, path: str = "<spec>"):
    return check_spec(parse_source(SPEC.format(settings=settings), path)).train


def spec_message(settings: str) -> tuple[str, int, int]:
    with pytest.raises(SpecError) as caught:
        parse_train(settings)
    return caught.value.message, caught.value.location.line, caught.value.location.column


def test_data_path_from_spec_folder(tmp_path):
    config = parse_train('source = "train.npz"', str(tmp_path / "net.lip"))
    assert config.data == str(tmp_path / "train.npz")


def test_builtin_data_name():
    assert parse_train("source = wine").data == "wine"


def test_preprocess_list():
    config = parse_train("preprocess = [scale(factor=0.5, offset=-1), normalize(mean=[0.1], std=[0.2]), l2_normalize]")
    assert config.preprocess == (Scale(0.5, -1.0), Normalize((0.1,), (0.2,)), L2Normalize())


def test_label_column_setting():
    assert parse_train('label_column = "species"').label_column == "species"


def test_standardize_with_flag():
    config = parse_train("allow_data_statistics = true\n    preprocess = standardize")
    assert config.preprocess == (Standardize(),)


SPEC_ERRORS = [
    ("source = cifar", "invalid data source cifar", 7, 5),
    ("preprocess = standardize", "preprocess step 'standardize' computes statistics of the private training data, which the privacy guarantee does not cover", 7, 18),
    ("preprocess = scal(factor=2)", "unknown preprocess step 'scal'", 7, 18),
    ("preprocess = scale(factor=0)", "scale option 'factor' must not be 0", 7, 24),
    ("preprocess = normalize(mean=[0.5, 0.5], std=[1])", "normalize needs as many means as standard deviations, at least one, not 2 and 1", 7, 18),
    ("preprocess = normalize(mean=[0.5], std=[0])", "normalize option 'std' must hold positive numbers, not [0.0]", 7, 40),
    ("preprocess = l2_normalize(p=1)", "preprocess step l2_normalize takes no options", 7, 18),
    ("allow_data_statistics = 1", "allow_data_statistics must be true or false, not 1", 7, 5),
    ("label_column = [1]", "label_column must be a column name, not [1]", 7, 5),
]


@pytest.mark.parametrize("settings, message, line, column", SPEC_ERRORS)
def test_invalid_data_setting(settings, message, line, column):
    assert spec_message(settings) == (message, line, column)


def test_csv_wide_missing_column(tmp_path):
    path = tmp_path / "wide.csv"
    path.write_text(",".join(f"p{i}" for i in range(20)) + ",digit\n" + ",".join(["0"] * 21) + "\n")
    message = message_of(path, (20,))
    assert message == f"data file {path} has no column 'label'; its columns are p0, p1, p2, p3, p4, p5, p6, p7, p8, p9 ... digit (21 columns)"


def test_overflow_after_preprocessing(tmp_path):
    x, y = toy_arrays()
    x[1, 0] = 1e10
    path = write_npz(tmp_path / "data.npz", x=x, y=y, x_test=x[:6], y_test=y[:6])
    # 1e10 · 1e30 exceeds the largest float32, about 3.4e38; the other rows stay below 1e30.
    message = message_of(path, preprocess=(Scale(1e30),))
    assert message == f"after preprocessing, row 1 (counting from 0) of {path} has a NaN or infinite value"
