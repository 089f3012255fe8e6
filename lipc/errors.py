"""Errors that lipc reports to users, formatted the way a compiler reports them."""

from __future__ import annotations

import difflib
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

    def format(self) -> str:
        prefix = f"{self.location}: " if self.location else "lipc: "
        lines = [f"{prefix}error: {self.message}"]
        if self.location and self.source_line is not None:
            text = self.source_line.rstrip("\n").expandtabs(1)
            lines.append(f"    {text}")
            lines.append("    " + " " * (self.location.column - 1) + "^")
        if self.hint:
            lines.append(f"hint: {self.hint}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


class SpecError(LipcError):
    """A malformed or non-compliant `.lip` file."""


class DataError(LipcError):
    """A missing, corrupt or unusable data set."""


class RunError(LipcError):
    """A missing or inconsistent run folder, or an output that cannot be written."""


class UsageError(LipcError):
    """A command-line option with a nonsensical value."""


class BoundViolation(LipcError):
    """A measured value above the bound that lipc reported for it: a bug in lipc, not in the input."""


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """Return a hint naming the candidate closest to `word`, if any is close."""
    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f"did you mean '{matches[0]}'?" if matches else None
