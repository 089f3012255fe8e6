"""Readers for data files: NumPy .npz, CSV, MNIST IDX and the CIFAR-10 Python batches.

Each reader returns the training examples and, when the file or folder carries one, its own
test split. Every problem with a file becomes a one-line DataError that names the file.
"""

from __future__ import annotations

import csv
import gzip
import io
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lipc.errors import DataError

NPZ_FEATURES, NPZ_LABELS = "x", "y"
NPZ_TEST_FEATURES, NPZ_TEST_LABELS = "x_test", "y_test"

# File names of the MNIST distribution, each optionally gzipped.
IDX_TRAIN_IMAGES, IDX_TRAIN_LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"
IDX_TEST_IMAGES, IDX_TEST_LABELS = "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"
# IDX type codes (third byte of the magic number) and the big-endian dtypes they stand for.
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
IDX_HEADER_BYTES = 4
IDX_DIMENSION_BYTES = 4
GZIP_MAGIC = b"\x1f\x8b"

CIFAR_TRAIN_PREFIX, CIFAR_TEST_BATCH = "data_batch_", "test_batch"
CIFAR_IMAGE_SHAPE = (3, 32, 32)


@dataclass(frozen=True)
class Examples:
    """Features and labels of one split, as read from `origin`.

    Array formats count rows from 0, and row i of a CSV file sits on line `line_numbers[i]`.
    A subset keeps, in `source_rows`, the row of the source that each of its rows came from.
    """

    features: np.ndarray
    labels: np.ndarray
    origin: str
    line_numbers: np.ndarray | None = None
    source_rows: np.ndarray | None = None

    def row_name(self, index: int) -> str:
        row = int(self.source_rows[index]) if self.source_rows is not None else index
        if self.line_numbers is not None:
            return f"line {int(self.line_numbers[row])} of {self.origin}"
        return f"row {row} (counting from 0) of {self.origin}"


@dataclass(frozen=True)
class SourceData:
    """The examples of a data source: a training split, and a test split when the source has one."""

    train: Examples
    test: Examples | None
    preprocessing: str


def _unreadable(path: Path, reason: str, hint: str = "check the file, or write it again") -> DataError:
    return DataError(f"cannot read data file {path}: {reason}", hint=hint)


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise DataError(f"data file not found: {path}", hint="check the path; a relative path in a spec is read from the spec's folder")


def read_source(path: Path, label_column: str) -> SourceData:
    """Read a data file or folder, choosing the reader from its name and contents."""
    _check_readable(path)
    if path.is_dir():
        if any(path.glob(f"{CIFAR_TRAIN_PREFIX}*")):
            return read_cifar10(path)
        if _idx_file(path, IDX_TRAIN_IMAGES) is not None:
            return read_idx_folder(path)
        raise DataError(
            f"data folder {path} contains neither CIFAR-10 batches nor MNIST IDX files",
            hint=f"a CIFAR-10 folder contains {CIFAR_TRAIN_PREFIX}1 ..., and an MNIST folder contains {IDX_TRAIN_IMAGES}[.gz] and {IDX_TRAIN_LABELS}[.gz]",
        )
    suffixes = [suffix.lower() for suffix in path.suffixes]
    if suffixes[-1:] == [".npz"]:
        return read_npz(path)
    if suffixes[-1:] == [".csv"]:
        return read_csv(path, label_column)
    if "idx" in path.name:
        return read_idx_pair(path)
    raise DataError(
        f"unknown data format: {path}",
        hint="use a .npz or .csv file, an MNIST IDX images file or folder, or a CIFAR-10 batch folder",
    )


# NumPy .npz ------------------------------------------------------------------------------


