"""Errors that lipc reports to users, formatted the way a compiler reports them."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class Location:
    """A position in a source file; line and column count from 1."""

    path: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}"


# Control characters other than the newline. A file or a string value may contain them, and
# printed as they are they would garble a terminal. Each shows as one '?', so the caret keeps its column.
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def printable(text: str) -> str:
    """Replace each control character of `text`, except newlines, with '?'."""
    return _CONTROL_CHARACTERS.sub("?", text)


def format_diagnostic(
    severity: str,
    message: str,
    location: Location,
    source_line: str | None,
    hint: str | None,
    notes: Iterable[str] = (),
) -> str:
    """Render ``file:line:column: SEVERITY: message``, the source line with a caret, notes and a hint."""
    lines = [f"{location}: {severity}: {message}"]
    if source_line is not None:
        text = source_line.rstrip("\r\n").expandtabs(1)
        lines.append(f"    {text}")
        lines.append("    " + " " * (location.column - 1) + "^")
    lines.extend(notes)
    if hint:
        lines.append(f"hint: {hint}")
    return printable("\n".join(lines))


@dataclass(frozen=True)
class SpecWarning:
    """A legal but poor choice in a `.lip` file, reported without stopping the compilation."""

    message: str
    location: Location
    source_line: str | None = None
    hint: str | None = None

    def format(self) -> str:
        return format_diagnostic("warning", self.message, self.location, self.source_line, self.hint)


class LipcError(Exception):
    """A mistake in the user's input, reported without a traceback.

    `format` renders it as ``file:line:column: error: message``, followed by the
    offending source line with a caret under the column, and a hint.
    """

    def __init__(
        self,
        message: str,
        *,
        location: Location | None = None,
        source_line: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.location = location
        self.source_line = source_line
        self.hint = hint
        self.notes: list[str] = []

    def with_notes(self, notes: Iterable[str]) -> "LipcError":
        """Add lines such as ``file:line:column: note: ...`` after the error, and return it."""
        self.notes.extend(notes)
        return self

    def format(self) -> str:
        if self.location is None:
            lines = [f"lipc: error: {self.message}", *self.notes]
            return printable("\n".join(lines + ([f"hint: {self.hint}"] if self.hint else [])))
        return format_diagnostic("error", self.message, self.location, self.source_line, self.hint, self.notes)

    def __str__(self) -> str:
        return self.format()


class SpecError(LipcError):
    """A malformed or non-compliant `.lip` file."""


class SpecErrors(SpecError):
    """Several independent mistakes in one `.lip` file, reported together in source order.

    Its message, location and hint are those of the first error, so that code which handles
    a single SpecError also handles this one.
    """

    def __init__(self, errors: Iterable[SpecError]) -> None:
        flat: list[SpecError] = []
        seen = set()
        for error in errors:
            for single in error.errors if isinstance(error, SpecErrors) else [error]:
                # A mistake inside a block used several times, or a repeat body, is reported once,
                # with the notes of its first use.
                key = (single.location, single.message)
                if key not in seen:
                    seen.add(key)
                    flat.append(single)
        flat.sort(key=lambda e: (e.location.line, e.location.column) if e.location else (0, 0))
        first = flat[0]
        super().__init__(first.message, location=first.location, source_line=first.source_line, hint=first.hint)
        self.notes = first.notes
        self.errors = tuple(flat)

    def format(self) -> str:
        if len(self.errors) == 1:
            return self.errors[0].format()
        return "\n".join(error.format() for error in self.errors) + f"\n{len(self.errors)} errors"


class DataError(LipcError):
    """A missing, corrupt or unusable data set."""


class RunError(LipcError):
    """A missing or inconsistent run folder, or an output that cannot be written."""


class UsageError(LipcError):
    """A command-line option with a nonsensical value."""


class BoundViolation(LipcError):
    """A measured value above the bound that lipc reported for it: a bug in lipc, not in the input."""


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """Return a hint naming the candidate closest to `word`, if any is close.

    Among the candidates that difflib finds similar, the fewest edits wins, counting a swap
    of two neighbouring letters as one edit, so that 'adma' suggests 'adam' over 'adamax'.
    """
    matches = difflib.get_close_matches(word, list(candidates), n=5, cutoff=0.6)
    if not matches:
        return None
    best = min(matches, key=lambda match: _edit_distance(word, match))
    return f"did you mean '{best}'?"


def _edit_distance(first: str, second: str) -> int:
    """Optimal string alignment distance: insertions, deletions, substitutions and adjacent swaps."""
    previous_row: list[int] | None = None
    row = list(range(len(second) + 1))
    for i in range(1, len(first) + 1):
        before, previous_row = previous_row, row
        row = [i] + [0] * len(second)
        for j in range(1, len(second) + 1):
            cost = 0 if first[i - 1] == second[j - 1] else 1
            row[j] = min(previous_row[j] + 1, row[j - 1] + 1, previous_row[j - 1] + cost)
            if before is not None and j > 1 and first[i - 1] == second[j - 2] and first[i - 2] == second[j - 1]:
                row[j] = min(row[j], before[j - 2] + 1)
    return row[len(second)]
