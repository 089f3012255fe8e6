"""Load a data set for a network: read it, validate it, split it and preprocess it.

Nothing is trained on data that fails a check: each check raises a one-line DataError
naming the source, the offending value or row, and what to do.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lipc.data.builtin import BUILTIN_LOADERS
from lipc.data.files import Examples, SourceData, read_source
from lipc.data.preprocess import PreprocessStep, apply_steps, describe_steps, uses_training_statistics
from lipc.errors import DataError

logger = logging.getLogger(__name__)

# The train/test split is fixed, whatever the training seed, so that runs compare on one test set.
SPLIT_SEED = 0
TEST_FRACTION = 0.2
MINIMUM_CLASSES = 2
DEFAULT_LABEL_COLUMN = "label"


@dataclass(frozen=True)
class Dataset:
    name: str
    train_inputs: torch.Tensor
    train_labels: torch.Tensor
    test_inputs: torch.Tensor
    test_labels: torch.Tensor
    num_classes: int
    preprocessing: str
    # True when preprocessing read statistics of the training data, which the privacy guarantee does not cover.
    uses_training_statistics: bool = False

    def to(self, device: torch.device) -> "Dataset":
        return dataclasses.replace(
            self,
            train_inputs=self.train_inputs.to(device),
            train_labels=self.train_labels.to(device),
            test_inputs=self.test_inputs.to(device),
            test_labels=self.test_labels.to(device),
        )


def is_builtin(source: str) -> bool:
    return source in BUILTIN_LOADERS


def read_any(source: str, label_column: str = DEFAULT_LABEL_COLUMN) -> SourceData:
    """Read a built-in data set by name, or a data file or folder by path."""
    if is_builtin(source):
        return BUILTIN_LOADERS[source]()
    return read_source(Path(source), label_column)


def load_dataset(
    source: str,
    input_shape: tuple[int, ...],
    *,
    num_classes: int | None = None,
    label_column: str = DEFAULT_LABEL_COLUMN,
    test_source: str | None = None,
    preprocess: tuple[PreprocessStep, ...] = (),
    allow_data_statistics: bool = False,
) -> Dataset:
    """Load `source` (a built-in name or a path) shaped for a network with `num_classes` outputs.

    The test split is, in order of preference: `test_source`, the source's own test split,
    or a fixed seeded 80/20 split of the source, stratified when every class allows it.
    """
    training_statistics = uses_training_statistics(preprocess)
    if training_statistics and not allow_data_statistics:
        raise DataError(
            "preprocessing 'standardize' computes statistics of the private training data, which the privacy guarantee does not cover",
            hint="use public constants (scale, normalize, l2_normalize), or set allow_data_statistics = true to accept that",
        )

    data = read_any(source, label_column)
    test = data.test
    if test_source is not None:
        if test is not None:
            logger.info("using %s as the test set instead of the test split of %s", test_source, source)
        test = read_any(test_source, label_column).train

    train = data.train
    _check_examples(train, input_shape, num_classes, "training set")
    _check_classes(train)
    if test is not None:
        _check_examples(test, input_shape, num_classes, "test set")
    else:
        train, test = _split(train)

    train_features, test_features = (np.asarray(e.features, dtype=np.float64).reshape((len(e.features),) + tuple(input_shape)) for e in (train, test))
    # An overflow becomes inf, or NaN, here: the check below reports its row, so NumPy need not warn.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        train_features, test_features = apply_steps(preprocess, train_features, test_features)
        train_features, test_features = train_features.astype(np.float32), test_features.astype(np.float32)
    for features, examples in ((train_features, train), (test_features, test)):
        _check_finite(features, examples, "after preprocessing, ", "check the constants of the preprocess setting")

    descriptions = [text for text in (data.preprocessing, describe_steps(preprocess)) if text]
    if training_statistics:
        descriptions.append("NOT COVERED by the privacy guarantee: statistics of the training data were used")
    return Dataset(
        name=source,
        train_inputs=torch.from_numpy(train_features),
        train_labels=torch.from_numpy(train.labels.astype(np.int64)),
        test_inputs=torch.from_numpy(test_features),
        test_labels=torch.from_numpy(test.labels.astype(np.int64)),
        num_classes=num_classes if num_classes is not None else int(max(train.labels.max(), test.labels.max())) + 1,
        preprocessing="; then ".join(descriptions) or "none",
        uses_training_statistics=training_statistics,
    )


def _check_examples(examples: Examples, input_shape: tuple[int, ...], num_classes: int | None, role: str) -> None:
    """Reject an empty split, a shape that does not fit the input, non-finite values and bad labels."""
    if len(examples.labels) == 0:
        raise DataError(f"the {role} of {examples.origin} is empty", hint="provide at least one example per class")

    example_shape = list(examples.features.shape[1:])
    if math.prod(example_shape) != math.prod(input_shape):
        raise DataError(
            f"{examples.origin} has examples of shape {example_shape}, but the network's input has shape {list(input_shape)}",
            hint=f"set the input layer to shape={example_shape} (any shape with {math.prod(example_shape)} values), or reshape the data",
        )

    _check_finite(examples.features, examples, "", "remove or repair that row")

    labels = examples.labels
    if not np.isfinite(labels).all():
        row = int(np.flatnonzero(~np.isfinite(labels))[0])
        raise DataError(f"{examples.row_name(row)} has label {labels[row]}, not a class index", hint="use class indices 0, 1, 2 ...")
    not_whole = np.flatnonzero(labels != np.round(labels))
    if len(not_whole):
        row = int(not_whole[0])
        raise DataError(f"{examples.row_name(row)} has label {labels[row]:g}, not a class index", hint="use class indices 0, 1, 2 ...")
    if num_classes is not None:
        outside = np.flatnonzero((labels < 0) | (labels >= num_classes))
        if len(outside):
            row = int(outside[0])
            raise DataError(
                f"{examples.row_name(row)} has label {labels[row]:g}, outside the network's output range 0..{num_classes - 1}",
                hint=f"make the last dense layer at least {int(labels.max()) + 1} wide, or relabel the classes from 0",
            )


def _check_finite(features: np.ndarray, examples: Examples, prefix: str, hint: str) -> None:
    finite_rows = np.isfinite(features.reshape(len(features), -1)).all(axis=1)
    if not finite_rows.all():
        row = int(np.flatnonzero(~finite_rows)[0])
        raise DataError(f"{prefix}{examples.row_name(row)} has a NaN or infinite value", hint=hint)


def _check_classes(train: Examples) -> None:
    classes = np.unique(train.labels)
    if len(classes) < MINIMUM_CLASSES:
        raise DataError(
            f"the training set of {train.origin} has only class {classes[0]:g}; a classifier needs at least {MINIMUM_CLASSES}",
            hint="add examples of the other classes",
        )


def _split(examples: Examples) -> tuple[Examples, Examples]:
    """Split 80/20 with a fixed seed, stratified by class when every class has two examples or more.

    NOTE: the (ε, δ) guarantee is about the training split. Adding or removing one row of the
    source can move other rows between the splits, and test rows are not protected at all,
    because their accuracy is published. Pass a separate test set for a fixed training set.
    """
    from sklearn.model_selection import train_test_split

    _, counts = np.unique(examples.labels, return_counts=True)
    test_size = math.ceil(TEST_FRACTION * len(examples.labels))
    train_size = len(examples.labels) - test_size
    stratify = examples.labels if counts.min() >= 2 and min(test_size, train_size) >= len(counts) else None
    if train_size < 1:
        raise DataError(f"{examples.origin} has {len(examples.labels)} examples, too few to split off a test set", hint="provide more examples, or a separate test set with test_data")

    indices = np.arange(len(examples.labels))
    train_indices, test_indices = train_test_split(indices, test_size=TEST_FRACTION, stratify=stratify, random_state=SPLIT_SEED)
    return _subset(examples, train_indices), _subset(examples, test_indices)


def _subset(examples: Examples, indices: np.ndarray) -> Examples:
    return dataclasses.replace(examples, features=examples.features[indices], labels=examples.labels[indices], source_rows=indices)
