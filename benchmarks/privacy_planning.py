"""Time of the three planning questions of `lipc privacy`, for typical and edge settings.

Usage: python benchmarks/privacy_planning.py [--repeats 3]
Prints the command, the machine, and for each question and accountant the median time in
seconds of `repeats` calls, after the imports (a `lipc privacy` process also spends about
1.5 s importing dp-accounting and its dependencies).
"""

from __future__ import annotations

import argparse
import logging
import platform
import sys

from lipc.privacy import planning
from timing import median_seconds

# (name, dataset size N, expected batch size B, epochs, target ε, noise multiplier σ)
SETTINGS = [
    ("digits", 1437, 256, 40, 3.0, 4.0),
    ("mnist", 60000, 256, 60, 3.0, 1.1),
    ("cifar10", 50000, 4096, 100, 8.0, 3.0),
    ("edge: ε = 0.01", 1437, 256, 40, 0.01, 800.0),
    ("edge: ε = 50", 1437, 256, 40, 50.0, 0.65),
    ("edge: q = 1, 1 step", 1437, 1437, 1, 50.0, 0.16),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--accountants", nargs="+", default=["rdp", "pld"])
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)

    print(f"command: python {' '.join(sys.argv)}")
    print(f"machine: {platform.machine()}, {platform.python_implementation()} {platform.python_version()}")
    print(f"{'setting':<22}{'accountant':<12}{'noise multiplier':>18}{'ε':>10}{'epochs':>10}")
    for name, dataset_size, batch_size, epochs, epsilon, noise_multiplier in SETTINGS:
        for accountant in args.accountants:
            questions = (
                lambda: planning.noise_multiplier_for_epsilon(epsilon, 1e-5, dataset_size, batch_size, epochs, accountant),
                lambda: planning.epsilon_for_noise_multiplier(noise_multiplier, 1e-5, dataset_size, batch_size, epochs, accountant),
                lambda: planning.max_epochs_for_budget(noise_multiplier, epsilon, 1e-5, dataset_size, batch_size, accountant),
            )
            seconds = [median_seconds(question, args.repeats) for question in questions]
            print(f"{name:<22}{accountant:<12}" + "".join(f"{value:>16.3f} s" if i == 0 else f"{value:>8.3f} s" for i, value in enumerate(seconds)), flush=True)


if __name__ == "__main__":
    main()