def read_npz(path: Path) -> SourceData:
    """Read arrays `x` and `y`, and `x_test` and `y_test` when both are present."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = set(archive.files)
            if not {NPZ_FEATURES, NPZ_LABELS} <= keys:
                raise DataError(
                    f"data file {path} has arrays {sorted(keys)}, but no '{NPZ_FEATURES}' and '{NPZ_LABELS}'",
                    hint=f"save features as {NPZ_FEATURES} and labels as {NPZ_LABELS}, e.g. np.savez(path, x=features, y=labels)",
                )
            has_test = {NPZ_TEST_FEATURES, NPZ_TEST_LABELS} <= keys
            if not has_test and keys & {NPZ_TEST_FEATURES, NPZ_TEST_LABELS}:
                raise DataError(
                    f"data file {path} has only one of '{NPZ_TEST_FEATURES}' and '{NPZ_TEST_LABELS}'",
                    hint="save both arrays of the test split, or neither",
                )
            train = Examples(_numeric(archive[NPZ_FEATURES], path, NPZ_FEATURES), _numeric(archive[NPZ_LABELS], path, NPZ_LABELS), str(path))
            test = None
            if has_test:
                test = Examples(
                    _numeric(archive[NPZ_TEST_FEATURES], path, NPZ_TEST_FEATURES),
                    _numeric(archive[NPZ_TEST_LABELS], path, NPZ_TEST_LABELS),
                    f"{path} ({NPZ_TEST_FEATURES})",
                )
    except DataError:
        raise
    except PermissionError:
        raise _unreadable(path, "permission denied", "make the file readable") from None
    except (zipfile.BadZipFile, EOFError, ValueError, OSError) as error:
        raise _unreadable(path, f"not a valid .npz archive, or truncated ({error})") from None
    _check_same_length(train, path)
    if test is not None:
        _check_same_length(test, path)
    return SourceData(train, test, "")


def _numeric(array: np.ndarray, path: Path, key: str) -> np.ndarray:
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise DataError(f"array '{key}' of {path} has type {array.dtype}, not numbers", hint="save numeric arrays")
    if array.ndim == 0:
        raise DataError(f"array '{key}' of {path} is a single value, not one entry per example", hint="save one row per example")
    return array


def _check_same_length(examples: Examples, path: Path) -> None:
    if examples.labels.ndim != 1:
        raise DataError(
            f"labels of {examples.origin} have shape {list(examples.labels.shape)}, not one class index per example",
            hint="save labels as a 1-D array of class indices, not one-hot vectors",
        )
    if len(examples.features) != len(examples.labels):
        raise DataError(
            f"{examples.origin} has {len(examples.features)} examples but {len(examples.labels)} labels",
            hint="save one label per example",
        )


# CSV -------------------------------------------------------------------------------------


def read_csv(path: Path, label_column: str) -> SourceData:
    """Read a CSV file with a header row; every column but `label_column` is a feature."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except PermissionError:
        raise _unreadable(path, "permission denied", "make the file readable") from None
    except UnicodeDecodeError:
        raise _unreadable(path, "not a UTF-8 text file", "save the CSV file as UTF-8 text") from None
    except OSError as error:
        raise _unreadable(path, error.strerror or str(error)) from None

    if '"' not in text:
        fast = _read_plain_csv(text, path, label_column)
        if fast is not None:
            return fast

    # Record the line on which each row ends, so that messages name the line of the file.
    rows, line_numbers = [], []
    reader = csv.reader(io.StringIO(text))
    try:
        for row in reader:
            if row:
                rows.append(row)
                line_numbers.append(reader.line_num)
    except csv.Error as error:
        raise _unreadable(path, f"malformed CSV at line {reader.line_num} ({error})") from None
    if not rows:
        raise DataError(f"data file {path} is empty", hint="write a header row, then one row per example")
    header = [name.strip() for name in rows[0]]
    label_index = _label_index(header, label_column, path)
    rows, line_numbers = rows[1:], np.asarray(line_numbers[1:], dtype=np.int64)

    try:
        values = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(header))
    except ValueError:
        values = _parse_rows(rows, line_numbers, header, path)
    return _csv_examples(values, label_index, path, line_numbers)


