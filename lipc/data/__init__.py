"""Data sets: built-in ones, and the user's own files, validated and preprocessed for a network."""

from lipc.data.builtin import BUILTIN_LOADERS
from lipc.data.dataset import DEFAULT_LABEL_COLUMN, Dataset, is_builtin, load_dataset
from lipc.data.preprocess import L2Normalize, Normalize, PreprocessStep, Scale, Standardize

BUILTIN_DATASETS = tuple(BUILTIN_LOADERS)


def load_training_data(config, input_shape: tuple[int, ...], num_classes: int) -> Dataset:
    """Load the data set that a TrainConfig names, for a network with `num_classes` outputs."""
    return load_dataset(
        config.data,
        input_shape,
        num_classes=num_classes,
        label_column=config.label_column,
        test_source=config.test_data,
        preprocess=config.preprocess,
        allow_data_statistics=config.allow_data_statistics,
    )


__all__ = [
    "BUILTIN_DATASETS",
    "DEFAULT_LABEL_COLUMN",
    "Dataset",
    "L2Normalize",
    "Normalize",
    "PreprocessStep",
    "Scale",
    "Standardize",
    "is_builtin",
    "load_dataset",
    "load_training_data",
]
