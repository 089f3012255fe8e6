"""Rewrite `.lip` source text in canonical layout, keeping every comment (`lipc fmt`).

The layout depends only on the syntax tree, the comments and where blank lines were:

- 4 spaces of indentation per block level, no trailing whitespace, and LF line endings.
  The file ends with exactly one newline, unless it is empty. Long lines stay whole,
  because the grammar ends every statement at the end of its line.
- `network NAME {`, `block NAME(a, b=1) {` (`block NAME {` without parameters),
  `repeat COUNT {`, `SECTION {` and `residual alpha=0.5 {` open a block on their line;
  each `}` is alone on its line, at the indentation of the line that opened it.
- A layer or loss is its kind followed by its arguments, one space before each.
  Keyword arguments are written `name=value`, settings `name = value`, named values
  `let NAME = VALUE`, lists `[1, 28, 28]` and calls `adam(lr=0.001)`.
- Arithmetic has one space around each binary operator and none after a unary minus.
  Parentheses appear only where precedence or left associativity needs them, as in
  `(a + b) * c` and `a - (b - c)`, or where a positional argument would otherwise start
  with `-`, as in `dense (-1)`. Numbers and strings are written exactly as in the source.
- Top-level items are separated by one blank line, except consecutive `let` lines, which
  keep the blank line of the source, if any. Elsewhere, blank lines of the source are kept,
  a run of several becomes one, and blank lines just after `{` or just before `}` are
  dropped.
- A comment on a line of its own stays above the line that followed it, at that line's
  indentation. A comment at the end of a block stays there, at the indentation of the
  block's contents, and one at the end of the file stays at the end. A comment after code
  stays on that line: on consecutive lines that all end with a comment, the comments are
  aligned two spaces after the longest line, and a lone one follows its line after two
  spaces. Comment text is kept as written, less trailing whitespace.

`format_spec` parses its own output again before returning it, and raises `FormatError`
unless the output has the same syntax tree and the same comments in the same order.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import stat
import sys
import tempfile
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from lipc.errors import LipcError, RunError, SpecError, UsageError
from lipc.lang.parser import _parser, parse_file, parse_source
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
    SpecFile,
    String,
    Value,
)

INDENT = "    "

# The path argument that means standard input, and the name that messages give it.
STDIN_ARGUMENT = "-"
STDIN_NAME = "<stdin>"

# Spaces between the end of the longest line of a run and its trailing comments.
COMMENT_GAP = 2

# Binding strength of each kind of expression: a subexpression that binds less tightly
# than its position requires is written in parentheses.
_SUM, _PRODUCT, _UNARY, _PRIMARY = 1, 2, 3, 4
_OPERATOR_PRECEDENCE = {"+": _SUM, "-": _SUM, "*": _PRODUCT, "/": _PRODUCT}


class FormatError(LipcError):
    """Formatting would change a file's meaning or lose a comment: a bug in lipc, not in the input."""


@dataclass(frozen=True)
class Comment:
    """A `#` comment: `own_line` when no code precedes it on its line."""

    line: int
    column: int
    text: str
    own_line: bool


def format_source(source: str, path: str = "<string>") -> str:
    """Parse `source` and return it in canonical layout; raise SpecError if it does not parse."""
    return format_spec(parse_source(source, path))


def format_spec(spec: SpecFile) -> str:
    """Return the source of a parsed file in canonical layout, with its comments."""
    comments, closing_lines = _scan(spec.source)
    writer = _Writer(spec.source, comments, closing_lines)
    writer.items(spec.items)
    formatted = writer.render()
    _check_equivalent(spec, comments, formatted)
    return formatted


def collect_comments(source: str) -> list[Comment]:
    """List the comments of `source` in order; `source` must lex without error, as any file that parses does."""
    return _scan(source)[0]