def _read_plain_csv(text: str, path: Path, label_column: str) -> SourceData | None:
    """Parse a CSV file without quoted fields with NumPy's C parser.

    Return None when any line does not parse, so that the slower reader names the bad cell.
    """
    lines = text.splitlines()
    line_numbers = [number for number, line in enumerate(lines, start=1) if line.strip()]
    if not line_numbers:
        raise DataError(f"data file {path} is empty", hint="write a header row, then one row per example")
    header = [name.strip() for name in lines[line_numbers[0] - 1].split(",")]
    label_index = _label_index(header, label_column, path)
    row_lines = np.asarray(line_numbers[1:], dtype=np.int64)
    if not len(row_lines):
        return _csv_examples(np.empty((0, len(header))), label_index, path, row_lines)

    try:
        values = np.loadtxt(io.StringIO(text), delimiter=",", skiprows=line_numbers[0], ndmin=2, dtype=np.float64, comments=None)
    except ValueError:
        return None
    if values.shape != (len(row_lines), len(header)):
        return None
    return _csv_examples(values, label_index, path, row_lines)


# Columns named in a "no such column" message; a wide file's list is cut after these.
COLUMNS_SHOWN = 10


def _label_index(header: list[str], label_column: str, path: Path) -> int:
    if label_column not in header:
        shown = ", ".join(header[:COLUMNS_SHOWN])
        if len(header) > COLUMNS_SHOWN:
            shown += f" ... {header[-1]} ({len(header)} columns)"
        raise DataError(
            f"data file {path} has no column '{label_column}'; its columns are {shown}",
            hint="name the label column with label_column = \"NAME\" in the data section, or --label-column",
        )
    return header.index(label_column)


def _csv_examples(values: np.ndarray, label_index: int, path: Path, line_numbers: np.ndarray) -> SourceData:
    return SourceData(Examples(np.delete(values, label_index, axis=1), values[:, label_index], str(path), line_numbers), None, "")


def _parse_rows(rows: list[list[str]], line_numbers: np.ndarray, header: list[str], path: Path) -> np.ndarray:
    """Parse cell by cell, raising a DataError on the first ragged row or non-numeric cell."""
    values = []
    for line, row in zip(line_numbers, rows):
        if len(row) != len(header):
            raise DataError(
                f"line {line} of {path} has {len(row)} values, but the header has {len(header)} columns",
                hint="give every row one value per column",
            )
        values.append([_parse_number(cell, path, int(line), header[column]) for column, cell in enumerate(row)])
    return np.asarray(values, dtype=np.float64)


def _parse_number(cell: str, path: Path, line: int, column: str) -> float:
    try:
        return float(cell)
    except ValueError:
        raise DataError(f"line {line} of {path}, column '{column}': {cell.strip()!r} is not a number", hint="write numbers only; encode classes as 0, 1, 2 ...") from None


# MNIST IDX -------------------------------------------------------------------------------


