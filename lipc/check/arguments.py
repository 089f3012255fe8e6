"""Read and validate the arguments of a layer, loss or call, with located errors."""

from __future__ import annotations

import math
from typing import Sequence

from lipc.errors import Location, SpecError, did_you_mean
from lipc.lang.syntax import Argument, Call, LetDecl, ListValue, Name, Number, SpecFile, String, Value

_REQUIRED = object()


def spec_error(spec: SpecFile, location: Location, message: str, hint: str | None = None) -> SpecError:
    """Build a SpecError that shows the source line of `location`."""
    return SpecError(message, location=location, source_line=spec.source_line(location.line), hint=hint)


def end_location(spec: SpecFile) -> Location:
    """Return the start of the last line of the file, for errors about something missing."""
    lines = spec.source.rstrip("\n").split("\n")
    return Location(spec.path, len(lines), 1)


def defined_names(spec: SpecFile) -> list[str]:
    """Return every name that the file defines: its lets, and the parameters and lets of its blocks."""
    names = [let.name for let in spec.lets]
    for block in spec.blocks:
        names += [parameter.name for parameter in block.parameters]
        names += [statement.name for statement in block.body if isinstance(statement, LetDecl)]
    return names


def describe_value(value: Value) -> str:
    if isinstance(value, Number):
        return repr(value.value)
    if isinstance(value, String):
        return f'"{value.value}"'
    if isinstance(value, Name):
        return value.value
    if isinstance(value, ListValue):
        return "[" + ", ".join(describe_value(item) for item in value.items) + "]"
    arguments = ", ".join(f"{a.name}={describe_value(a.value)}" for a in value.arguments)
    return f"{value.function}({arguments})"


