"""Time lipc's data loading on an MNIST-sized synthetic file in each format.

Run: python benchmarks/data_loading.py [--examples 60000]
Prints the command, the machine and, per format, the file size and the load time.
"""

from __future__ import annotations

import argparse
import gzip
import os
import platform
import struct
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from lipc.data import load_dataset

IMAGE_SIDE = 28
CLASSES = 10


def write_files(folder: Path, count: int) -> dict[str, Path]:
    generator = np.random.default_rng(0)
    images = generator.integers(0, 256, size=(count, IMAGE_SIDE, IMAGE_SIDE), dtype=np.uint8)
    labels = (np.arange(count) % CLASSES).astype(np.uint8)

    np.savez(folder / "data.npz", x=images.reshape(count, -1), y=labels)

    header = ",".join([f"p{i}" for i in range(IMAGE_SIDE * IMAGE_SIDE)] + ["label"])
    rows = np.concatenate([images.reshape(count, -1), labels[:, None]], axis=1)
    np.savetxt(folder / "data.csv", rows, fmt="%d", delimiter=",", header=header, comments="")

    idx = folder / "mnist"
    idx.mkdir()
    for name, array in (("train-images-idx3-ubyte.gz", images), ("train-labels-idx1-ubyte.gz", labels)):
        header_bytes = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", size) for size in array.shape)
        (idx / name).write_bytes(gzip.compress(header_bytes + array.tobytes()))
    return {"npz": folder / "data.npz", "csv": folder / "data.csv", "idx.gz": idx}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=60000, help="number of 28x28 examples (default: 60000)")
    args = parser.parse_args()

    print("command:", " ".join([Path(sys.executable).name] + sys.argv))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, NumPy {np.__version__}")
    # Import scikit-learn (used by the split) before timing, so that no format pays for it.
    import sklearn.model_selection  # noqa: F401

    with tempfile.TemporaryDirectory() as folder:
        files = write_files(Path(folder), args.examples)
        for name, path in files.items():
            size = sum(p.stat().st_size for p in ([path] if path.is_file() else path.iterdir()))
            start = time.perf_counter()
            dataset = load_dataset(str(path), (IMAGE_SIDE * IMAGE_SIDE,), num_classes=CLASSES)
            elapsed = time.perf_counter() - start
            print(f"{name:7s} {size / 2**20:8.1f} MiB  {elapsed:6.2f} s  ({len(dataset.train_labels)} training examples)")


if __name__ == "__main__":
    main()
