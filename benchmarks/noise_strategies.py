"""Test accuracy of each noise strategy on an example network, over several seeds.

Usage: python benchmarks/noise_strategies.py [SPEC] [--epsilon 3] [--seeds 0 1 2]
Prints the command, the machine, and one row per strategy: the accuracy of each seed and
their mean.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import platform
import statistics
import sys
import tempfile
from pathlib import Path

import torch

import lipc
from lipc.privacy.noise import NOISE_STRATEGIES
from lipc.train.trainer import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", nargs="?", default="specs/digits_mlp.lip")
    parser.add_argument("--epsilon", type=float, default=3.0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    print(f"command: python {' '.join(sys.argv)}")
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, CPU")
    print(f"{'strategy':<14} " + " ".join(f"seed {seed:<3}" for seed in args.seeds) + "  mean")
    with tempfile.TemporaryDirectory() as folder:
        for strategy in NOISE_STRATEGIES:
            accuracies = []
            for seed in args.seeds:
                torch.manual_seed(seed)
                compiled = lipc.compile(args.spec)
                config = dataclasses.replace(compiled.checked.train, epsilon=args.epsilon, seed=seed, noise=strategy)
                result = train(compiled, config, Path(folder) / f"{strategy}-{seed}", device="cpu", show_progress=False)
                accuracies.append(result.test_accuracy)
            print(f"{strategy:<14} " + " ".join(f"{value:.4f}  " for value in accuracies) + f"  {statistics.mean(accuracies):.4f}", flush=True)


if __name__ == "__main__":
    main()