class ArgumentReader:
    """Match the arguments of one declaration to named parameters, then read each one typed.

    `positional` names the parameters that may also be given without a name, in order.
    Call `finish()` at the end: it rejects arguments that no reader asked for.
    """

    def __init__(
        self,
        spec: SpecFile,
        owner: str,
        location: Location,
        arguments: Sequence[Argument],
        positional: Sequence[str] = (),
        keywords: Sequence[str] = (),
        noun: str = "option",
    ) -> None:
        self.spec = spec
        self.owner = owner
        self.noun = noun
        self.location = location
        self.values: dict[str, Argument] = {}
        allowed = list(positional) + [k for k in keywords if k not in positional]

        next_position = 0
        for argument in arguments:
            if argument.name is None:
                if next_position >= len(positional):
                    expected = f"at most {len(positional)}" if positional else "no"
                    raise self.error(
                        argument.location,
                        f"too many positional arguments for {owner}: {describe_value(argument.value)}",
                        f"{owner} takes {expected} positional arguments; "
                        f"its options are {', '.join(allowed) or 'none'}",
                    )
                name = positional[next_position]
                next_position += 1
            else:
                name = argument.name
                if name not in allowed:
                    hint = did_you_mean(name, allowed) or (
                        f"{owner} accepts {', '.join(allowed)}" if allowed else f"{owner} takes no options"
                    )
                    raise self.error(argument.location, f"unknown {noun} '{name}' for {owner}", hint)
            if name in self.values:
                raise self.error(argument.location, f"{noun} '{name}' of {owner} is given twice", "remove one of them")
            self.values[name] = argument

    def error(self, location: Location, message: str, hint: str | None = None) -> SpecError:
        return spec_error(self.spec, location, message, hint)

    def _name_hint(self, value: Value) -> str | None:
        """Suggest a defined name for a misspelt one, as in `dense widht`."""
        if not isinstance(value, Name):
            return None
        return did_you_mean(value.value, defined_names(self.spec)) or f"'{value.value}' is not a defined name; define it with 'let {value.value} = VALUE'"

    def has(self, name: str) -> bool:
        return name in self.values

    def location_of(self, name: str) -> Location:
        return self.values[name].location if name in self.values else self.location

    def _get(self, name: str, default):
        if name in self.values:
            return self.values[name]
        if default is _REQUIRED:
            raise self.error(self.location, f"{self.owner} needs the {self.noun} '{name}'", f"add {name}=VALUE")
        return None

    def number(self, name: str, default=_REQUIRED, *, minimum: float | None = None, exclusive_minimum: float | None = None, maximum: float | None = None) -> float:
        argument = self._get(name, default)
        if argument is None:
            return default
        value = argument.value
        if not isinstance(value, Number) or not math.isfinite(value.value):
            raise self.error(argument.location, f"{self.owner} {self.noun} '{name}' must be a number, not {describe_value(value)}", self._name_hint(value) or f"write a number, as in {name}=1.0")
        number = float(value.value)
        if exclusive_minimum is not None and not number > exclusive_minimum:
            raise self.error(argument.location, f"{self.owner} {self.noun} '{name}' must be greater than {exclusive_minimum:g}, not {number:g}", f"use a value above {exclusive_minimum:g}")
        if minimum is not None and number < minimum:
            raise self.error(argument.location, f"{self.owner} {self.noun} '{name}' must be at least {minimum:g}, not {number:g}", f"use a value of {minimum:g} or more")
        if maximum is not None and number > maximum:
            raise self.error(argument.location, f"{self.owner} {self.noun} '{name}' must be at most {maximum:g}, not {number:g}", f"use a value of {maximum:g} or less")
        return number

    def integer(self, name: str, default=_REQUIRED, *, minimum: int | None = None) -> int:
        argument = self._get(name, default)
        if argument is None:
            return default
        value = argument.value
        if not isinstance(value, Number) or not isinstance(value.value, int):
            raise self.error(argument.location, f"{self.owner} {self.noun} '{name}' must be a whole number, not {describe_value(value)}", self._name_hint(value) or f"write a whole number, as in {name}=3")
        if minimum is not None and value.value < minimum:
            raise self.error(argument.location, f"{self.owner} {self.noun} '{name}' must be at least {minimum}, not {value.value}", f"use a value of {minimum} or more")
        return value.value

    def shape(self, name: str) -> tuple[int, ...]:
        argument = self._get(name, _REQUIRED)
        value = argument.value
        valid = isinstance(value, ListValue) and value.items and all(
            isinstance(item, Number) and isinstance(item.value, int) and item.value > 0 for item in value.items
        )
        if not valid:
            raise self.error(
                argument.location,
                f"{self.owner} {self.noun} '{name}' must be a list of positive whole numbers, not {describe_value(value)}",
                "write a shape without the batch dimension, as in shape=[64] or shape=[1, 28, 28]",
            )
        return tuple(item.value for item in value.items)

    def choice(self, name: str, choices: Sequence[str], default=_REQUIRED) -> str:
        argument = self._get(name, default)
        if argument is None:
            return default
        value = argument.value
        text = value.value if isinstance(value, (Name, String)) else None
        if text not in choices:
            hint = (did_you_mean(text, choices) if text else None) or f"choose one of {', '.join(choices)}"
            raise self.error(argument.location, f"invalid {name} {describe_value(value)} for {self.owner}", hint)
        return text

    def call(self, name: str, default=_REQUIRED) -> Call | Name | None:
        argument = self._get(name, default)
        if argument is None:
            return default
        if not isinstance(argument.value, (Call, Name)):
            raise self.error(argument.location, f"{self.owner} {self.noun} '{name}' must be a name or a call such as adam(lr=0.01), not {describe_value(argument.value)}", f"write {name} = adam(lr=0.01), or another function call")
        return argument.value

    def number_list(self, name: str, default=_REQUIRED, *, minimum: float = 0.0) -> tuple[float, ...]:
        argument = self._get(name, default)
        if argument is None:
            return default
        value = argument.value
        valid = isinstance(value, ListValue) and all(isinstance(i, Number) and math.isfinite(i.value) and i.value >= minimum for i in value.items)
        if not valid:
            raise self.error(argument.location, f"{self.owner} {self.noun} '{name}' must be a list of numbers of at least {minimum:g}, not {describe_value(value)}", "write the numbers in square brackets, as in [0.25, 0.5]")
        return tuple(float(i.value) for i in value.items)
