"""Built-in data sets, all available offline, with fixed public preprocessing only."""

from __future__ import annotations

import random

import numpy as np

from lipc.data.files import Examples, SourceData

# mnist1d's own default seed, so that the generated examples are the package's standard draw.
MNIST1D_SEED = 42


def _load_digits() -> SourceData:
    from sklearn.datasets import load_digits

    digits = load_digits()
    # Pixels are counts from 0 to 16: dividing by that public constant uses no statistic of the data.
    return SourceData(
        Examples(digits.data / 16.0, digits.target, "digits"),
        None,
        "pixel values divided by the constant 16 (public); no statistics of the data",
    )


def _log_scaled(loader, name: str) -> SourceData:
    # Every feature of these sets is non-negative, and their largest values range from below 1
    # to thousands. The fixed function log(1 + x) brings them to comparable sizes without reading any statistic.
    bunch = loader()
    return SourceData(
        Examples(np.log1p(bunch.data), bunch.target, name),
        None,
        "each feature mapped by the fixed function log(1 + x); no statistics of the data",
    )


def _load_breast_cancer() -> SourceData:
    from sklearn.datasets import load_breast_cancer

    return _log_scaled(load_breast_cancer, "breast_cancer")


def _load_wine() -> SourceData:
    from sklearn.datasets import load_wine

    return _log_scaled(load_wine, "wine")


def _load_mnist1d() -> SourceData:
    """Generate MNIST-1D locally with the mnist1d package (5000 signals of length 40, 10 classes).

    The package's `make_dataset` standardises the whole generated set with its own mean and
    standard deviation, a statistic of the training examples. This draws the same examples
    with the package's templates and `transform`, without that standardisation: the signals
    already have norms near 1. Nothing is downloaded.
    """
    from mnist1d.data import get_dataset_args, get_templates
    from mnist1d.transform import transform

    arguments = get_dataset_args()
    templates = get_templates()
    samples_per_class = arguments.num_samples // len(templates["y"])

    # The package draws from the global NumPy and `random` generators; restore them afterwards.
    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:
        np.random.seed(MNIST1D_SEED)
        random.seed(MNIST1D_SEED)
        signals, labels = [], []
        for template, label in zip(templates["x"], templates["y"]):
            for _ in range(samples_per_class):
                signal, _ = transform(template, templates["t"], arguments)
                signals.append(signal)
                labels.append(label)
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)
    return SourceData(
        Examples(np.stack(signals), np.asarray(labels), "mnist1d"),
        None,
        f"generated locally by the mnist1d package (seed {MNIST1D_SEED}), without its data-dependent standardisation; no statistics of the data",
    )


BUILTIN_LOADERS = {
    "digits": _load_digits,
    "breast_cancer": _load_breast_cancer,
    "wine": _load_wine,
    "mnist1d": _load_mnist1d,
}
