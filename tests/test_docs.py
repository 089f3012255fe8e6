"""The examples and tables of docs/language.md and README.md agree with the compiler.

A fenced block marked ```lip is a whole file, and each network it defines must compile. A
block marked ```lip fragment holds the lines of a network body, which the test wraps in a
minimal network (see `wrap_fragment`). A block marked with `error` as well must fail to
compile with a SpecError.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

import lipc
from lipc.check import check_spec
from lipc.check.layers import LAYER_KINDS
from lipc.check.losses import LOSS_KINDS
from lipc.check.training import SECTION_SETTINGS
from lipc.errors import SpecError
from lipc.lang import parse_source

REPOSITORY = Path(__file__).resolve().parent.parent
LANGUAGE_DOC = REPOSITORY / "docs" / "language.md"
README = REPOSITORY / "README.md"

EXAMPLE_FLAGS = frozenset({"fragment", "error"})

# What a fragment is wrapped in: an input layer unless the fragment has its own, and a
# classifier head that accepts any shape.
FRAGMENT_INPUT = "input shape=[16] clip_norm=1.0"
FRAGMENT_HEAD = ("flatten", "dense 10")
FRAGMENT_LOSS = "loss cross_entropy"

OPENING_FENCE = re.compile(r"^```(\S*)(.*)$")


@dataclass(frozen=True)
class Example:
    """One ```lip block of a Markdown file."""

    document: Path
    line: int
    flags: frozenset[str]
    text: str

    @property
    def name(self) -> str:
        return f"{self.document.name}:{self.line}"

    @property
    def source(self) -> str:
        return wrap_fragment(self.text) if "fragment" in self.flags else self.text


def extract_examples(document: Path) -> list[Example]:
    """Return the ```lip blocks of `document`, each with the line of its opening fence."""
    examples = []
    lines = document.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        match = OPENING_FENCE.match(lines[index])
        if not match:
            index += 1
            continue
        language, rest = match.group(1), match.group(2).split()
        end = index + 1
        while end < len(lines) and lines[end] != "```":
            end += 1
        if language == "lip":
            text = "\n".join(lines[index + 1:end]) + "\n"
            examples.append(Example(document, index + 1, frozenset(rest), text))
        index = end + 1
    return examples


def wrap_fragment(text: str) -> str:
    """Place the lines of a network body in a network with an input, a head and a loss."""
    statements = [line for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    body = text.splitlines()
    if not statements or statements[0].split()[0] != "input":
        body = [FRAGMENT_INPUT, *body]
    indented = "\n".join(f"    {line}" for line in [*body, *FRAGMENT_HEAD])
    return f"network fragment {{\n{indented}\n}}\n{FRAGMENT_LOSS}\n"


LANGUAGE_EXAMPLES = extract_examples(LANGUAGE_DOC)
README_EXAMPLES = extract_examples(README)
ALL_EXAMPLES = LANGUAGE_EXAMPLES + README_EXAMPLES
VALID_EXAMPLES = [example for example in ALL_EXAMPLES if "error" not in example.flags]
ERROR_EXAMPLES = [example for example in ALL_EXAMPLES if "error" in example.flags]


def test_examples_found():
    assert len(LANGUAGE_EXAMPLES) >= 10
    assert len(README_EXAMPLES) >= 1
    assert ERROR_EXAMPLES


@pytest.mark.parametrize("example", ALL_EXAMPLES, ids=lambda example: example.name)
def test_example_flags_known(example):
    assert example.flags <= EXAMPLE_FLAGS


@pytest.mark.parametrize("example", VALID_EXAMPLES, ids=lambda example: example.name)
def test_example_compiles(example):
    networks = parse_source(example.source, example.name).networks
    assert networks
    for network in networks:
        compiled = lipc.compile_source(example.source, example.name, network=network.name)
        assert compiled.name == network.name


@pytest.mark.parametrize("example", ERROR_EXAMPLES, ids=lambda example: example.name)
def test_error_example_fails(example):
    with pytest.raises(SpecError):
        lipc.compile_source(example.source, example.name)


def test_fragment_wrapped_with_input():
    source = wrap_fragment("dense 8\n")
    assert source == (
        "network fragment {\n"
        "    input shape=[16] clip_norm=1.0\n"
        "    dense 8\n"
        "    flatten\n"
        "    dense 10\n"
        "}\n"
        "loss cross_entropy\n"
    )


def test_fragment_keeps_own_input():
    source = wrap_fragment("# a comment\ninput shape=[1, 8] clip_norm=2.0\n")
    assert source.count("input") == 1
    assert "    input shape=[1, 8] clip_norm=2.0\n" in source


# Tables of the language reference ------------------------------------------------------

def table_rows(document: Path) -> list[list[str]]:
    """Return the cells of every Markdown table row of `document`, header rows included."""
    rows = []
    for line in document.read_text(encoding="utf-8").splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            # A `\|` inside a cell is a literal bar, as in `spectral\|bjorck`.
            cells = re.split(r"(?<!\\)\|", line.strip().strip("|"))
            rows.append([cell.strip() for cell in cells])
    return rows


def first_column_names(document: Path) -> set[str]:
    """Return every `name` written in code in the first cell of a table row."""
    return {name for row in table_rows(document) for name in re.findall(r"`(\w+)`", row[0])}


def test_every_layer_documented():
    documented = first_column_names(LANGUAGE_DOC)
    assert sorted(set(LAYER_KINDS) - documented) == []


def test_every_loss_documented():
    documented = first_column_names(LANGUAGE_DOC)
    assert sorted(set(LOSS_KINDS) - documented) == []


def test_every_setting_documented():
    documented = first_column_names(LANGUAGE_DOC)
    settings = {setting for names in SECTION_SETTINGS.values() for setting in names}
    assert sorted(settings - documented) == []


def documented_defaults() -> dict[str, str]:
    """Map each setting of the settings tables to its default cell, when that cell is a value in code."""
    settings = {setting for names in SECTION_SETTINGS.values() for setting in names}
    defaults = {}
    for row in table_rows(LANGUAGE_DOC):
        name = re.fullmatch(r"`(\w+)`", row[0])
        if name and name.group(1) in settings and len(row) == 4:
            value = re.fullmatch(r"`([^`]+)`", row[2])
            if value:
                defaults[name.group(1)] = value.group(1)
    return defaults


MINIMAL_NETWORK = "network n {\n    input shape=[4] clip_norm=1.0\n    dense 2\n}\nloss cross_entropy\n"


def test_setting_defaults_documented():
    # Writing the documented default must give the same settings as leaving the setting out.
    defaults = documented_defaults()
    assert len(defaults) >= 10
    implicit = check_spec(parse_source(MINIMAL_NETWORK)).train
    for setting, value in defaults.items():
        section = next(section for section, names in SECTION_SETTINGS.items() if setting in names)
        source = f"{MINIMAL_NETWORK}{section} {{\n    {setting} = {value}\n}}\n"
        explicit = check_spec(parse_source(source)).train
        assert explicit == implicit, f"{setting} = {value}"