def _scan(source: str) -> tuple[list[Comment], dict[int, int]]:
    """Collect the comments of `source`, and map the line of each `{` to the line of its `}`.

    Both come from the parser's own lexer, so that a `#` inside a string is no comment.
    The lexer drops comments, so they come from its COMMENT tokens (after code, or on the
    first line) and from the text of its newline tokens, which include any comment-only
    lines after a line. The grammar puts each `{` on the line of the statement that opens
    it, at most one per line, and each `}` on a line of its own, so lines identify braces.
    """
    text = source if source.endswith("\n") else source + "\n"
    source_lines = source.split("\n")
    comments = []
    closing_lines: dict[int, int] = {}
    open_lines: list[int] = []
    for token in _parser().lex(text, dont_ignore=True):
        if token.type == "COMMENT":
            before = source_lines[token.line - 1][: token.column - 1]
            comments.append(Comment(token.line, token.column, str(token).rstrip(), own_line=not before.strip()))
        elif token.type == "_NL":
            for offset, line_text in enumerate(str(token).split("\n")):
                start = line_text.find("#")
                if start >= 0:
                    comments.append(Comment(token.line + offset, start + 1, line_text[start:].rstrip(), own_line=True))
        elif token.type == "LBRACE":
            open_lines.append(token.line)
        elif token.type == "RBRACE":
            closing_lines[open_lines.pop()] = token.line
    return comments, closing_lines


# Expressions -----------------------------------------------------------------------------


def format_value(value: Value, positional: bool = False) -> str:
    """Write an expression with the fewest parentheses that keep its syntax tree.

    With `positional`, the result never starts with `-`, which a layer's positional
    argument may not do: a leading negation is put in parentheses.
    """
    return _expression(value, _SUM, positional)


def _expression(value: Value, minimum_precedence: int, leftmost_positional: bool) -> str:
    text, precedence = _unparenthesized(value, leftmost_positional)
    if precedence < minimum_precedence:
        return f"({_unparenthesized(value, False)[0]})"
    if leftmost_positional and text.startswith("-"):
        # Only a Negation starts with '-', and only a Negation at the far left of the expression.
        return f"({text})"
    return text


def _unparenthesized(value: Value, leftmost_positional: bool) -> tuple[str, int]:
    """Write `value` without outer parentheses; return the text and how tightly it binds."""
    if isinstance(value, Number):
        return (value.text if value.text is not None else repr(value.value)), _PRIMARY
    if isinstance(value, String):
        return f'"{value.value}"', _PRIMARY
    if isinstance(value, Name):
        return value.value, _PRIMARY
    if isinstance(value, ListValue):
        return "[" + ", ".join(format_value(item) for item in value.items) + "]", _PRIMARY
    if isinstance(value, Call):
        return f"{value.function}(" + ", ".join(format_argument(argument) for argument in value.arguments) + ")", _PRIMARY
    if isinstance(value, Negation):
        return "-" + _expression(value.operand, _UNARY, False), _UNARY
    if isinstance(value, BinaryOperation):
        # Operators associate to the left, so a right operand of the same precedence needs parentheses.
        precedence = _OPERATOR_PRECEDENCE[value.operator]
        left = _expression(value.left, precedence, leftmost_positional)
        right = _expression(value.right, precedence + 1, False)
        return f"{left} {value.operator} {right}", precedence
    raise TypeError(f"cannot format a value of type {type(value).__name__}")


def format_argument(argument: Argument) -> str:
    """Write a keyword argument as `name=value`, a positional one as its value."""
    if argument.name is None:
        return format_value(argument.value, positional=True)
    return f"{argument.name}={format_value(argument.value)}"


def _with_arguments(head: str, arguments: tuple[Argument, ...]) -> str:
    return " ".join([head, *(format_argument(argument) for argument in arguments)])


# Layout ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _OutputLine:
    """One output line: `text` is code, an own-line comment, or empty for a blank line."""

    indent: int
    text: str
    trailing_comment: str | None = None

    @property
    def code(self) -> str:
        return INDENT * self.indent + self.text if self.text else ""


