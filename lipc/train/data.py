"""Built-in data sets, loaded offline with public preprocessing only."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from lipc.errors import DataError

# The train/test split is fixed, whatever the training seed, so that runs compare on one test set.
SPLIT_SEED = 0
TEST_FRACTION = 0.2


@dataclass(frozen=True)
class Dataset:
    name: str
    train_inputs: torch.Tensor
    train_labels: torch.Tensor
    test_inputs: torch.Tensor
    test_labels: torch.Tensor
    num_classes: int
    preprocessing: str

    def to(self, device: torch.device) -> "Dataset":
        return Dataset(
            self.name,
            self.train_inputs.to(device),
            self.train_labels.to(device),
            self.test_inputs.to(device),
            self.test_labels.to(device),
            self.num_classes,
            self.preprocessing,
        )


def _load_digits() -> tuple[np.ndarray, np.ndarray, str]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    # Pixels are counts from 0 to 16: dividing by that public constant uses no statistic of the data.
    return digits.data / 16.0, digits.target, "pixel values divided by the constant 16 (public); no statistics of the data"


BUILTIN_LOADERS = {"digits": _load_digits}


def load_dataset(name: str, input_shape: tuple[int, ...]) -> Dataset:
    """Load a built-in data set, split it 80/20 (stratified, fixed seed), shaped for the network."""
    from sklearn.model_selection import train_test_split

    if name not in BUILTIN_LOADERS:
        raise DataError(f"unknown data set '{name}'", hint=f"the built-in data sets are {', '.join(BUILTIN_LOADERS)}")
    features, labels, preprocessing = BUILTIN_LOADERS[name]()

    features = np.asarray(features, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64)
    if not np.isfinite(features).all():
        row = int(np.flatnonzero(~np.isfinite(features).reshape(len(features), -1).all(axis=1))[0])
        raise DataError(f"data set '{name}' has a NaN or infinite value in row {row}", hint="remove or repair that row")
    size = math.prod(features.shape[1:])
    if size != math.prod(input_shape):
        raise DataError(
            f"data set '{name}' has examples of shape {list(features.shape[1:])}, but the network's input has shape {list(input_shape)}",
            hint=f"set the input layer to shape={list(features.shape[1:])}",
        )
    features = features.reshape(len(features), *input_shape)

    train_x, test_x, train_y, test_y = train_test_split(
        features, labels, test_size=TEST_FRACTION, stratify=labels, random_state=SPLIT_SEED
    )
    return Dataset(
        name,
        torch.from_numpy(train_x),
        torch.from_numpy(train_y),
        torch.from_numpy(test_x),
        torch.from_numpy(test_y),
        int(labels.max()) + 1,
        preprocessing,
    )
