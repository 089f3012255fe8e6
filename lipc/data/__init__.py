"""Data sets: built-in ones, and the user's own files, validated and preprocessed for a network."""

import dataclasses

from lipc.data.builtin import BUILTIN_LOADERS
from lipc.data.dataset import DEFAULT_LABEL_COLUMN, Dataset, is_builtin, load_dataset
from lipc.errors import DataError
from lipc.data.preprocess import L2Normalize, Normalize, PreprocessStep, Scale, Standardize

BUILTIN_DATASETS = tuple(BUILTIN_LOADERS)


def load_training_data(config, input_shape: tuple[int, ...], num_classes: int) -> Dataset:
    """Load the data set that a TrainConfig names, for a network with `num_classes` outputs.

    A network with a single logit is a binary classifier, whose labels are 0 and 1.
    """
    if config.data is None:
        raise DataError(
            "no data set: the spec's data section names none",
            hint=f"set 'source = NAME' (built-in: {', '.join(BUILTIN_DATASETS)}) or 'source = \"FILE\"' in the data section, or pass --data",
        )
    return load_dataset(
        config.data,
        input_shape,
        num_classes=max(num_classes, 2),
        label_column=config.label_column,
        test_source=config.test_data,
        preprocess=config.preprocess,
        allow_data_statistics=config.allow_data_statistics,
    )


# Train settings that name the data; config.json records them as the run used them.
DATA_SETTINGS = ("data", "test_data", "label_column", "allow_data_statistics")


def load_run_dataset(saved_train: dict, compiled) -> Dataset:
    """Reload the data of a finished run: settings from its config.json, preprocessing from its spec."""
    recorded = {key: saved_train[key] for key in DATA_SETTINGS if key in saved_train}
    config = dataclasses.replace(compiled.checked.train, **recorded)
    return load_training_data(config, compiled.input_shape, compiled.num_classes)


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
    "load_run_dataset",
    "load_training_data",
]