class _Writer:
    """Lay out a file's items line by line, placing each comment next to the line it was next to."""

    def __init__(self, source: str, comments: list[Comment], closing_lines: dict[int, int]) -> None:
        self.source_lines = source.split("\n")
        self.own_line_comments = deque(comment for comment in comments if comment.own_line)
        self.trailing_comments = {comment.line: comment.text for comment in comments if not comment.own_line}
        self.closing_lines = closing_lines
        self.lines: list[_OutputLine] = []
        # True right after a `{` and at the start of the file, where blank lines are dropped.
        self.at_block_start = True
        # True between two top-level items, where exactly one blank line goes.
        self.blank_required = False

    # Lines and the comments around them ------------------------------------------------

    def _blank_in_source_before(self, line: int) -> bool:
        return line >= 2 and not self.source_lines[line - 2].strip()

    def _append(self, line: _OutputLine, source_line: int) -> None:
        blank = self.blank_required or (self._blank_in_source_before(source_line) and not self.at_block_start)
        if blank and self.lines and self.lines[-1].text:
            self.lines.append(_OutputLine(0, ""))
        self.lines.append(line)
        self.blank_required = False
        self.at_block_start = False

    def _comments_before(self, line: int, indent: int) -> None:
        """Write the own-line comments that precede source line `line`."""
        while self.own_line_comments and self.own_line_comments[0].line < line:
            comment = self.own_line_comments.popleft()
            self._append(_OutputLine(indent, comment.text), comment.line)

    def _code(self, line: int, indent: int, text: str) -> None:
        self._comments_before(line, indent)
        self._append(_OutputLine(indent, text, self.trailing_comments.pop(line, None)), line)

    def _open(self, line: int, indent: int, header: str) -> int:
        """Write a line that opens a block; return the line of the `}` that closes it."""
        self._code(line, indent, header + " {")
        self.at_block_start = True
        return self.closing_lines[line]

    def _close(self, line: int, indent: int) -> None:
        self._comments_before(line, indent + 1)
        self.lines.append(_OutputLine(indent, "}", self.trailing_comments.pop(line, None)))
        self.at_block_start = False

    # Items and statements --------------------------------------------------------------

    def items(self, items) -> None:
        previous = None
        for item in items:
            if previous is not None and not (isinstance(previous, LetDecl) and isinstance(item, LetDecl)):
                self.blank_required = True
            self._item(item)
            previous = item
        self._comments_before(len(self.source_lines) + 1, 0)

    def _item(self, item) -> None:
        line = item.location.line
        if isinstance(item, NetworkDecl):
            closing = self._open(line, 0, f"network {item.name}")
            self._statements(item.layers, 1)
            self._close(closing, 0)
        elif isinstance(item, BlockDecl):
            parameters = ", ".join(
                parameter.name if parameter.default is None else f"{parameter.name}={format_value(parameter.default)}"
                for parameter in item.parameters
            )
            header = f"block {item.name}({parameters})" if item.parameters else f"block {item.name}"
            closing = self._open(line, 0, header)
            self._statements(item.body, 1)
            self._close(closing, 0)
        elif isinstance(item, SectionDecl):
            closing = self._open(line, 0, item.name)
            for setting in item.settings:
                self._code(setting.location.line, 1, f"{setting.name} = {format_value(setting.value)}")
            self._close(closing, 0)
        elif isinstance(item, LossDecl):
            self._code(line, 0, _with_arguments(f"loss {item.kind}", item.arguments))
        elif isinstance(item, LetDecl):
            self._code(line, 0, f"let {item.name} = {format_value(item.value)}")
        else:
            raise TypeError(f"cannot format an item of type {type(item).__name__}")

    def _statements(self, statements, indent: int) -> None:
        for statement in statements:
            line = statement.location.line
            if isinstance(statement, LetDecl):
                self._code(line, indent, f"let {statement.name} = {format_value(statement.value)}")
            elif isinstance(statement, RepeatDecl):
                closing = self._open(line, indent, f"repeat {format_value(statement.count)}")
                self._statements(statement.body, indent + 1)
                self._close(closing, indent)
            elif isinstance(statement, LayerDecl) and statement.body is not None:
                closing = self._open(line, indent, _with_arguments(statement.kind, statement.arguments))
                self._statements(statement.body, indent + 1)
                self._close(closing, indent)
            elif isinstance(statement, LayerDecl):
                self._code(line, indent, _with_arguments(statement.kind, statement.arguments))
            else:
                raise TypeError(f"cannot format a statement of type {type(statement).__name__}")

    # Output ----------------------------------------------------------------------------

    def render(self) -> str:
        """Join the lines, aligning the trailing comments of each run of consecutive lines that have one."""
        rendered: list[str] = []
        run: list[_OutputLine] = []
        for line in self.lines:
            if line.trailing_comment is not None:
                run.append(line)
                continue
            rendered.extend(_aligned(run))
            run = []
            rendered.append(line.code)
        rendered.extend(_aligned(run))
        return "\n".join(rendered) + "\n" if rendered else ""


def _aligned(run: list[_OutputLine]) -> list[str]:
    if not run:
        return []
    column = max(len(line.code) for line in run) + COMMENT_GAP
    return [line.code.ljust(column) + line.trailing_comment for line in run]


# Self-check --------------------------------------------------------------------------------


