"""Parsing: valid specs become syntax trees; malformed ones fail at the exact position."""

from __future__ import annotations

from pathlib import Path

import pytest

from lipc.errors import SpecError
from lipc.lang import parse_file, parse_source
from lipc.lang.expand import expand_spec
from lipc.lang.syntax import Call, ListValue, Name, Number

from conftest import SPECS


def test_example_specs_parse():
    for path in SPECS.glob("*.lip"):
        spec = parse_file(path)
        assert spec.networks, path


def test_digits_spec_tree(digits_spec):
    spec = parse_file(digits_spec)
    (network,) = spec.networks
    assert network.name == "digits_mlp"
    assert [layer.kind for layer in network.layers] == ["input", "dense", "groupsort", "dense"]

    input_layer = network.layers[0]
    assert input_layer.location.line == 3
    assert input_layer.location.column == 5
    shape = input_layer.arguments[0]
    assert shape.name == "shape"
    assert isinstance(shape.value, ListValue)
    assert [item.value for item in shape.value.items] == [64]

    assert [section.name for section in spec.sections] == ["data", "train", "privacy"]
    train = {s.name: s.value for s in spec.sections_named("train")[0].settings}
    assert isinstance(train["optimizer"], Call)
    assert train["optimizer"].function == "adam"
    data = {s.name: s.value for s in spec.sections_named("data")[0].settings}
    assert isinstance(data["source"], Name)
    privacy = {s.name: s.value for s in spec.sections_named("privacy")[0].settings}
    assert isinstance(privacy["delta"], Number)
    assert privacy["delta"].value == pytest.approx(1e-5)


def test_comments_and_blank_lines_ignored():
    source = "# header\n\nnetwork n {  # trailing\n\n    # inside\n    input shape=[4] clip_norm=1\n    dense 2\n}\n# end"
    spec = parse_source(source)
    assert [layer.kind for layer in spec.networks[0].layers] == ["input", "dense"]


def test_file_without_final_newline():
    spec = parse_source("loss cross_entropy temperature=0.5")
    assert spec.losses[0].kind == "cross_entropy"


def test_integers_and_floats_distinguished():
    spec = expand_spec(parse_source("network n {\n    dense 64 bias_norm=1e-2 x=-3 y=.5\n}\n")).spec
    values = [argument.value.value for argument in spec.networks[0].layers[0].arguments]
    assert values == [64, 0.01, -3, 0.5]
    assert isinstance(values[0], int)


# (source, line, column, fragment of the message)
MALFORMED = [
    ("network {\n}\n", 1, 9, "unexpected '{'; expected a name"),
    ("network n {\n    dense 64 )\n}\n", 2, 14, "unexpected ')'"),
    ("network n {\n    dense 64\n", 3, 1, "unexpected end of file"),
    ("network n {\n    dense 64 $\n}\n", 2, 14, "unexpected character '$'"),
    ("network n {\n    dense 64 width=\n}\n", 2, 20, "unexpected end of line; expected"),
    ("network n { dense 64 }\n", 1, 13, "expected the end of the line"),
    ("loss cross_entropy temperature=0.2\ntrain {\n    epochs 3\n}\n", 3, 12, "expected '='"),
    ("nework n {\n}\n", 1, 1, "unknown keyword 'nework'"),
    ('train {\n    data = "digits\n}\n', 2, 12, "unterminated string"),
]


@pytest.mark.parametrize("source, line, column, fragment", MALFORMED)
def test_malformed_spec_position(source, line, column, fragment):
    with pytest.raises(SpecError) as caught:
        parse_source(source, "bad.lip")
    error = caught.value
    assert error.location.path == "bad.lip"
    assert (error.location.line, error.location.column) == (line, column)
    assert fragment in error.message
    assert error.hint


def test_error_format_has_caret_and_hint():
    with pytest.raises(SpecError) as caught:
        parse_source("network n {\n    dense 64 )\n}\n", "bad.lip")
    lines = caught.value.format().splitlines()
    assert lines[0].startswith("bad.lip:2:14: error: unexpected ')'")
    assert lines[1] == "        dense 64 )"
    assert lines[2] == "    " + " " * 13 + "^"
    assert lines[3].startswith("hint: ")


def test_internal_terminal_names_never_shown():
    for source, *_ in MALFORMED:
        with pytest.raises(SpecError) as caught:
            parse_source(source)
        text = caught.value.format()
        for internal in ("_NL", "$END", "LBRACE", "RSQB", "NAME", "NUMBER"):
            assert internal not in text, text


def test_missing_file():
    with pytest.raises(SpecError) as caught:
        parse_file("/nonexistent/net.lip")
    assert "spec file not found: /nonexistent/net.lip" in caught.value.format()


def test_grammar_read_from_source_tree(monkeypatch):
    """Run from a source checkout, where `lipc.grammar` is not a package, the grammar comes from grammar/."""
    from importlib import resources

    from lipc.lang import parser

    if not (Path(parser.__file__).resolve().parents[2] / "grammar" / "lipc.lark").is_file():
        pytest.skip("lipc is installed from a wheel, not imported from a source checkout")

    def missing(name):
        raise ModuleNotFoundError(name)

    monkeypatch.setattr(resources, "files", missing)
    assert "network" in parser._grammar_text()


def test_section_inside_unclosed_network():
    with pytest.raises(SpecError) as caught:
        parse_source("network n {\n    dense 10\n\nloss cross_entropy\n", "bad.lip")
    assert (caught.value.location.line, caught.value.location.column) == (4, 1)
    assert caught.value.message == "unexpected 'loss'; expected a layer, 'let', 'repeat' or '}'"
    assert caught.value.hint == "close the block above with '}' on its own line before this section"


def test_parser_cache_in_private_folder(tmp_path, monkeypatch):
    from lipc.lang.parser import _parser_cache_path

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = _parser_cache_path("grammar text")
    assert Path(path).parent == tmp_path / "lipc"
    assert (tmp_path / "lipc").stat().st_mode & 0o777 == 0o700


def test_parser_cache_skipped_in_shared_folder(tmp_path, monkeypatch):
    from lipc.lang.parser import _parser_cache_path

    (tmp_path / "lipc").mkdir(mode=0o777)
    (tmp_path / "lipc").chmod(0o777)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert _parser_cache_path("grammar text") is None


def test_corrupt_parser_cache_rebuilt(tmp_path, monkeypatch):
    import os
    import subprocess
    import sys

    from lipc.lang.parser import _grammar_text, _parser_cache_path

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cache = Path(_parser_cache_path(_grammar_text()))
    cache.write_bytes(b"not a parser")

    code = "from lipc.lang import parse_source; print(parse_source('loss hinge').losses[0].kind)"
    result = subprocess.run([sys.executable, "-c", code], env=dict(os.environ), capture_output=True, text=True, timeout=120)
    assert (result.returncode, result.stdout, result.stderr) == (0, "hinge\n", "")
    assert cache.read_bytes() != b"not a parser"
