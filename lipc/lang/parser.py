"""Parse `.lip` source text with Lark's LALR parser into `lipc.lang.syntax` trees."""

from __future__ import annotations

import functools
import os
import re
from importlib import resources
from pathlib import Path

import lark
from lark import Lark, Token, Transformer

from lipc.errors import Location, SpecError
from lipc.lang.syntax import (
    Argument,
    Call,
    LayerDecl,
    ListValue,
    LossDecl,
    Name,
    NetworkDecl,
    Number,
    Setting,
    SpecFile,
    String,
    TrainDecl,
)

# Words that describe each terminal of the grammar to users in error messages.
TERMINAL_WORDS = {
    "NETWORK": "'network'",
    "LOSS": "'loss'",
    "TRAIN": "'train'",
    "LBRACE": "'{'",
    "RBRACE": "'}'",
    "LPAR": "'('",
    "RPAR": "')'",
    "LSQB": "'['",
    "RSQB": "']'",
    "COMMA": "','",
    "EQUAL": "'='",
    "NAME": "a name",
    "NUMBER": "a number",
    "STRING": "a quoted string",
    "_NL": "the end of the line",
    "$END": "the end of the file",
}

# Descriptions of an unexpected token, as in "unexpected name 'x'".
_FOUND_WORDS = {"NAME": "name {}", "NUMBER": "number {}", "STRING": "string {}", "_NL": "end of line"}

_INTEGER = re.compile(r"[+-]?\d+")
_PUNCTUATION = {"LBRACE", "RBRACE", "LPAR", "RPAR", "LSQB", "RSQB", "COMMA", "EQUAL", "NETWORK", "LOSS", "TRAIN"}


def _grammar_text() -> str:
    """Read the grammar from the installed package, or from grammar/ in a source checkout."""
    try:
        return resources.files("lipc.grammar").joinpath("lipc.lark").read_text(encoding="utf-8")
    except ModuleNotFoundError:
        return (Path(__file__).resolve().parents[2] / "grammar" / "lipc.lark").read_text(encoding="utf-8")


@functools.lru_cache(maxsize=1)
def _parser() -> Lark:
    grammar = _grammar_text()
    return Lark(grammar, parser="lalr", lexer="basic", propagate_positions=True)


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
        raise SpecError(
            f"spec file is not valid UTF-8: {path} (byte {error.start})",
            hint="save the file as UTF-8 text",
        ) from None
    except OSError as error:
        raise SpecError(f"cannot read spec file {path}: {error.strerror}", hint="check the file's permissions") from None
    return parse_source(source, path)


def parse_source(source: str, path: str = "<string>") -> SpecFile:
    """Parse `.lip` source text; `path` is only used in error messages."""
    try:
        tree = _parser().parse(source)
    except lark.exceptions.UnexpectedInput as error:
        raise _syntax_error(error, source, path) from None
    return _SyntaxTreeBuilder(path, source).build(tree)


def _describe(terminals) -> str:
    words = sorted({TERMINAL_WORDS.get(name, name.lower()) for name in terminals})
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
    return SpecError(message, location=Location(path, line, column), source_line=source_line, hint=hint)


def _hint_for(found: str, expected: set[str]) -> str:
    if found in {"NETWORK", "LOSS", "TRAIN"} and "RBRACE" in expected:
        return "close the block above with '}' on its own line before this section"
    if found == "_NL" and "LBRACE" in expected:
        return "open the block on the same line, as in 'network NAME {'"
    if found == "_NL" and "EQUAL" in expected:
        return "train settings are written 'name = value', one per line"
    if found == "LBRACE" and "NAME" in expected:
        return "a network needs a name, as in 'network digits_mlp {'"
    if "_NL" in expected and found in {"NAME", "NUMBER", "STRING", "RBRACE"}:
        return "put each layer and each setting on its own line, and '}' on a line of its own"
    if found == "NAME" and expected & {"NETWORK", "LOSS", "TRAIN"}:
        return "a file holds 'network NAME { ... }', 'loss NAME ...' and 'train { ... }' sections"
    if found == "EQUAL":
        return "write keyword arguments as name=value after the layer name"
    return "see the example networks in specs/ for the syntax"


class _SyntaxTreeBuilder(Transformer):
    """Turn Lark's parse tree into `lipc.lang.syntax` dataclasses."""

    def __init__(self, path: str, source: str) -> None:
        super().__init__()
        self.path = path
        self.source = source

    def build(self, tree) -> SpecFile:
        sections = self.transform(tree).children
        return SpecFile(
            path=self.path,
            source=self.source,
            networks=tuple(s for s in sections if isinstance(s, NetworkDecl)),
            losses=tuple(s for s in sections if isinstance(s, LossDecl)),
            trains=tuple(s for s in sections if isinstance(s, TrainDecl)),
        )

    def _at(self, token: Token) -> Location:
        return Location(self.path, token.line, token.column)

    @staticmethod
    def _content(children):
        return [c for c in children if not (isinstance(c, Token) and c.type in _PUNCTUATION)]

    def number(self, children):
        (token,) = children
        text = str(token)
        value = int(text) if _INTEGER.fullmatch(text) else float(text)
        return Number(value, self._at(token))

    def string(self, children):
        (token,) = children
        return String(str(token)[1:-1], self._at(token))

    def name(self, children):
        (token,) = children
        return Name(str(token), self._at(token))

    def list(self, children):
        bracket = children[0]
        items = tuple(c for c in self._content(children) if c is not None)
        return ListValue(items, self._at(bracket))

    def call(self, children):
        function, *rest = self._content(children)
        arguments = tuple(a for a in rest if a is not None)
        return Call(str(function), arguments, self._at(function))

    def keyword_argument(self, children):
        name, value = self._content(children)
        return Argument(str(name), value, self._at(name))

    def _arguments(self, items):
        return tuple(item if isinstance(item, Argument) else Argument(None, item, item.location) for item in items)

    def layer(self, children):
        has_body = any(isinstance(c, Token) and c.type == "LBRACE" for c in children)
        kind, *rest = self._content(children)
        arguments = [item for item in rest if not isinstance(item, LayerDecl)]
        body = tuple(item for item in rest if isinstance(item, LayerDecl)) if has_body else None
        return LayerDecl(str(kind), self._arguments(arguments), self._at(kind), body)

    def network(self, children):
        keyword = children[0]
        name, *layers = self._content(children)
        return NetworkDecl(str(name), tuple(layers), self._at(keyword))

    def loss(self, children):
        keyword = children[0]
        kind, *arguments = self._content(children)
        return LossDecl(str(kind), self._arguments(arguments), self._at(keyword))

    def setting(self, children):
        name, value = self._content(children)
        return Setting(str(name), value, self._at(name))

    def train(self, children):
        keyword = children[0]
        return TrainDecl(tuple(self._content(children)), self._at(keyword))
