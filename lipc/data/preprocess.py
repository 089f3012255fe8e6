"""Preprocessing steps declared in the `train` block.

Every step but `standardize` is a fixed function of one example and public constants, so
it reads nothing of the other examples and costs no privacy. `standardize` subtracts the
training set's per-feature mean and divides by its standard deviation: those statistics
are computed from the private training data, and the privacy guarantee does not cover
them. lipc rejects it unless the run sets `allow_data_statistics = true`, and then
records in the ledger that the guarantee does not cover the preprocessing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lipc.errors import DataError

# Added to a norm or a standard deviation before dividing by it, so that an all-zero
# example or a constant feature maps to zero instead of NaN.
DIVISION_FLOOR = 1e-12


@dataclass(frozen=True)
class Scale:
    """x ↦ factor·x + offset, with public constants."""

    factor: float
    offset: float = 0.0
    operation: str = field(default="scale", init=False)

    def apply(self, features: np.ndarray) -> np.ndarray:
        return features * self.factor + self.offset

    def describe(self) -> str:
        offset = f" plus {self.offset:g}" if self.offset else ""
        return f"multiplied by the constant {self.factor:g}{offset}"


@dataclass(frozen=True)
class Normalize:
    """(x − mean[c]) / std[c] per channel c, with public constants.

    Channels are the first axis of the network's input shape; one value applies to
    every channel.
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    operation: str = field(default="normalize", init=False)

    def apply(self, features: np.ndarray) -> np.ndarray:
        channels = features.shape[1]
        if len(self.mean) not in (1, channels):
            raise DataError(
                f"normalize has {len(self.mean)} values per statistic, but the network's input has {channels} channels (shape {list(features.shape[1:])})",
                hint=f"give 1 or {channels} values to mean and std",
            )
        channel_shape = (1, -1) + (1,) * (features.ndim - 2)
        mean = np.asarray(self.mean, dtype=features.dtype).reshape(channel_shape)
        std = np.asarray(self.std, dtype=features.dtype).reshape(channel_shape)
        return (features - mean) / std

    def describe(self) -> str:
        return f"normalised per channel with the constants mean={list(self.mean)} std={list(self.std)}"


@dataclass(frozen=True)
class L2Normalize:
    """x ↦ x / ‖x‖₂, each example on its own."""

    operation: str = field(default="l2_normalize", init=False)

    def apply(self, features: np.ndarray) -> np.ndarray:
        flat = features.reshape(len(features), -1)
        norms = np.linalg.norm(flat, axis=1).reshape((-1,) + (1,) * (features.ndim - 1))
        return features / np.maximum(norms, DIVISION_FLOOR)

    def describe(self) -> str:
        return "each example divided by its own L2 norm"


@dataclass(frozen=True)
class Standardize:
    """(x − μ) / s per feature, with μ and s the mean and standard deviation of the training set."""

    operation: str = field(default="standardize", init=False)

    def fit(self, train_features: np.ndarray) -> "FittedStandardize":
        mean = train_features.mean(axis=0)
        std = train_features.std(axis=0)
        return FittedStandardize(mean, np.maximum(std, DIVISION_FLOOR))

    def describe(self) -> str:
        return "standardised per feature with the training set's mean and standard deviation (computed from private data)"


@dataclass(frozen=True)
class FittedStandardize:
    mean: np.ndarray
    std: np.ndarray

    def apply(self, features: np.ndarray) -> np.ndarray:
        return (features - self.mean) / self.std


PreprocessStep = Scale | Normalize | L2Normalize | Standardize

# Names of the steps in the `train` block's `preprocess` setting.
PUBLIC_STEPS = ("scale", "normalize", "l2_normalize")
DATA_DEPENDENT_STEPS = ("standardize",)


def uses_training_statistics(steps: tuple[PreprocessStep, ...]) -> bool:
    return any(isinstance(step, Standardize) for step in steps)


def apply_steps(steps: tuple[PreprocessStep, ...], train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Apply `steps` in order to both splits; data-dependent steps are fitted on `train` only."""
    for step in steps:
        fitted = step.fit(train) if isinstance(step, Standardize) else step
        train, test = fitted.apply(train), fitted.apply(test)
    return train, test


def describe_steps(steps: tuple[PreprocessStep, ...]) -> str:
    return "; then ".join(step.describe() for step in steps)
