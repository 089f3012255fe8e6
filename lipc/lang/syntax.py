"""Syntax tree of a `.lip` file, as plain frozen dataclasses.

The parser produces the tree as written, with `let`, `block`, `repeat` and arithmetic.
`lipc.lang.expand` then evaluates it into the same classes with only literal values
(Number, String, Name, ListValue, Call) and networks made of LayerDecl alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from lipc.errors import Location


@dataclass(frozen=True)
class Number:
    value: int | float
    location: Location
    # The spelling in the source, kept so that `lipc fmt` writes numbers as they were written.
    text: str | None = None


@dataclass(frozen=True)
class Name:
    """A bare word: a named value if one is defined, else a symbol such as `same` or `bjorck`."""

    value: str
    location: Location


@dataclass(frozen=True)
class String:
    value: str
    location: Location


@dataclass(frozen=True)
class ListValue:
    items: tuple["Value", ...]
    location: Location


@dataclass(frozen=True)
class Call:
    """A function-style value such as ``adam(lr=0.01)``."""

    function: str
    arguments: tuple["Argument", ...]
    location: Location


@dataclass(frozen=True)
class BinaryOperation:
    """`left OPERATOR right`, with OPERATOR one of + - * /."""

    operator: str
    left: "Value"
    right: "Value"
    location: Location


@dataclass(frozen=True)
class Negation:
    operand: "Value"
    location: Location


Value = Union[Number, Name, String, ListValue, Call, BinaryOperation, Negation]


@dataclass(frozen=True)
class Argument:
    """A positional (`name` is None) or keyword argument of a layer, loss or call."""

    name: str | None
    value: Value
    location: Location


@dataclass(frozen=True)
class LayerDecl:
    """One layer line, or the use of a block.

    `body` contains the inner statements of a block layer such as `residual`, else None.
    `used_at` lists, outermost first, the lines that used the blocks this layer was expanded from.
    """

    kind: str
    arguments: tuple[Argument, ...]
    location: Location
    body: tuple["Statement", ...] | None = None
    used_at: tuple[Location, ...] = ()


@dataclass(frozen=True)
class LetDecl:
    """``let NAME = EXPRESSION``."""

    name: str
    value: Value
    location: Location


@dataclass(frozen=True)
class RepeatDecl:
    """``repeat COUNT { ... }``: the body, COUNT times in a row."""

    count: Value
    body: tuple["Statement", ...]
    location: Location


Statement = Union[LayerDecl, LetDecl, RepeatDecl]


@dataclass(frozen=True)
class Parameter:
    """A parameter of a block, with its default value or None when it is required."""

    name: str
    default: Value | None
    location: Location


@dataclass(frozen=True)
class BlockDecl:
    """``block NAME(PARAMETERS) { ... }``: layers defined once, used like a layer."""

    name: str
    parameters: tuple[Parameter, ...]
    body: tuple[Statement, ...]
    location: Location


@dataclass(frozen=True)
class NetworkDecl:
    name: str
    layers: tuple[Statement, ...]
    location: Location


@dataclass(frozen=True)
class LossDecl:
    kind: str
    arguments: tuple[Argument, ...]
    location: Location


@dataclass(frozen=True)
class Setting:
    """One ``name = value`` line of a settings section."""

    name: str
    value: Value
    location: Location


@dataclass(frozen=True)
class SectionDecl:
    """A settings section such as ``train { ... }``, ``data { ... }`` or ``privacy { ... }``."""

    name: str
    settings: tuple[Setting, ...]
    location: Location


Item = Union[NetworkDecl, LossDecl, SectionDecl, LetDecl, BlockDecl]


@dataclass(frozen=True)
class SpecFile:
    """A parsed `.lip` file: its top-level items in source order."""

    path: str
    source: str
    items: tuple[Item, ...]

    def _of(self, kind):
        return tuple(item for item in self.items if isinstance(item, kind))

    @property
    def networks(self) -> tuple[NetworkDecl, ...]:
        return self._of(NetworkDecl)

    @property
    def losses(self) -> tuple[LossDecl, ...]:
        return self._of(LossDecl)

    @property
    def sections(self) -> tuple[SectionDecl, ...]:
        return self._of(SectionDecl)

    @property
    def lets(self) -> tuple[LetDecl, ...]:
        return self._of(LetDecl)

    @property
    def blocks(self) -> tuple[BlockDecl, ...]:
        return self._of(BlockDecl)

    def sections_named(self, name: str) -> tuple[SectionDecl, ...]:
        return tuple(section for section in self.sections if section.name == name)

    def source_line(self, line: int) -> str:
        # Split at "\n" alone, as the parser counts lines: str.splitlines also splits at
        # characters such as "\f" or "\u2028", which a comment may contain.
        lines = self.source.split("\n")
        return lines[line - 1] if 0 < line <= len(lines) else ""
