"""Time of one projection step (`module.project_()`) and of one forward and backward pass, per example spec.

Run from the repository root:

    python benchmarks/projection_cost.py [--repeats 5] [--batch-size 64]

The projection runs after every private step, so its time adds to every step's. The script
prints the command, the machine and one line per spec.
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import torch

import lipc
from timing import median_seconds

SPECS = Path(__file__).resolve().parent.parent / "specs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per measurement; the median is printed")
    parser.add_argument("--batch-size", type=int, default=64, help="examples in the timed forward and backward pass")
    args = parser.parse_args()

    print("command:", " ".join([sys.executable, *sys.argv]))
    print(f"machine: {platform.machine()}, {platform.processor() or 'unknown processor'}, {torch.get_num_threads()} torch threads, torch {torch.__version__}")
    for path in sorted(SPECS.glob("*.lip")):
        compiled = lipc.compile(path)
        module = compiled.module
        inputs = torch.rand(args.batch_size, *compiled.input_shape)

        def forward_backward():
            module.zero_grad()
            module(inputs).sum().backward()

        projection = median_seconds(module.project_, args.repeats)
        step = median_seconds(forward_backward, args.repeats)
        print(f"{path.stem}: projection {projection * 1e3:.1f} ms, forward and backward of {args.batch_size} examples {step * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