def _check_equivalent(spec: SpecFile, comments: list[Comment], formatted: str) -> None:
    """Raise FormatError unless `formatted` parses to the same tree, with the same comments in order."""
    problem = None
    try:
        reparsed = parse_source(formatted, spec.path)
    except LipcError as error:
        problem = f"the formatted text does not parse ({error.message})"
    else:
        if strip_locations(reparsed.items) != strip_locations(spec.items):
            problem = "formatting would change its meaning"
        elif [comment.text for comment in collect_comments(formatted)] != [comment.text for comment in comments]:
            problem = "formatting would lose or reorder a comment"
    if problem:
        raise FormatError(
            f"cannot format {spec.path}: {problem}, so it was left unchanged",
            hint="this is a bug in lipc fmt; please report it together with the file",
        )


def strip_locations(node):
    """Return a syntax tree as nested tuples without source locations, to compare two trees."""
    if isinstance(node, tuple):
        return tuple(strip_locations(child) for child in node)
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        fields = (field.name for field in dataclasses.fields(node) if field.name not in ("location", "used_at"))
        return (type(node).__name__, *((name, strip_locations(getattr(node, name))) for name in fields))
    return node


# Files -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FormattedFile:
    """A file's text before and after formatting; `path` is "-" for standard input."""

    path: str
    original: str
    formatted: str

    @property
    def changed(self) -> bool:
        return self.original != self.formatted

    def unified_diff(self) -> str:
        """Return the change as a unified diff, empty when there is none."""
        name = STDIN_NAME if self.path == STDIN_ARGUMENT else self.path
        lines = difflib.unified_diff(
            self.original.splitlines(keepends=True),
            self.formatted.splitlines(keepends=True),
            fromfile=name,
            tofile=name,
            fromfiledate="original",
            tofiledate="formatted",
        )
        return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)


def spec_paths(arguments: list[str]) -> list[str]:
    """Replace each folder among `arguments` with the `.lip` files under it, in sorted order.

    Files and folders whose name starts with '.' inside a folder are skipped. Other
    arguments, including "-" and paths that do not exist, are kept for `format_file`
    to read or report.
    """
    paths = []
    for argument in arguments:
        if argument == STDIN_ARGUMENT or not os.path.isdir(argument):
            paths.append(argument)
            continue
        folder = Path(argument)
        found = sorted(
            path
            for path in folder.rglob("*.lip")
            if path.is_file() and not any(part.startswith(".") for part in path.relative_to(folder).parts)
        )
        if not found:
            raise UsageError(f"no .lip files found in folder {argument}", hint="name .lip files or folders that contain some")
        paths.extend(str(path) for path in found)
    return paths


def format_file(path: str) -> FormattedFile:
    """Read and format the `.lip` file at `path`, or standard input when `path` is "-"."""
    if path == STDIN_ARGUMENT:
        try:
            original = sys.stdin.buffer.read().decode("utf-8")
        except UnicodeDecodeError as error:
            raise SpecError(f"standard input is not valid UTF-8 (byte {error.start})", hint="pass UTF-8 text") from None
        return FormattedFile(path, original, format_source(original, STDIN_NAME))

    spec = parse_file(path)
    # parse_file reads with universal newlines; the bytes show whether line endings change too.
    original = Path(path).read_bytes().decode("utf-8")
    return FormattedFile(path, original, format_spec(spec))


def write_atomically(path: str, text: str) -> None:
    """Replace the file at `path` with `text`, keeping its permissions.

    The text goes to a temporary file in the same folder, which is then renamed over the
    file, so that a reader or an interrupted run finds either the old file or the whole new one.
    A symbolic link is followed, and the file it points to is replaced.
    """
    target = Path(os.path.realpath(path))
    if not os.access(target, os.W_OK):
        raise RunError(f"cannot write {path}: permission denied", hint="make the file writable, or use --check or --diff")
    staging = None
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
        handle, staging_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        staging = Path(staging_name)
        with os.fdopen(handle, "wb") as file:
            file.write(text.encode("utf-8"))
            file.flush()
            os.fsync(file.fileno())
        os.chmod(staging, mode)
        os.replace(staging, target)
    except OSError as error:
        if staging is not None:
            staging.unlink(missing_ok=True)
        raise RunError(f"cannot write {path}: {error.strerror}", hint="check the disk space and the folder's permissions") from None
    except BaseException:
        if staging is not None:
            staging.unlink(missing_ok=True)
        raise
