"""Diagnostics on real malformed files: exact messages, positions, carets and hints.

Each `tests/malformed/NAME.lip` holds one mistake (or, for `several_errors.lip`, several
independent ones; for `warn_*.lip`, a legal but poor choice). `NAME.expected` holds what
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
