"""Diagnostics on real malformed files: exact messages, positions, carets and hints.

Each `tests/malformed/NAME.lip` contains one mistake (or, for `several_errors.lip`, several
independent ones; for `warn_*.lip`, a legal but poor choice). `NAME.expected` contains what
`lipc compile NAME.lip` prints on stderr, with `<path>` in place of the file's path.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import lipc
from lipc.errors import LipcError, did_you_mean, printable

from conftest import run_lipc

MALFORMED = Path(__file__).resolve().parent / "malformed"
CASES = sorted(path.stem for path in MALFORMED.glob("*.lip"))
WARNING_CASES = [name for name in CASES if name.startswith("warn_")]
ERROR_CASES = [name for name in CASES if name not in WARNING_CASES]

# Lark's names for terminals, which a message must never show.
INTERNAL_NAMES = re.compile(r"\b(_NL|\$END|LBRACE|RBRACE|LPAR|RPAR|LSQB|RSQB|NAME|NUMBER|STRING|FUNCTION|EQUAL)\b")


def expected_output(name: str, path: Path) -> str:
    return (MALFORMED / f"{name}.expected").read_text(encoding="utf-8").replace("<path>", str(path))


def compile_output(path: Path) -> str:
    """What `lipc compile` prints on stderr for `path`: the error report, or the warnings."""
    try:
        compiled = lipc.compile(str(path))
    except LipcError as error:
        return error.format() + "\n"
    return "".join(warning.format() + "\n" for warning in compiled.checked.warnings)


def test_cases_cover_errors_and_warnings():
    assert len(ERROR_CASES) >= 30
    assert len(WARNING_CASES) == 4


@pytest.mark.parametrize("name", ERROR_CASES)
def test_error_report(name):
    path = MALFORMED / f"{name}.lip"
    with pytest.raises(LipcError) as caught:
        lipc.compile(str(path))
    assert caught.value.format() + "\n" == expected_output(name, path)


@pytest.mark.parametrize("name", WARNING_CASES)
def test_warning_report(name):
    path = MALFORMED / f"{name}.lip"
    assert compile_output(path) == expected_output(name, path)


@pytest.mark.parametrize("name", CASES)
def test_expected_reports_read_well(name):
    text = (MALFORMED / f"{name}.expected").read_text(encoding="utf-8")
    headers = [line for line in text.splitlines() if re.match(r"<path>:\d+:\d+: (error|warning): ", line)]
    hints = [line for line in text.splitlines() if line.startswith("hint: ")]
    assert headers, text
    assert len(hints) == len(headers), text
    assert not INTERNAL_NAMES.search(text), text


def test_several_errors_reported_together():
    path = MALFORMED / "several_errors.lip"
    with pytest.raises(LipcError) as caught:
        lipc.compile(str(path))
    positions = [(error.location.line, error.location.column) for error in caught.value.errors]
    assert positions == [(3, 14), (4, 5), (11, 5), (13, 5), (17, 5)]


def test_several_syntax_errors_reported_together():
    path = MALFORMED / "several_syntax_errors.lip"
    with pytest.raises(LipcError) as caught:
        lipc.compile(str(path))
    positions = [(error.location.line, error.location.column) for error in caught.value.errors]
    assert positions == [(3, 14), (5, 14), (11, 12)]


@pytest.mark.parametrize(
    "source, line",
    [
        ("network n\n    dense 4 )\n}\n", 1),
        ("network n {\n    dense 4\n\nloss cross_entropy\nloss hinge (\n", 4),
        ("train\n{\n    epochs 3\n}\n", 1),
        ("network n {\n    dense 4 ) {\n    dense 4 )\n}\n", 2),
    ],
)
def test_syntax_recovery_stops_at_braces(source, line):
    """An error that a brace may cause is reported alone, without follow-on errors."""
    error = error_of(source)
    assert not hasattr(error, "errors")
    assert error.location.line == line


@pytest.mark.parametrize("name", ["several_errors", "missing_brace", "not_utf8"])
def test_cli_error_report(name, tmp_path):
    path = MALFORMED / f"{name}.lip"
    result = run_lipc("compile", str(path), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == expected_output(name, path)


def test_cli_warning_report(tmp_path):
    path = MALFORMED / "warn_relu.lip"
    result = run_lipc("compile", str(path), cwd=tmp_path)
    assert result.returncode == 0
    assert result.stderr == expected_output("warn_relu", path)
    assert result.stdout.startswith("network digits")


# Helpers of the reports ---------------------------------------------------------------------

@pytest.mark.parametrize(
    "word, candidates, expected",
    [
        ("adma", ["adamax", "adam", "sgd"], "did you mean 'adam'?"),
        ("trian", ["train", "data", "privacy"], "did you mean 'train'?"),
        ("dens", ["dense", "abs"], "did you mean 'dense'?"),
        ("zzz", ["dense", "abs"], None),
    ],
)
def test_did_you_mean(word, candidates, expected):
    assert did_you_mean(word, candidates) == expected


def test_printable_keeps_columns():
    assert printable("a\x00b\x1b[31mc\nd") == "a?b?[31mc\nd"


# Expected tokens in words, by position -----------------------------------------------------

# (source, line, column, message, hint)
SYNTAX_ERRORS = [
    (
        "network n {\n    input shape=[8] clip_norm=1\n    4\n}\n", 3, 5,
        "unexpected number '4'; expected a layer, 'let', 'repeat' or '}'",
        "each line of a network or block starts with a layer, as in 'dense 64', or with 'repeat' or 'let'",
    ),
    (
        "train {\n    4 = 3\n}\n", 2, 5,
        "unexpected number '4'; expected a setting or '}'",
        "each line of a settings section is 'name = value', as in 'epochs = 10'",
    ),
    (
        "train {\n    epochs =\n}\n", 2, 13,
        "unexpected end of line; expected a value",
        "the line ends where a value is needed, as in 'epochs = 10' or 'width=64'",
    ),
    (
        "4\n", 1, 1,
        "unexpected number '4'; expected 'network', 'loss', 'let', 'block', a settings section such as 'train' or the end of the file",
        "a file holds 'network NAME { ... }', 'loss NAME ...', 'let NAME = VALUE', 'block NAME(...) { ... }' and settings sections such as 'train { ... }'",
    ),
    (
        "network n {\n    dense 2\n}\n}\n", 4, 1,
        "unexpected '}'; expected 'network', 'loss', 'let', 'block', a settings section such as 'train' or the end of the file",
        "this '}' closes no block: remove it",
    ),
    (
        "train {\n    optimizer = adam(0.1)\n}\n", 2, 22,
        "unexpected number '0.1'; expected a name or ')'",
        "write the arguments of a call as name=value, as in adam(lr=0.01)",
    ),
    (
        "block (width) {\n}\n", 1, 7,
        "unexpected '('; expected a name",
        "a block needs a name, as in 'block stage(channels) {'",
    ),
    (
        "network n {\n    dense 2 * * 2\n}\n", 2, 15,
        "unexpected '*'; expected a value",
        "an operator needs a value on each side, as in width * 2",
    ),
]


@pytest.mark.parametrize("source, line, column, message, hint", SYNTAX_ERRORS)
def test_syntax_error_words(source, line, column, message, hint):
    with pytest.raises(LipcError) as caught:
        lipc.compile_source(source, "bad.lip")
    error = caught.value
    assert (error.location.line, error.location.column) == (line, column)
    assert error.message == message
    assert error.hint == hint


# Guards against inputs that would crash ------------------------------------------------------

def error_of(source: str) -> LipcError:
    with pytest.raises(LipcError) as caught:
        lipc.compile_source(source, "bad.lip")
    return caught.value


def network(*layers: str, before: str = "") -> str:
    body = "\n".join(f"    {layer}" for layer in layers)
    return f"{before}network n {{\n    input shape=[8] clip_norm=1.0\n{body}\n    dense 2\n}}\nloss cross_entropy\n"


def test_repeat_without_layers_bounded():
    error = error_of(network("repeat 10000 {", "    repeat 10000 {", "        let x = 1", "    }", "}"))
    assert error.message == "the network expands to more than 100000 statements"
    assert (error.location.line, error.location.column) == (5, 13)


def test_layer_limit_reported_once():
    error = error_of(network("repeat 5000 {", "    dense 8", "    dense 8", "}"))
    assert len(error.errors) == 1
    assert error.message == "the network expands to more than 10000 layers"


def test_arithmetic_overflow_rejected():
    big = "1" + "0" * 300
    error = error_of(network("dense 4 bias_norm=big * big", before=f"let big = {big}\n"))
    assert error.message == "the result of this arithmetic is too large"
    assert (error.location.line, error.location.column) == (4, 23)


def test_huge_convolution_rejected():
    source = "network n {\n    input shape=[3, 32, 32] clip_norm=1.0\n    conv2d 512\n    conv2d 512\n    flatten\n    dense 2\n}\nloss cross_entropy\n"
    error = error_of(source)
    assert error.message == (
        "conv2d is too large: the spectrum that certifies its operator norm would hold 303,038,464 values, "
        "more than the limit of 268,435,456"
    )
    assert error.location.line == 4


def test_long_sum_rejected_without_recursion_error():
    error = error_of(network("dense 2" + " + 1" * 5000))
    assert error.message == "brackets, blocks or arithmetic are nested more than 100 levels deep here"


def test_name_suggested_from_block_parameters():
    source = "block unit(width) {\n    dense widht\n}\n" + network("unit 4")
    error = error_of(source)
    assert error.hint == "did you mean 'width'?"


def test_options_checked_after_layer_error():
    error = error_of(network("conv2d 4", "dense 4 widht=2", "groupsort 2 {", "    abs", "}"))
    messages = [e.message for e in error.errors]
    assert messages == [
        "conv2d expects an input of shape [channels, height, width], but its input has shape [8]",
        "unknown option 'widht' for dense",
        "layer 'groupsort' takes no block of inner layers",
    ]


def test_string_control_characters_not_printed():
    error = error_of('privacy {\n    noise = "\x1b[31m"\n}\n' + network())
    assert error.message == 'invalid noise "\x1b[31m" for privacy'
    assert "\x1b" not in error.format()
    assert 'invalid noise "?[31m" for privacy' in error.format()


def test_overflowing_sensitivity_rejected():
    source = "network n {\n    input shape=[8] clip_norm=1e300\n    dense 4\n}\nloss cross_entropy temperature=1e-300\n"
    error = error_of(source)
    assert error.message == "the sensitivity of dense_1.weight is not a finite number: inf"
    assert (error.location.line, error.location.column) == (3, 5)
