"""Fuzzing: no input makes lipc fail with anything but a located LipcError.

Three sources of input: random text made of the language's tokens and characters, mutations
of the example specs, and random specs that follow the grammar (lets, blocks, repeats and
layers with random options). Each either compiles or raises a LipcError whose report starts
with ``fuzz.lip:LINE:COLUMN: error:``, or ``lipc: error:`` for a problem with the whole file.

LIPC_FUZZ_EXAMPLES sets the number of examples of each of the three tests, for longer local
runs: ``LIPC_FUZZ_EXAMPLES=5000 pytest tests/test_fuzz.py``. The defaults keep the file at
about half a minute on a 2-core CPU; mutated specs cost the most, because many of them
compile and build a convolutional network.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import lipc
from lipc.errors import LipcError

from conftest import SPECS, run_lipc



def fuzz_settings(default_examples: int) -> settings:
    examples = int(os.environ.get("LIPC_FUZZ_EXAMPLES", default_examples))
    return settings(max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


PATH = "fuzz.lip"
LOCATED = re.compile(rf"^{re.escape(PATH)}:\d+:\d+: error: \S")
WHOLE_FILE = re.compile(r"^lipc: error: \S")

SPEC_TEXTS = {path.name: path.read_text(encoding="utf-8") for path in sorted(SPECS.glob("*.lip"))}

TOKENS = [
    "network", "loss", "let", "block", "repeat", "train", "data", "privacy", "input", "dense",
    "conv1d", "conv2d", "groupsort", "maxmin", "fullsort", "abs", "relu", "maxpool", "avgpool",
    "l2pool", "global_avgpool", "global_l2pool", "centering", "flatten", "residual", "batchnorm",
    "shape", "clip_norm", "bias_norm", "kernel", "stride", "padding", "alpha", "same", "valid",
    "cross_entropy", "hinge", "temperature", "epochs", "batch_size", "optimizer", "adam(lr=0.01)",
    "source", "digits", "sampling", "shuffle", "width", "n", "b", "x",
    "{", "}", "(", ")", "[", "]", ",", "=", "+", "-", "*", "/", "0", "1", "2", "8", "64", "0.5",
    "1e-5", "1e400", "-1", '"a"', '"', "#", "\n", "\n", "\n", " ", "\t",
]
CHARACTERS = st.characters(codec="utf-8")


def check_input(text: str) -> None:
    """Compile `text`; accept success or a located LipcError, and let any other exception fail the test."""
    try:
        compiled = lipc.compile_source(text, PATH)
        # `lipc compile` also certifies the operator norm of each layer.
        compiled.certified_lipschitz()
    except LipcError as error:
        report = error.format()
        first_line = report.split("\n", 1)[0]
        assert LOCATED.match(first_line) or WHOLE_FILE.match(first_line), report
        for line in report.split("\n"):
            if line.startswith(PATH) and ": error: " in line:
                assert LOCATED.match(line), report


# (a) Random text -------------------------------------------------------------------------

random_text = st.lists(st.one_of(st.sampled_from(TOKENS), st.text(CHARACTERS, max_size=3)), max_size=60).map(" ".join)


@fuzz_settings(300)
@given(random_text)
def test_random_text(text):
    check_input(text)


# (b) Mutations of the example specs --------------------------------------------------------

NUMBER = re.compile(r"(?<![\w.])\d+(\.\d*)?([eE][+-]?\d+)?")
WORD = re.compile(r"[A-Za-z_]\w*")
REPLACEMENT_NUMBERS = ["0", "(-1)", "-1", "1e12", "100000000000", "2.5", "1e400", "0.0001", "3"]


@st.composite
def mutated_spec(draw) -> str:
    lines = draw(st.sampled_from(sorted(SPEC_TEXTS.values()))).split("\n")
    for _ in range(draw(st.integers(1, 4))):
        operation = draw(st.sampled_from(["delete", "duplicate", "swap", "number", "word", "insert"]))
        index = draw(st.integers(0, len(lines) - 1))
        line = lines[index]
        if operation == "delete" and len(lines) > 1:
            del lines[index]
        elif operation == "duplicate":
            lines.insert(index, line)
        elif operation == "swap":
            other = draw(st.integers(0, len(lines) - 1))
            lines[index], lines[other] = lines[other], line
        elif operation == "number" and NUMBER.search(line):
            matches = list(NUMBER.finditer(line))
            match = matches[draw(st.integers(0, len(matches) - 1))]
            replacement = draw(st.sampled_from(REPLACEMENT_NUMBERS))
            lines[index] = line[: match.start()] + replacement + line[match.end() :]
        elif operation == "word" and WORD.search(line):
            matches = list(WORD.finditer(line))
            match = matches[draw(st.integers(0, len(matches) - 1))]
            replacement = draw(st.one_of(st.sampled_from(TOKENS), st.text(st.sampled_from("abcdexyz_"), min_size=1, max_size=6)))
            lines[index] = line[: match.start()] + replacement + line[match.end() :]
        else:
            position = draw(st.integers(0, len(line)))
            inserted = draw(st.one_of(st.sampled_from(TOKENS), st.text(CHARACTERS, min_size=1, max_size=2)))
            lines[index] = line[:position] + inserted + line[position:]
    return "\n".join(lines)


@fuzz_settings(40)
@given(mutated_spec())
def test_mutated_specs(text):
    check_input(text)


# (c) Random specs that follow the grammar --------------------------------------------------

small_numbers = st.sampled_from(["0", "1", "2", "3", "4", "8", "16", "0.5", "1.5", "2.5", "(-1)", "1e-3"])
value_names = st.sampled_from(["width", "half", "units", "same", "valid", "circular", "spectral", "bjorck", "layer", "channel", "x"])


def expressions(depth: int = 2):
    base = st.one_of(small_numbers, value_names)
    if depth == 0:
        return base
    inner = expressions(depth - 1)
    return st.one_of(
        base,
        st.tuples(inner, st.sampled_from(["+", "-", "*", "/"]), inner).map(" ".join),
        inner.map(lambda text: f"({text})"),
        st.lists(inner, min_size=1, max_size=3).map(lambda items: "[" + ", ".join(items) + "]"),
    )


OPTIONS = ["width", "bias_norm", "constraint", "kernel", "stride", "padding", "window", "mode", "alpha", "group_size", "channels", "shape", "clip_norm", "widht"]
LAYERS = ["dense", "conv1d", "conv2d", "groupsort", "maxmin", "fullsort", "abs", "relu", "maxpool", "avgpool", "l2pool",
          "global_avgpool", "global_l2pool", "centering", "flatten", "dropout", "unit"]


@st.composite
def layer_line(draw, indent: str, depth: int) -> str:
    kind = draw(st.sampled_from(LAYERS + (["residual", "repeat"] if depth < 2 else [])))
    if kind == "repeat":
        count = draw(st.sampled_from(["0", "1", "2", "units", "2.5"]))
        body = draw(st.lists(layer_line(indent + "    ", depth + 1), min_size=1, max_size=3))
        return f"{indent}repeat {count} {{\n" + "\n".join(body) + f"\n{indent}}}"
    positional = draw(st.lists(expressions(1), max_size=1))
    keywords = draw(st.lists(st.tuples(st.sampled_from(OPTIONS), expressions(1)), max_size=2))
    arguments = " ".join(positional + [f"{name}={value}" for name, value in keywords])
    if kind == "residual":
        body = draw(st.lists(layer_line(indent + "    ", depth + 1), min_size=1, max_size=3))
        return f"{indent}residual alpha=0.5 {arguments} {{\n" + "\n".join(body) + f"\n{indent}}}"
    return f"{indent}{kind} {arguments}".rstrip()


@st.composite
def structured_spec(draw) -> str:
    parts = []
    for name in draw(st.lists(st.sampled_from(["width", "half", "units"]), max_size=3)):
        parts.append(f"let {name} = {draw(expressions())}")
    if draw(st.booleans()):
        body = draw(st.lists(layer_line("    ", 1), min_size=1, max_size=3))
        parts.append("block unit(width, half=2) {\n" + "\n".join(body) + "\n}")

    shape = draw(st.sampled_from(["[8]", "[2, 8]", "[1, 8, 8]", "[4, 6, 6]", "[0]", "[8, 8]"]))
    layers = draw(st.lists(layer_line("    ", 0), max_size=6))
    head = f"    input shape={shape} clip_norm={draw(st.sampled_from(['1.0', '0', 'width']))}"
    tail = draw(st.sampled_from(["    flatten\n    dense 3", "    dense 3", "    dense 1", ""]))
    parts.append("network n {\n" + "\n".join([head, *layers, tail]) + "\n}")

    parts.append(draw(st.sampled_from(["loss cross_entropy temperature=0.5", "loss hinge", "loss binary_cross_entropy", "loss squared_error", "loss kr", ""])))
    if draw(st.booleans()):
        setting = draw(st.sampled_from(["epochs = 2", "batch_size = 0", "delta = 2", "sampling = shuffle", "optimizer = adam(lr=0.01)", "optimizer = adma", "epoch = 3"]))
        section = draw(st.sampled_from(["train", "privacy", "data", "trian"]))
        parts.append(f"{section} {{\n    {setting}\n}}")
    return "\n".join(parts) + "\n"


@fuzz_settings(150)
@given(structured_spec())
def test_structured_specs(text):
    check_input(text)


# Through the command line ------------------------------------------------------------------

def compiles(text: str) -> bool:
    try:
        lipc.compile_source(text, PATH)
    except LipcError:
        return False
    return True


@settings(max_examples=3, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(st.one_of(mutated_spec(), structured_spec()))
def test_cli_reports_generated_errors(text):
    """A few failing inputs run through `lipc compile`: exit code 1, a report, no traceback."""
    assume(not compiles(text))
    with tempfile.TemporaryDirectory() as folder:
        spec = Path(folder) / PATH
        spec.write_text(text, encoding="utf-8")
        result = run_lipc("compile", str(spec), cwd=Path(folder))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert result.stderr.startswith((f"{spec}:", "lipc: error:")), result.stderr
