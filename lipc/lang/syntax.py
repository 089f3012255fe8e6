"""Syntax tree of a `.lip` file, as plain frozen dataclasses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from lipc.errors import Location


@dataclass(frozen=True)
class Number:
    value: int | float
    location: Location


@dataclass(frozen=True)
class Name:
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


Value = Union[Number, Name, String, ListValue, Call]


@dataclass(frozen=True)
class Argument:
    """A positional (`name` is None) or keyword argument of a layer, loss or call."""

    name: str | None
    value: Value
    location: Location


@dataclass(frozen=True)
class LayerDecl:
    """One layer line. `body` contains the inner layers of a block layer such as `residual`, else None."""

    kind: str
    arguments: tuple[Argument, ...]
    location: Location
    body: tuple["LayerDecl", ...] | None = None


@dataclass(frozen=True)
class NetworkDecl:
    name: str
    layers: tuple[LayerDecl, ...]
    location: Location


@dataclass(frozen=True)
class LossDecl:
    kind: str
    arguments: tuple[Argument, ...]
    location: Location


@dataclass(frozen=True)
class Setting:
    """One ``name = value`` line of a `train` block."""

    name: str
    value: Value
    location: Location


@dataclass(frozen=True)
class TrainDecl:
    settings: tuple[Setting, ...]
    location: Location


@dataclass(frozen=True)
class SpecFile:
    """A parsed `.lip` file, before any checking."""

    path: str
    source: str
    networks: tuple[NetworkDecl, ...]
    losses: tuple[LossDecl, ...]
    trains: tuple[TrainDecl, ...]

    def source_line(self, line: int) -> str:
        lines = self.source.splitlines()
        return lines[line - 1] if 0 < line <= len(lines) else ""