def _idx_file(folder: Path, stem: str) -> Path | None:
    for name in (stem, f"{stem}.gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def read_idx_folder(folder: Path) -> SourceData:
    """Read the MNIST files of a folder; the t10k files, when present, are the test split."""
    train = _read_idx_examples(_idx_file(folder, IDX_TRAIN_IMAGES), _idx_file(folder, IDX_TRAIN_LABELS), folder, IDX_TRAIN_LABELS)
    test_images = _idx_file(folder, IDX_TEST_IMAGES)
    test = None
    if test_images is not None:
        test = _read_idx_examples(test_images, _idx_file(folder, IDX_TEST_LABELS), folder, IDX_TEST_LABELS)
    return SourceData(train, test, "")


def read_idx_pair(images_path: Path) -> SourceData:
    """Read an IDX images file and the labels file beside it (`images-idx3` → `labels-idx1`)."""
    labels_name = images_path.name.replace("images-idx3", "labels-idx1")
    if labels_name == images_path.name:
        raise DataError(
            f"cannot tell where the labels of {images_path} are",
            hint="name the images file *-images-idx3-ubyte[.gz] with its *-labels-idx1-ubyte[.gz] beside it, or pass the folder",
        )
    labels_path = images_path.with_name(labels_name)
    return SourceData(_read_idx_examples(images_path, labels_path if labels_path.is_file() else None, images_path.parent, labels_name), None, "")


def _read_idx_examples(images_path: Path, labels_path: Path | None, folder: Path, labels_name: str) -> Examples:
    if labels_path is None:
        raise DataError(f"labels file not found: {folder / labels_name}[.gz]", hint="put the labels file beside the images file")
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    examples = Examples(images, labels, str(images_path))
    if labels.ndim != 1:
        raise DataError(f"{labels_path} contains an array of shape {list(labels.shape)}, not one label per example", hint="pass an idx1 labels file")
    if len(images) != len(labels):
        raise DataError(f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels", hint="pass matching images and labels files")
    return examples


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file, gzipped or not: a magic number, the dimensions, then the values."""
    try:
        raw = path.read_bytes()
        if raw[:2] == GZIP_MAGIC:
            raw = gzip.decompress(raw)
    except PermissionError:
        raise _unreadable(path, "permission denied", "make the file readable") from None
    except (EOFError, gzip.BadGzipFile, zipfile.BadZipFile, OSError) as error:
        raise _unreadable(path, f"damaged or truncated gzip stream ({error})") from None

    if len(raw) < IDX_HEADER_BYTES or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES:
        raise _unreadable(path, "not an IDX file (bad magic number)")
    dtype = np.dtype(IDX_DTYPES[raw[2]])
    dimensions = raw[3]
    header_end = IDX_HEADER_BYTES + IDX_DIMENSION_BYTES * dimensions
    if dimensions == 0 or len(raw) < header_end:
        raise _unreadable(path, "truncated IDX header")
    shape = tuple(int(size) for size in np.frombuffer(raw[IDX_HEADER_BYTES:header_end], dtype=">u4"))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    available = len(raw) - header_end
    if available != expected:
        state = "truncated" if available < expected else "longer than its header says"
        raise _unreadable(path, f"{state}: the header declares shape {list(shape)} ({expected} bytes of values), the file has {available}")
    return np.frombuffer(raw, dtype=dtype, offset=header_end).reshape(shape).astype(dtype.newbyteorder("="))


# CIFAR-10 Python batches -----------------------------------------------------------------


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickle only plain containers and NumPy arrays, never arbitrary code.

    CIFAR-10 batches are pickles; a pickle from an untrusted source could otherwise run
    any function on load.
    """

    ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"forbidden global {module}.{name}")
        return super().find_class(module, name)


def _read_cifar_batch(path: Path) -> Examples:
    try:
        with path.open("rb") as handle:
            batch = _ArrayUnpickler(handle, encoding="bytes").load()
    except PermissionError:
        raise _unreadable(path, "permission denied", "make the file readable") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, OSError) as error:
        raise _unreadable(path, f"not a CIFAR-10 batch, or truncated ({error})") from None

    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise _unreadable(path, "not a CIFAR-10 batch: no b'data' and b'labels' entries")
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[b"labels"])
    image_size = int(np.prod(CIFAR_IMAGE_SHAPE))
    if data.ndim != 2 or data.shape[1] != image_size or len(labels) != len(data):
        raise _unreadable(path, f"data of shape {list(data.shape)} with {len(labels)} labels; expected N rows of {image_size} values and N labels")
    return Examples(data.reshape((len(data),) + CIFAR_IMAGE_SHAPE), labels, str(path))


def read_cifar10(folder: Path) -> SourceData:
    """Read data_batch_* as the training split and test_batch, when present, as the test split."""
    batches = [_read_cifar_batch(path) for path in sorted(folder.glob(f"{CIFAR_TRAIN_PREFIX}*"))]
    train = Examples(np.concatenate([b.features for b in batches]), np.concatenate([b.labels for b in batches]), str(folder))
    test = _read_cifar_batch(folder / CIFAR_TEST_BATCH) if (folder / CIFAR_TEST_BATCH).is_file() else None
    return SourceData(train, test, "")
