"""Data sets for training; the implementation lives in `lipc.data`."""

from lipc.data import Dataset, load_dataset, load_training_data

__all__ = ["Dataset", "load_dataset", "load_training_data"]
