"""Parse `.lip` source text with Lark's LALR parser into `lipc.lang.syntax` trees."""

from __future__ import annotations

import functools
import hashlib
import math
import os
import re
from importlib import resources
from pathlib import Path

import lark
from lark import Lark, Token, Transformer

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
    Parameter,
    RepeatDecl,
    SectionDecl,
    Setting,
    SpecFile,
    String,
)

# Words that describe each terminal of the grammar to users in error messages.
TERMINAL_WORDS = {
    "NETWORK": "'network'",
    "LOSS": "'loss'",
    "LET": "'let'",
    "BLOCK": "'block'",
    "REPEAT": "'repeat'",
    "LBRACE": "'{'",
    "RBRACE": "'}'",
    "LPAR": "'('",
    "RPAR": "')'",
    "LSQB": "'['",
    "RSQB": "']'",
    "COMMA": "','",
    "EQUAL": "'='",
    "PLUS": "'+'",
    "MINUS": "'-'",
    "STAR": "'*'",
    "SLASH": "'/'",
    "FUNCTION": "a function call",
    "NAME": "a name",
    "NUMBER": "a number",
    "STRING": "a quoted string",
    "_NL": "the end of the line",
    "$END": "the end of the file",
}

# Descriptions of an unexpected token, as in "unexpected name 'x'".
_FOUND_WORDS = {"NAME": "name {}", "FUNCTION": "call of {}", "NUMBER": "number {}", "STRING": "string {}", "_NL": "end of line"}

_INTEGER = re.compile(r"\d+")
_FIRST_WORD = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)")

# The deepest nesting of brackets, blocks and arithmetic that a file may have. The syntax
# tree is transformed and evaluated by recursion, a few Python frames per level, so this
# keeps far below Python's default recursion limit of 1000.
MAX_NESTING_DEPTH = 100

# The maximum number of syntax errors that one parse reports. Later ones show up in the next run.
MAX_SYNTAX_ERRORS = 20

# A string, or a comment to the end of the line: where a brace does not count.
_STRING_OR_COMMENT = re.compile(r'"[^"\n]*"?|#.*')

# The keywords that start a top-level item or a statement.
KEYWORDS = ("network", "loss", "let", "block", "repeat")
_KEYWORDS = {"NETWORK", "LOSS", "LET", "BLOCK", "REPEAT"}
_PUNCTUATION = {"LBRACE", "RBRACE", "LPAR", "RPAR", "LSQB", "RSQB", "COMMA", "EQUAL", "PLUS", "MINUS", "STAR", "SLASH"} | _KEYWORDS


def _grammar_text() -> str:
    """Read the grammar from the installed package, or from grammar/ in a source checkout."""
    try:
        return resources.files("lipc.grammar").joinpath("lipc.lark").read_text(encoding="utf-8")
    except ModuleNotFoundError:
        return (Path(__file__).resolve().parents[2] / "grammar" / "lipc.lark").read_text(encoding="utf-8")


def _parser_cache_path(grammar: str) -> str | None:
    """Return a file in the user's cache folder for Lark's parse tables, or None when no folder is safe.

    Lark stores the tables with pickle, so the folder must belong to the user and be closed to
    others. Then the file is as trusted as the user's own installed packages.
    """
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    folder = os.path.join(root, "lipc")
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        status = os.stat(folder)
    except OSError:
        return None
    if status.st_uid != os.getuid() or status.st_mode & 0o022 or not os.access(folder, os.W_OK):
        return None
    digest = hashlib.sha256(grammar.encode("utf-8")).hexdigest()[:16]
    return os.path.join(folder, f"grammar-{lark.__version__}-{digest}.lark")


@functools.lru_cache(maxsize=1)
def _parser() -> Lark:
    # Building the LALR tables takes tens of milliseconds; the cache makes later processes
    # start in a few. Lark checks the grammar and options stored in the file, rebuilds the
    # tables when they differ or the file cannot be read, and carries on if it cannot write.
    grammar = _grammar_text()
    return Lark(grammar, parser="lalr", lexer="basic", propagate_positions=True, cache=_parser_cache_path(grammar) or False)


