"""Evaluate `let`, arithmetic, `repeat` and block uses into plain layers and literal values.

The result is a SpecFile whose networks hold only LayerDecl (with a body for `residual`)
and whose values are Number, String, Name, ListValue or Call. A bare name that is not a
defined value stays a Name, because words such as `same` or `bjorck` are option values.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field, replace

from lipc.errors import Location, SpecError, SpecErrors, did_you_mean
from lipc.lang.syntax import (
    Argument,
    BinaryOperation,
    BlockDecl,
    Call,
    LayerDecl,
    LetDecl,
    ListValue,
    LossDecl,
    Name,
    Negation,
    NetworkDecl,
    Number,
    RepeatDecl,
    SectionDecl,
    Setting,
    SpecFile,
    Statement,
    String,
    Value,
)

# Limits that keep a mistyped count from expanding a network without end. Statements count
# every layer, `let` and block use that expansion visits, so that repeats of bodies that
# produce no layer are bounded too.
MAX_LAYERS = 10_000
MAX_EXPANDED_STATEMENTS = 100_000
MAX_BLOCK_DEPTH = 32

# Names that the language gives a meaning of its own, and so cannot be defined with `let`.
RESERVED_NAMES = ("true", "false")


def use_notes(spec: SpecFile, used_at: tuple[Location, ...]) -> list[str]:
    """Describe, innermost first, the block uses that a layer was expanded from."""
    return [f"{location}: note: in the block used here: {spec.source_line(location.line).strip()}" for location in reversed(used_at)]


class _ExpansionError(Exception):
    """Stop expanding the current statement; the SpecError is already recorded."""


@dataclass
class _Scope:
    """Named values visible at one point: a block's parameters and lets, then the file's."""

    values: dict[str, Value] = field(default_factory=dict)
    parent: "_Scope | None" = None

    def lookup(self, name: str) -> Value | None:
        scope = self
        while scope is not None:
            if name in scope.values:
                return scope.values[name]
            scope = scope.parent
        return None

    def names(self) -> list[str]:
        names = []
        scope = self
        while scope is not None:
            names.extend(scope.values)
            scope = scope.parent
        return names


class _Expander:
    def __init__(self, spec: SpecFile, known_layers: frozenset[str]) -> None:
        self.spec = spec
        self.known_layers = known_layers
        self.errors: list[SpecError] = []
        self.blocks: dict[str, BlockDecl] = {}
        self.used_blocks: set[str] = set()
        self.used_names: set[str] = set()
        self.layer_count = 0
        self.statement_count = 0
        self.limit_reported = False
        # The blocks being expanded, outermost first, to find a block that uses itself.
        self.active_blocks: list[str] = []

    # Errors -----------------------------------------------------------------------------

    def fail(self, location: Location, message: str, hint: str | None = None, used_at: tuple[Location, ...] = ()):
        error = SpecError(message, location=location, source_line=self.spec.source_line(location.line), hint=hint)
        self.errors.append(error.with_notes(use_notes(self.spec, used_at)))
        raise _ExpansionError

    def fail_limit(self, location: Location, message: str, used_at) -> None:
        """Report a network that expands past a limit, once: every later statement is past it too."""
        if self.limit_reported:
            raise _ExpansionError
        self.limit_reported = True
        self.fail(location, message, "check the counts of 'repeat'", used_at)

    # Values -----------------------------------------------------------------------------

    def number(self, value: Value, scope: _Scope, used_at) -> int | float:
        """Evaluate an operand of arithmetic, which must be a number."""
        result = self.evaluate(value, scope, used_at)
        if isinstance(result, Number):
            return result.value
        if isinstance(result, Name):
            hint = did_you_mean(result.value, scope.names()) or f"define it first with 'let {result.value} = VALUE'"
            self.fail(result.location, f"unknown name '{result.value}' in arithmetic", hint, used_at)
        self.fail(value.location, "arithmetic needs numbers, not " + _describe(result), "use + - * / on numbers and named numbers only", used_at)

    def evaluate(self, value: Value, scope: _Scope, used_at) -> Value:
        if isinstance(value, Name):
            bound = scope.lookup(value.value)
            if bound is None:
                return value
            self.used_names.add(value.value)
            return replace(bound, location=value.location)
        if isinstance(value, ListValue):
            return ListValue(tuple(self.evaluate(item, scope, used_at) for item in value.items), value.location)
        if isinstance(value, Call):
            return Call(value.function, self.arguments(value.arguments, scope, used_at), value.location)
        if isinstance(value, Negation):
            return self.make_number(-self.number(value.operand, scope, used_at), value.location, used_at)
        if isinstance(value, BinaryOperation):
            return self.make_number(self.arithmetic(value, scope, used_at), value.location, used_at)
        return value

    def arithmetic(self, operation: BinaryOperation, scope: _Scope, used_at) -> int | float:
        left = self.number(operation.left, scope, used_at)
        right = self.number(operation.right, scope, used_at)
        if operation.operator == "+":
            return left + right
        if operation.operator == "-":
            return left - right
        if operation.operator == "*":
            return left * right
        if right == 0:
            self.fail(operation.right.location, "division by zero", "check the divisor: it evaluates to 0", used_at)
        # Whole numbers that divide exactly stay whole, so that `width / 2` can be a layer width.
        if isinstance(left, int) and isinstance(right, int) and left % right == 0:
            return left // right
        return left / right

    def make_number(self, value: int | float, location: Location, used_at) -> Number:
        # Whole numbers are exact in Python, so a product can outgrow every float.
        if isinstance(value, int) and abs(value) > sys.float_info.max:
            self.fail(location, "the result of this arithmetic is too large", "numbers must lie within about ±1.8e308", used_at)
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(location, f"the result of this arithmetic is not a finite number: {value}", "check the operands", used_at)
        return Number(value, location)

    def arguments(self, arguments, scope: _Scope, used_at) -> tuple[Argument, ...]:
        return tuple(Argument(a.name, self.evaluate(a.value, scope, used_at), a.location) for a in arguments)

    # Definitions ------------------------------------------------------------------------

    def define(self, let: LetDecl, scope: _Scope, used_at=()) -> None:
        if let.name in RESERVED_NAMES:
            self.fail(let.location, f"'{let.name}' is a reserved word and cannot be defined", "choose another name", used_at)
        if let.name in scope.values:
            self.fail(let.location, f"the name '{let.name}' is defined twice", "rename one of the two definitions", used_at)
        scope.values[let.name] = self.evaluate(let.value, scope, used_at)

    def collect_blocks(self) -> None:
        for block in self.spec.blocks:
            try:
                if block.name in self.blocks:
                    self.fail(block.location, f"the block '{block.name}' is defined twice", "rename one of the two blocks")
                if block.name in self.known_layers:
                    self.fail(block.location, f"the block '{block.name}' has the name of a layer", "rename the block")
                seen = set()
                for parameter in block.parameters:
                    if parameter.name in seen:
                        self.fail(parameter.location, f"the parameter '{parameter.name}' of block '{block.name}' is declared twice", "remove one")
                    seen.add(parameter.name)
            except _ExpansionError:
                continue
            self.blocks[block.name] = block

    # Statements -------------------------------------------------------------------------

    def statements(self, statements, scope: _Scope, used_at: tuple[Location, ...], depth: int) -> list[LayerDecl]:
        layers: list[LayerDecl] = []
        for statement in statements:
            try:
                layers.extend(self.statement(statement, scope, used_at, depth))
            except _ExpansionError:
                continue
        return layers

    def statement(self, statement: Statement, scope: _Scope, used_at, depth: int) -> list[LayerDecl]:
        self.statement_count += 1
        if self.statement_count > MAX_EXPANDED_STATEMENTS:
            self.fail_limit(statement.location, f"the network expands to more than {MAX_EXPANDED_STATEMENTS} statements", used_at)
        if isinstance(statement, LetDecl):
            self.define(statement, scope, used_at)
            return []
        if isinstance(statement, RepeatDecl):
            return self.repeat(statement, scope, used_at, depth)
        if statement.kind in self.blocks:
            return self.use_block(statement, scope, used_at, depth)

        arguments = self.arguments(statement.arguments, scope, used_at)
        body = None
        if statement.body is not None:
            body = tuple(self.statements(statement.body, _Scope(parent=scope), used_at, depth))
        self.layer_count += 1
        if self.layer_count > MAX_LAYERS:
            self.fail_limit(statement.location, f"the network expands to more than {MAX_LAYERS} layers", used_at)
        return [LayerDecl(statement.kind, arguments, statement.location, body, used_at)]

    def repeat(self, repeat: RepeatDecl, scope: _Scope, used_at, depth: int) -> list[LayerDecl]:
        count = self.number(repeat.count, scope, used_at)
        if not isinstance(count, int) or count < 1:
            self.fail(repeat.count.location, f"the count of repeat must be a whole number of at least 1, not {count!r}", "write repeat 3 { ... }", used_at)
        if count > MAX_LAYERS:
            self.fail(repeat.count.location, f"the count of repeat must be at most {MAX_LAYERS}, not {count}", f"check the count: a network has at most {MAX_LAYERS} layers", used_at)
        layers = []
        for _ in range(count):
            # Each repetition gets a fresh scope, so a `let` inside the body may be evaluated again.
            layers.extend(self.statements(repeat.body, _Scope(parent=scope), used_at, depth))
            if self.errors:
                break
        return layers

    def use_block(self, use: LayerDecl, scope: _Scope, used_at, depth: int) -> list[LayerDecl]:
        block = self.blocks[use.kind]
        self.used_blocks.add(block.name)
        if block.name in self.active_blocks:
            cycle = " -> ".join(self.active_blocks[self.active_blocks.index(block.name):] + [block.name])
            self.fail(use.location, f"the block '{block.name}' uses itself ({cycle})", "a block cannot use itself, directly or through other blocks", used_at)
        if depth >= MAX_BLOCK_DEPTH:
            self.fail(use.location, f"blocks are nested more than {MAX_BLOCK_DEPTH} deep here", f"check whether block '{block.name}' uses itself", used_at)
        if use.body is not None:
            self.fail(use.location, f"the block '{block.name}' takes no inner layers", "remove the braces", used_at)

        names = [p.name for p in block.parameters]
        values: dict[str, Value] = {}
        position = 0
        for argument in self.arguments(use.arguments, scope, used_at):
            if argument.name is None:
                if position >= len(names):
                    self.fail(argument.location, f"too many arguments for block '{block.name}'", f"it takes {len(names)}: {', '.join(names) or 'none'}", used_at)
                name = names[position]
                position += 1
            else:
                name = argument.name
                if name not in names:
                    hint = did_you_mean(name, names) or f"its parameters are {', '.join(names) or 'none'}"
                    self.fail(argument.location, f"unknown parameter '{name}' for block '{block.name}'", hint, used_at)
            if name in values:
                self.fail(argument.location, f"the parameter '{name}' of block '{block.name}' is given twice", "remove one of them", used_at)
            values[name] = argument.value

        # Defaults are evaluated where the block is defined: they see the file's values and the
        # parameters declared before them, as in `block unit(width, inner=width * 2)`.
        file_scope = scope
        while file_scope.parent is not None:
            file_scope = file_scope.parent
        earlier = _Scope(parent=file_scope)
        for parameter in block.parameters:
            if parameter.name not in values:
                if parameter.default is None:
                    self.fail(use.location, f"the block '{block.name}' needs the argument '{parameter.name}'", f"write {block.name} {parameter.name}=VALUE", used_at)
                values[parameter.name] = self.evaluate(parameter.default, earlier, used_at)
            earlier.values[parameter.name] = values[parameter.name]

        body_scope = _Scope(values, parent=file_scope)
        self.used_names.update(values)
        self.active_blocks.append(block.name)
        try:
            return self.statements(block.body, body_scope, used_at + (use.location,), depth + 1)
        finally:
            self.active_blocks.pop()

    # Whole file -------------------------------------------------------------------------

    def expand(self) -> SpecFile:
        self.collect_blocks()
        file_scope = _Scope()
        for let in self.spec.lets:
            try:
                self.define(let, file_scope)
            except _ExpansionError:
                continue

        items = []
        for item in self.spec.items:
            try:
                items.append(self.item(item, file_scope))
            except _ExpansionError:
                continue
        if self.errors:
            raise SpecErrors(self.errors)
        return replace(self.spec, items=tuple(items))

    def item(self, item, file_scope: _Scope):
        if isinstance(item, NetworkDecl):
            self.layer_count = 0
            self.statement_count = 0
            self.limit_reported = False
            layers = self.statements(item.layers, _Scope(parent=file_scope), (), 0)
            return NetworkDecl(item.name, tuple(layers), item.location)
        if isinstance(item, LossDecl):
            return LossDecl(item.kind, self.arguments(item.arguments, file_scope, ()), item.location)
        if isinstance(item, SectionDecl):
            settings = []
            for setting in item.settings:
                try:
                    settings.append(Setting(setting.name, self.evaluate(setting.value, file_scope, ()), setting.location))
                except _ExpansionError:
                    continue
            return SectionDecl(item.name, tuple(settings), item.location)
        return item


def _describe(value: Value) -> str:
    if isinstance(value, String):
        return f'"{value.value}"'
    if isinstance(value, ListValue):
        return "a list"
    if isinstance(value, Call):
        return f"the call {value.function}(...)"
    return "this value"


@dataclass(frozen=True)
class Expansion:
    """An expanded spec, with the names and blocks that the source defines but never uses."""

    spec: SpecFile
    unused_lets: tuple[LetDecl, ...]
    unused_blocks: tuple[BlockDecl, ...]


def expand_spec(spec: SpecFile, known_layers=frozenset()) -> Expansion:
    """Evaluate every named value, block use and repeat of `spec`; raise SpecErrors listing every problem.

    `known_layers` names the layer kinds, which a block may not take as its name.
    """
    expander = _Expander(spec, frozenset(known_layers))
    expanded = expander.expand()
    unused_lets = tuple(let for let in spec.lets if let.name not in expander.used_names)
    unused_blocks = tuple(block for block in spec.blocks if block.name not in expander.used_blocks)
    return Expansion(expanded, unused_lets, unused_blocks)
