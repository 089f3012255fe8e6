"""Time to compile each example spec: parse and check, and parse, check and build the module.

Run from the repository root:

    python benchmarks/compile_time.py [--repeats 21] [--warmup 3]

For every spec in specs/, it measures, after `import lipc`:

- first call: parse and check in a fresh Python process, once. This includes making the
  LALR parser, which happens on the first parse of a process (loaded from the user's cache
  folder when an earlier process saved it there, else built from the grammar) and is also
  reported on its own;
- parse and check: `check_spec(parse_file(path))`, median of the timed runs after warm-up;
- compile: `lipc.compile(path)`, which also builds the PyTorch module with its initial
  weights, median of the timed runs after warm-up.

It prints a Markdown page with the machine, the versions, the command and a table, and writes
the same page to benchmarks/results/compile_time.md (or --output).
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import lark
import torch

import lipc
from lipc.check import check_spec
from lipc.lang import parse_file
from timing import median_seconds

logger = logging.getLogger("compile_time")

REPOSITORY = Path(__file__).resolve().parent.parent
SPECS = REPOSITORY / "specs"
DEFAULT_OUTPUT = REPOSITORY / "benchmarks" / "results" / "compile_time.md"

# The target: parse and check of the largest example well under this, after import.
TARGET_MILLISECONDS = 100.0

# Run in a fresh process: import lipc, then time the construction of the parser (which the
# first parse would otherwise do) and the first parse and check of one spec.
FIRST_CALL_SCRIPT = """\
import sys, time
import lipc
from lipc.check import check_spec
from lipc.lang import parse_file
from lipc.lang.parser import _parser
start = time.perf_counter()
_parser()
built = time.perf_counter()
check_spec(parse_file(sys.argv[1]))
print(built - start, time.perf_counter() - built)
"""


@dataclass(frozen=True)
class SpecTiming:
    """Compile times of one spec, in seconds."""

    name: str
    lines: int
    layers: int
    first_call: float
    parser_construction: float
    parse_and_check: float
    compile: float


def first_call_seconds(path: Path) -> tuple[float, float]:
    """Time the first parse and check of `path` in a new Python process, after its `import lipc`.

    Return the whole first call and the part of it spent building the parser.
    """
    result = subprocess.run(
        [sys.executable, "-c", FIRST_CALL_SCRIPT, str(path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPOSITORY,
    )
    construction, parse_and_check = (float(field) for field in result.stdout.split())
    return construction + parse_and_check, construction


def time_spec(path: Path, repeats: int, warmup: int) -> SpecTiming:
    def parse_and_check():
        return check_spec(parse_file(path))

    def compile_spec():
        return lipc.compile(path)

    for _ in range(warmup):
        parse_and_check()
        compile_spec()

    checked = parse_and_check()
    first_call, parser_construction = first_call_seconds(path)
    return SpecTiming(
        name=path.name,
        lines=len(path.read_text(encoding="utf-8").splitlines()),
        layers=count_layers(checked.layers),
        first_call=first_call,
        parser_construction=parser_construction,
        parse_and_check=median_seconds(parse_and_check, repeats),
        compile=median_seconds(compile_spec, repeats),
    )


def count_layers(bounds) -> int:
    """Count the checked layers, including those inside residual blocks."""

    def count(layer) -> int:
        return 1 + sum(count(inner) for inner in getattr(layer, "inner", ()))

    return sum(count(bound.layer) for bound in bounds)


def processor_name() -> str:
    """Return the CPU model from /proc/cpuinfo on Linux, else what `platform` reports."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown processor"


def format_page(timings: list[SpecTiming], command: str, repeats: int, warmup: int) -> str:
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg()) if hasattr(os, "getloadavg") else "unknown"
    largest = max(timings, key=lambda timing: timing.layers)
    verdict = "met" if largest.parse_and_check * 1e3 < TARGET_MILLISECONDS else "missed"
    lines = [
        "# Compile time of the example specs",
        "",
        f"- machine: {platform.system()} {platform.machine()}, {os.cpu_count()} CPUs ({processor_name()}), "
        f"load average {load} (1, 5 and 15 minutes) when the run started",
        f"- versions: Python {platform.python_version()}, lipc {lipc.__version__}, torch {torch.__version__}, lark {lark.__version__}",
        f"- command: `{command}`",
        f"- parse and check, compile: median of {repeats} runs after {warmup} warm-up runs, in one process after `import lipc`",
        "- first call: one parse and check in a fresh process after `import lipc`; it includes making the LALR parser, loaded from the user's cache folder when an earlier run saved it",
        "- the machine was shared with other jobs during the run, so the times are upper estimates",
        "",
        "| spec | lines | layers | first call ms | of which parser construction ms | parse and check ms | compile ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for timing in timings:
        lines.append(
            f"| {timing.name} | {timing.lines} | {timing.layers} | {timing.first_call * 1e3:.1f} | {timing.parser_construction * 1e3:.1f} "
            f"| {timing.parse_and_check * 1e3:.2f} | {timing.compile * 1e3:.1f} |"
        )
    lines += [
        "",
        f"Target: parse and check of the largest example ({largest.name}, {largest.layers} layers) well under "
        f"{TARGET_MILLISECONDS:g} ms after import: {verdict} once the parser is built, at {largest.parse_and_check * 1e3:.2f} ms. "
        f"The first call of a process takes {largest.first_call * 1e3:.1f} ms, of which "
        f"{largest.parser_construction * 1e3:.1f} ms make the LALR parser.",
        "",
    ]
    return "\n".join(lines)


def write_atomically(path: Path, text: str) -> None:
    """Write `text` to a temporary file beside `path`, then rename it, so no half-written page is left."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, suffix=".tmp", delete=False) as handle:
        handle.write(text)
    os.replace(handle.name, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=21, help="timed runs per measurement; the median is reported")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs of each measurement before the timed ones")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="the Markdown page to write")
    args = parser.parse_args()
    if args.repeats < 1 or args.warmup < 0:
        parser.error(f"--repeats must be at least 1 and --warmup at least 0, not {args.repeats} and {args.warmup}")
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)

    command = " ".join(["python", *sys.argv])
    timings = []
    for path in sorted(SPECS.glob("*.lip")):
        logger.info("timing %s", path.name)
        timings.append(time_spec(path, args.repeats, args.warmup))

    page = format_page(timings, command, args.repeats, args.warmup)
    print(page)
    write_atomically(args.output, page)
    logger.info("wrote %s", args.output)


if __name__ == "__main__":
    main()