def parse_file(path: str | os.PathLike) -> SpecFile:
    """Read and parse the `.lip` file at `path`."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as handle:
            source = handle.read()
    except FileNotFoundError:
        raise SpecError(f"spec file not found: {path}", hint="check the path") from None
    except IsADirectoryError:
        raise SpecError(f"spec path is a directory, not a file: {path}", hint="name a .lip file") from None
    except UnicodeDecodeError as error:
        raise _encoding_error(path, error) from None
    except OSError as error:
        raise SpecError(f"cannot read spec file {path}: {error.strerror}", hint="check the file's permissions") from None
    return parse_source(source, path)


def _encoding_error(path: str, error: UnicodeDecodeError) -> SpecError:
    """Locate the first byte that is not UTF-8, by line and column of the text before it."""
    before = error.object[: error.start].decode("utf-8", errors="replace")
    line = before.count("\n") + 1
    column = len(before) - (before.rfind("\n") + 1) + 1
    return SpecError(
        f"the file is not valid UTF-8: byte 0x{error.object[error.start]:02x} cannot be decoded",
        location=Location(path, line, column),
        hint="save the file as UTF-8 text",
    )


def parse_source(source: str, path: str = "<string>") -> SpecFile:
    """Parse `.lip` source text; `path` is only used in error messages."""
    # Every statement ends with a newline, so a file may not end in the middle of one.
    text = source if source.endswith("\n") else source + "\n"
    tree = _parse_reporting_each_line(text, source, path)
    _check_nesting(tree, source, path)
    try:
        return _SyntaxTreeBuilder(path, source).build(tree)
    except lark.exceptions.VisitError as error:
        # Lark wraps what a transformer method raises; a SpecError is the user's mistake.
        if isinstance(error.orig_exc, SpecError):
            raise error.orig_exc from None
        raise


def _parse_reporting_each_line(text: str, source: str, path: str) -> lark.Tree:
    """Parse `text`; on syntax errors, raise them all, up to MAX_SYNTAX_ERRORS, in one SpecErrors.

    After an error inside a line, that line is blanked out and the text parsed again, so that a
    later line's own error is reported too. Lines are independent except for braces. So the
    search stops at an error in a line with a brace, in a block's header, at the start of a
    line (which a missing brace above can cause) or at the end of the file. Blanking such a
    line could produce follow-on errors.
    """
    errors: list[SpecError] = []
    while True:
        try:
            tree = _parser().parse(text)
        except lark.exceptions.UnexpectedInput as error:
            errors.append(_syntax_error(error, source, path))
            line = _recoverable_line(error, text)
            if line is None or len(errors) >= MAX_SYNTAX_ERRORS:
                break
            # Spaces keep every later character at its offset, which error positions count in.
            lines = text.split("\n")
            lines[line - 1] = " " * len(lines[line - 1])
            text = "\n".join(lines)
            continue
        if not errors:
            return tree
        break
    raise (errors[0] if len(errors) == 1 else SpecErrors(errors))


def _recoverable_line(error: lark.exceptions.UnexpectedInput, text: str) -> int | None:
    """Return the line of `error` if blanking it cannot cause a follow-on error, else None."""
    if isinstance(error, lark.exceptions.UnexpectedToken) and error.token.type == "$END":
        return None
    # Where only '{' may follow, the line opens a block, and blanking it would move its body.
    if isinstance(error, lark.exceptions.UnexpectedToken) and "LBRACE" in error.expected and "_NL" not in error.expected:
        return None
    if not isinstance(error, (lark.exceptions.UnexpectedToken, lark.exceptions.UnexpectedCharacters)):
        return None
    line_text = text.split("\n")[error.line - 1]
    code = _STRING_OR_COMMENT.sub("", line_text)
    first_column = len(line_text) - len(line_text.lstrip(" \t")) + 1
    if "{" in code or "}" in code or error.column <= first_column:
        return None
    return error.line


def _check_nesting(tree: lark.Tree, source: str, path: str) -> None:
    """Reject a syntax tree deeper than MAX_NESTING_DEPTH, walking it without recursion."""
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_NESTING_DEPTH:
            line, column = node.meta.line, node.meta.column
            raise SpecError(
                f"brackets, blocks or arithmetic are nested more than {MAX_NESTING_DEPTH} levels deep here",
                location=Location(path, line, column),
                source_line=source.split("\n")[line - 1],
                hint="split the expression with 'let' or flatten the nesting",
            )
        stack.extend((child, depth + 1) for child in node.children if isinstance(child, lark.Tree) and not child.meta.empty)


# The terminals that can start a value, which messages call "a value" as a whole.
_VALUE_STARTS = frozenset({"LPAR", "LSQB", "FUNCTION", "NAME", "NUMBER", "STRING"})

# The order in which expected terminals are listed: words before punctuation. The entries
# that start with "@" stand for groups of terminals that _describe names as one thing.
_TERMINAL_ORDER = (
    "@VALUE", "@LAYER", "@SETTING", "NETWORK", "LOSS", "LET", "BLOCK", "@SECTION", "REPEAT",
    "NAME", "FUNCTION", "NUMBER", "STRING", "EQUAL", "LPAR", "RPAR", "LSQB", "RSQB", "LBRACE",
    "RBRACE", "COMMA", "PLUS", "MINUS", "STAR", "SLASH", "_NL", "$END",
)
_GROUP_WORDS = {
    "@VALUE": "a value",
    "@LAYER": "a layer",
    "@SETTING": "a setting",
    "@SECTION": "a settings section such as 'train'",
}


def _describe(terminals) -> str:
    """List the expected terminals in words, naming what a name stands for at this point."""
    expected = set(terminals)
    if _VALUE_STARTS <= expected:
        # A minus sign starts a value, unless it may also subtract here, as '+' does.
        sign = {"MINUS"} if "PLUS" not in expected else set()
        expected = (expected - _VALUE_STARTS - sign) | {"@VALUE"}
    if "NETWORK" in expected:
        # At the top of the file a name starts a settings section, and blank lines are allowed.
        expected = (expected - {"NAME", "_NL"}) | {"@SECTION"}
    elif {"REPEAT", "NAME"} <= expected:
        # A statement of a network, a block or a residual body.
        expected = (expected - {"NAME"}) | {"@LAYER"}
    elif expected == {"NAME", "RBRACE"}:
        # Only the body of a settings section expects exactly these.
        expected = {"@SETTING", "RBRACE"}
    if {"FUNCTION", "NAME"} <= expected:
        expected.discard("FUNCTION")

    ordered = sorted(expected, key=lambda name: _TERMINAL_ORDER.index(name) if name in _TERMINAL_ORDER else len(_TERMINAL_ORDER))
    words = [_GROUP_WORDS.get(name) or TERMINAL_WORDS.get(name, name.lower()) for name in ordered]
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " or " + words[-1]


def _end_of_source(source: str) -> tuple[int, int]:
    lines = source.split("\n")
    return len(lines), len(lines[-1]) + 1


def _syntax_error(error: lark.exceptions.UnexpectedInput, source: str, path: str) -> SpecError:
    lines = source.split("\n")

    if isinstance(error, lark.exceptions.UnexpectedCharacters):
        line, column = error.line, error.column
        character = source[error.pos_in_stream] if error.pos_in_stream < len(source) else ""
        if character == '"':
            message = "unterminated string"
            hint = "close the string with '\"' on the same line: a string cannot span lines"
        else:
            message = f"unexpected character {character!r}"
            hint = "names start with a letter or '_', numbers are written like 64, 0.5 or 1e-5, strings use double quotes"
    elif isinstance(error, lark.exceptions.UnexpectedToken) and error.token.type != "$END":
        token = error.token
        line, column = token.line, token.column
        found = _FOUND_WORDS.get(token.type, "").format(repr(str(token))) or repr(str(token))
        message = f"unexpected {found}; expected {_describe(error.expected)}"
        hint = _hint_for(token.type, set(error.expected))
    else:
        line, column = _end_of_source(source)
        expected = getattr(error, "expected", ())
        message = f"unexpected end of file; expected {_describe(expected)}"
        hint = "close every block with '}' on its own line" if "RBRACE" in expected else "the file ends too early"

    source_line = lines[line - 1] if 0 < line <= len(lines) else ""

    # A misspelt keyword, as in `nework n {`, first shows up as an unexpected token after it.
    first_word = _FIRST_WORD.match(source_line)
    if first_word and first_word.end(1) < column:
        suggestion = did_you_mean(first_word.group(1), KEYWORDS)
        if suggestion and first_word.group(1) not in KEYWORDS:
            column = first_word.start(1) + 1
            message = f"unknown keyword '{first_word.group(1)}'"
            hint = suggestion
    return SpecError(message, location=Location(path, line, column), source_line=source_line, hint=hint)


def _hint_for(found: str, expected: set[str]) -> str:
    if found in _KEYWORDS - {"REPEAT"} and "RBRACE" in expected:
        return "close the block above with '}' on its own line before this section"
    if found == "RBRACE" and "NETWORK" in expected:
        return "this '}' closes no block: remove it"
    if found in {"NAME", "FUNCTION", "NUMBER", "STRING", "LBRACE", "LPAR", "LSQB", "MINUS"} and "NETWORK" in expected:
        return "a file holds 'network NAME { ... }', 'loss NAME ...', 'let NAME = VALUE', 'block NAME(...) { ... }' and settings sections such as 'train { ... }'"
    if found == "_NL" and "LBRACE" in expected:
        return "open the block on the same line, as in 'network NAME {'"
    if (found == "_NL" and "EQUAL" in expected) or expected == {"EQUAL"}:
        return "settings are written 'name = value', one per line"
    if found == "_NL" and expected & {"RPAR", "RSQB"}:
        return "close each '(' and '[' on the line where it opens"
    if found == "EQUAL" and expected <= _VALUE_STARTS | {"MINUS"}:
        return "write one '=' between the name and the value, as in epochs = 10"
    if found == "_NL" and _VALUE_STARTS <= expected:
        return "the line ends where a value is needed, as in 'epochs = 10' or 'width=64'"
    if found == "LBRACE" and "NAME" in expected:
        return "a network needs a name, as in 'network digits_mlp {'"
    if found == "LPAR" and expected <= {"NAME", "FUNCTION"}:
        return "a block needs a name, as in 'block stage(channels) {'"
    if found == "MINUS" and "_NL" in expected:
        return "a positional argument cannot start with '-': write it in parentheses, as in (-1)"
    if found in {"RPAR", "RSQB"} and not expected & {"RPAR", "RSQB"}:
        return f"this {TERMINAL_WORDS[found]} closes no {TERMINAL_WORDS['LPAR' if found == 'RPAR' else 'LSQB']}: remove it"
    if found in {"PLUS", "STAR", "SLASH", "RPAR", "COMMA"} and expected & {"NUMBER", "NAME"}:
        return "an operator needs a value on each side, as in width * 2"
    if found != "_NL" and {"REPEAT", "NAME"} <= expected:
        return "each line of a network or block starts with a layer, as in 'dense 64', or with 'repeat' or 'let'"
    if found != "_NL" and expected == {"NAME", "RBRACE"}:
        return "each line of a settings section is 'name = value', as in 'epochs = 10'"
    if found in {"NUMBER", "STRING", "LSQB"} and expected == {"NAME", "RPAR"}:
        return "write the arguments of a call as name=value, as in adam(lr=0.01)"
    if "_NL" in expected and found in {"NAME", "NUMBER", "STRING", "RBRACE", "FUNCTION", "LBRACE"}:
        return "put each layer and each setting on its own line, and '}' on a line of its own"
    if found == "EQUAL":
        return "write keyword arguments as name=value after the layer name"
    return "see the example networks in specs/ for the syntax"


def _shorten(text: str, length: int = 20) -> str:
    return text if len(text) <= length else text[:length] + "..."


class _SyntaxTreeBuilder(Transformer):
    """Turn Lark's parse tree into `lipc.lang.syntax` dataclasses."""

    def __init__(self, path: str, source: str) -> None:
        super().__init__()
        self.path = path
        self.source = source

    def build(self, tree) -> SpecFile:
        items = self.transform(tree).children
        return SpecFile(path=self.path, source=self.source, items=tuple(items))

    def _at(self, token: Token) -> Location:
        return Location(self.path, token.line, token.column)

    @staticmethod
    def _content(children):
        return [c for c in children if not (isinstance(c, Token) and c.type in _PUNCTUATION)]

    # Values ---------------------------------------------------------------------------

    def number(self, children):
        (token,) = children
        text = str(token)
        # A literal past the float range would become inf, and int() rejects more than 4300
        # digits by default. So a number above float's maximum (about 1.8e308) is rejected first.
        if not math.isfinite(float(text)):
            raise SpecError(
                f"the number {_shorten(text)} is too large",
                location=self._at(token),
                source_line=self.source.split("\n")[token.line - 1],
                hint="numbers must lie within about ±1.8e308",
            )
        value = int(text) if _INTEGER.fullmatch(text) else float(text)
        return Number(value, self._at(token), text)

    def string(self, children):
        (token,) = children
        return String(str(token)[1:-1], self._at(token))

    def name(self, children):
        (token,) = children
        return Name(str(token), self._at(token))

    def parenthesized(self, children):
        (value,) = self._content(children)
        return value

    def list(self, children):
        bracket = children[0]
        items = tuple(c for c in self._content(children) if c is not None)
        return ListValue(items, self._at(bracket))

    def call(self, children):
        function, *rest = self._content(children)
        arguments = tuple(a for a in rest if a is not None)
        return Call(str(function), arguments, self._at(function))

    def _binary(self, operator: str, children):
        left, right = self._content(children)
        return BinaryOperation(operator, left, right, left.location)

    def add(self, children):
        return self._binary("+", children)

    def subtract(self, children):
        return self._binary("-", children)

    def multiply(self, children):
        return self._binary("*", children)

    def divide(self, children):
        return self._binary("/", children)

    def negate(self, children):
        sign = children[0]
        (operand,) = self._content(children)
        return Negation(operand, self._at(sign))

    def keyword_argument(self, children):
        name, value = self._content(children)
        return Argument(str(name), value, self._at(name))

    def _arguments(self, items):
        return tuple(item if isinstance(item, Argument) else Argument(None, item, item.location) for item in items)

    # Statements and sections ----------------------------------------------------------

    def layer(self, children):
        has_body = any(isinstance(c, Token) and c.type == "LBRACE" for c in children)
        kind, *rest = self._content(children)
        arguments = [item for item in rest if not isinstance(item, (LayerDecl, LetDecl, RepeatDecl))]
        body = tuple(item for item in rest if isinstance(item, (LayerDecl, LetDecl, RepeatDecl))) if has_body else None
        return LayerDecl(str(kind), self._arguments(arguments), self._at(kind), body)

    def repeat(self, children):
        keyword = children[0]
        count, *body = self._content(children)
        return RepeatDecl(count, tuple(body), self._at(keyword))

    def let(self, children):
        keyword = children[0]
        name, value = self._content(children)
        return LetDecl(str(name), value, self._at(keyword))

    def parameter(self, children):
        name, *default = self._content(children)
        return Parameter(str(name), default[0] if default else None, self._at(name))

    def block(self, children):
        keyword = children[0]
        name, *rest = self._content(children)
        parameters = tuple(item for item in rest if isinstance(item, Parameter))
        body = tuple(item for item in rest if not isinstance(item, Parameter) and item is not None)
        return BlockDecl(str(name), parameters, body, self._at(keyword))

    def network(self, children):
        keyword = children[0]
        name, *statements = self._content(children)
        return NetworkDecl(str(name), tuple(statements), self._at(keyword))

    def loss(self, children):
        keyword = children[0]
        kind, *arguments = self._content(children)
        return LossDecl(str(kind), self._arguments(arguments), self._at(keyword))

    def setting(self, children):
        name, value = self._content(children)
        return Setting(str(name), value, self._at(name))

    def section(self, children):
        name, *settings = self._content(children)
        return SectionDecl(str(name), tuple(settings), self._at(name))
