"""`lipc fmt`: canonical layout, comments, guarantees on real and random files, and the command."""

from __future__ import annotations

import errno
import io
import os
import stat
import sys
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lipc.lang.format as format_module
from conftest import SPECS, run_lipc
from lipc.cli import main
from lipc.errors import SpecError
from lipc.lang import parse_source
from lipc.lang.expand import expand_spec
from lipc.lang.format import FormatError, collect_comments, format_source, strip_locations

SPEC_FILES = sorted(SPECS.glob("*.lip"))


def _formatted(source: str) -> str:
    return format_source(source, "t.lip")


# Layout -----------------------------------------------------------------------------------


def test_layer_spacing():
    source = "network n {\n  conv2d   64  kernel = 3   padding=same\n}\n"
    assert _formatted(source) == "network n {\n    conv2d 64 kernel=3 padding=same\n}\n"


def test_setting_spacing():
    source = "train{\n optimizer=adam( lr = 0.001 ,betas=[ 0.9,0.99 ])\n}\n"
    assert _formatted(source) == "train {\n    optimizer = adam(lr=0.001, betas=[0.9, 0.99])\n}\n"


def test_let_and_loss():
    source = "let   width=64\nloss  hinge   margin = 0.5\n"
    assert _formatted(source) == "let width = 64\n\nloss hinge margin=0.5\n"


def test_block_header():
    source = "block unit( channels ,scale = 1 ){\n dense channels\n}\n"
    assert _formatted(source) == "block unit(channels, scale=1) {\n    dense channels\n}\n"


def test_block_without_parameters():
    source = "block unit() {\n dense 4\n}\n"
    assert _formatted(source) == "block unit {\n    dense 4\n}\n"


def test_nested_indentation():
    source = "network n {\nrepeat 2 {\n\t\tresidual 0.5 {\n dense 4\n}\n}\n}\n"
    expected = "network n {\n    repeat 2 {\n        residual 0.5 {\n            dense 4\n        }\n    }\n}\n"
    assert _formatted(source) == expected


def test_numbers_as_written():
    source = "privacy {\n delta = 1E-5\n epsilon = .5\n noise_multiplier = 2.\n}\n"
    assert _formatted(source) == "privacy {\n    delta = 1E-5\n    epsilon = .5\n    noise_multiplier = 2.\n}\n"


def test_string_with_hash():
    source = 'data {\n source = "a # b.npz"   # real\n}\n'
    assert _formatted(source) == 'data {\n    source = "a # b.npz"  # real\n}\n'


@pytest.mark.parametrize(
    ("written", "canonical"),
    [
        ("(a + b) * c", "(a + b) * c"),
        ("(a * b) + c", "a * b + c"),
        ("a - (b - c)", "a - (b - c)"),
        ("(a - b) - c", "a - b - c"),
        ("a + (b + c)", "a + (b + c)"),
        ("a / (b * c)", "a / (b * c)"),
        ("((a))", "a"),
        ("-(a + b)", "-(a + b)"),
        ("-(a * b)", "-(a * b)"),
        ("(-a) * b", "-a * b"),
        ("- -a", "--a"),
        ("a*-b", "a * -b"),
        ("a - (-b)", "a - -b"),
        ("[(1 + 2) , (3)]", "[1 + 2, 3]"),
    ],
)
def test_expression_parentheses(written, canonical):
    source = f"train {{\n x = {written}\n}}\n"
    assert _formatted(source) == f"train {{\n    x = {canonical}\n}}\n"


@pytest.mark.parametrize(
    ("written", "canonical"),
    [
        ("(-1)", "(-1)"),
        ("(-a) * 2", "(-a) * 2"),
        ("((-a) + 2)", "(-a) + 2"),
        ("(-(a - 1))", "(-(a - 1))"),
        ("(a) - 1", "a - 1"),
        ("2 * (-a)", "2 * -a"),
    ],
)
def test_positional_negation(written, canonical):
    source = f"network n {{\n dense {written} bias_norm=(-1)\n}}\n"
    assert _formatted(source) == f"network n {{\n    dense {canonical} bias_norm=-1\n}}\n"


def test_two_positional_arguments():
    source = "network n {\n maxpool (2) (-1)\n}\n"
    assert _formatted(source) == "network n {\n    maxpool 2 (-1)\n}\n"


# Blank lines and comments ------------------------------------------------------------------


def test_blank_lines_collapsed():
    source = "network n {\n\n\n dense 4\n\n\n\n dense 2\n   \n\n}\n"
    assert _formatted(source) == "network n {\n    dense 4\n\n    dense 2\n}\n"


def test_top_level_separated():
    source = "\n\nnetwork n {\n}\nloss hinge\n\n\n\ntrain {\n}\n\n\n"
    assert _formatted(source) == "network n {\n}\n\nloss hinge\n\ntrain {\n}\n"


def test_consecutive_lets_grouped():
    source = "let a = 1\nlet b = 2\n\n\nlet c = 3\nnetwork n {\n}\n"
    assert _formatted(source) == "let a = 1\nlet b = 2\n\nlet c = 3\n\nnetwork n {\n}\n"


def test_comment_above_statement():
    source = "network n {\n        # wide\n dense 4\n}\n"
    assert _formatted(source) == "network n {\n    # wide\n    dense 4\n}\n"


def test_comment_above_item():
    source = "network n {\n}\n# the loss\nloss hinge\n"
    assert _formatted(source) == "network n {\n}\n\n# the loss\nloss hinge\n"


def test_trailing_comment_spacing():
    source = "network n {   #  head  \n\n dense 4 #four\n dense 2\n}\t# end\n"
    expected = "network n {  #  head\n    dense 4  #four\n    dense 2\n}  # end\n"
    assert _formatted(source) == expected


def test_trailing_comments_aligned():
    source = "network n {\n dense 4 # a\n groupsort 2 # b\n dense 2\n dense 1   # c\n}\n"
    expected = "network n {\n    dense 4      # a\n    groupsort 2  # b\n    dense 2\n    dense 1  # c\n}\n"
    assert _formatted(source) == expected


def test_comment_end_of_block():
    source = "network n {\n dense 4\n\n# last\n\n}\n"
    assert _formatted(source) == "network n {\n    dense 4\n\n    # last\n}\n"


def test_comment_only_block():
    source = "network n {\n\n  # nothing yet\n}\n"
    assert _formatted(source) == "network n {\n    # nothing yet\n}\n"


def test_comment_end_of_file():
    source = "loss hinge\n\n\n# one\n# two"
    assert _formatted(source) == "loss hinge\n\n# one\n# two\n"


def test_comment_only_file():
    assert _formatted("  # just this\n\n") == "# just this\n"


def test_empty_file():
    assert _formatted("\n\n  \n") == ""


def test_crlf_line_endings():
    source = "network n {\r\n  dense 4   # four\r\n}\r\n"
    assert _formatted(source) == "network n {\n    dense 4  # four\n}\n"


def test_syntax_error_located():
    with pytest.raises(SpecError) as caught:
        _formatted("network n {\n    dense 4 {\n}\n")
    assert caught.value.format().splitlines()[0] == "t.lip:4:1: error: unexpected end of file; expected a layer, 'let', 'repeat' or '}'"


def test_self_check_rejects_changed_meaning(monkeypatch):
    monkeypatch.setattr(format_module, "format_value", lambda value, positional=False: "1")
    with pytest.raises(FormatError) as caught:
        _formatted("network n {\n    dense 4\n}\n")
    assert caught.value.format() == (
        "lipc: error: cannot format t.lip: formatting would change its meaning, so it was left unchanged\n"
        "hint: this is a bug in lipc fmt; please report it together with the file"
    )


# Guarantees on real and messy files ----------------------------------------------------------

MESSY_FILES = {
    "spacing": """\


let   width=64 # w
let depth = 2


let ratio=(1.5)
network   n{
  input shape = [ 1 , 28,28 ] clip_norm=1.0
  conv2d   width  kernel = 3 padding=same
	groupsort 2
      dense width - (1 - 1)    # minus
  dense (-1) * 3
}
loss cross_entropy temperature = 0.1
""",
    "comments": """\
# header
   # indented header

network n { # opens
  # first
  input shape=[4] clip_norm=1.0   # input
  dense 4 # four
  # between
  residual alpha=0.5 {  # residual
    # inside
    dense 4
    # end of residual
  } # closes residual


  # end of network
} # closes network
# about the loss
loss hinge # trailing
train {
  # settings
  epochs = 2 # two
  # last setting
}
# end of file
""",
    "blocks": """\
let width = 8 * (2 + 1)
block unit(channels, scale=1) {   # block header


      conv2d   channels  kernel = 3 padding=same # trailing
	groupsort 2

    # before repeat
  repeat (scale + 1) {
  dense ((channels)) * (scale + 1)
  let inner = channels / 2
     dense inner - (1 - 1)    # minus
  # end of repeat
  }


}
block plain {
  abs
}
network n {
  input shape=[1, 28, 28] clip_norm=1.0
  unit width scale = 2
  plain
  flatten
  dense (-(-10))
}
""",
    "settings": """\
network n {
 input shape=[12] clip_norm=2.0
 dense 3
}
loss cross_entropy temperature=0.5
data {
 source = "data # file.npz"
   label_column = "y"
}
train {
 optimizer=adam(lr = 0.001 ,betas=[0.9,0.99])
   epochs= -(2*3) + 10
 certify_radii = [ 0.1 , .5 , 1E0 ]
}
privacy{
 delta=1e-5
}
""",
}

FILES = {path.name: path.read_text(encoding="utf-8") for path in SPEC_FILES} | MESSY_FILES


def _comment_texts(source: str) -> list[str]:
    return [comment.text for comment in collect_comments(source)]


@pytest.mark.parametrize("name", sorted(FILES))
def test_idempotent(name):
    once = _formatted(FILES[name])
    assert _formatted(once) == once


@pytest.mark.parametrize("name", sorted(FILES))
def test_same_syntax_tree(name):
    source = FILES[name]
    formatted = parse_source(_formatted(source))
    assert strip_locations(formatted.items) == strip_locations(parse_source(source).items)


@pytest.mark.parametrize("name", sorted(FILES))
def test_same_expansion(name):
    source = FILES[name]
    expanded = expand_spec(parse_source(_formatted(source))).spec
    assert strip_locations(expanded.items) == strip_locations(expand_spec(parse_source(source)).spec.items)


@pytest.mark.parametrize("name", sorted(FILES))
def test_comments_kept(name):
    source = FILES[name]
    assert _comment_texts(_formatted(source)) == _comment_texts(source)


@pytest.mark.parametrize("name", sorted(FILES))
def test_canonical_text(name):
    formatted = _formatted(FILES[name])
    lines = formatted.split("\n")
    assert formatted.endswith("\n") and not formatted.endswith("\n\n")
    assert all(line == line.rstrip() for line in lines)
    indents = [line[: len(line) - len(line.lstrip())] for line in lines]
    assert all(set(indent) <= {" "} and len(indent) % 4 == 0 for indent in indents)
    assert "\n\n\n" not in formatted


# Random files ------------------------------------------------------------------------------

_NAMES = ("width", "depth", "scale")
_SPACE = st.sampled_from([" ", "  ", "\t", " \t "])
_OPTIONAL_SPACE = st.sampled_from(["", " ", "  "])
_COMMENT = st.text(alphabet='abc #"{}()=-\t', max_size=12).map(lambda text: "#" + text)


@st.composite
def _expressions(draw, depth=0):
    """Expression text in which every negation and, at random, other subexpressions are in parentheses."""
    kind = draw(st.sampled_from(["number", "name", "string", "list", "call", "binary", "negation"] if depth < 3 else ["number", "name"]))
    if kind == "number":
        return draw(st.sampled_from(["1", "2", "64", "0.5", "1e-5", ".25", "3.", "2E3"]))
    if kind == "name":
        return draw(st.sampled_from(_NAMES))
    if kind == "string":
        return draw(st.sampled_from(['"x"', '"a # b"', '""']))
    space = draw(_OPTIONAL_SPACE)
    if kind == "list":
        items = draw(st.lists(_expressions(depth + 1), min_size=1, max_size=3))
        return "[" + space + ("," + space).join(items) + "]"
    if kind == "call":
        items = draw(st.lists(_expressions(depth + 1), min_size=0, max_size=2))
        return "adam(" + ", ".join(f"k{index}{space}={space}{item}" for index, item in enumerate(items)) + ")"
    if kind == "negation":
        return f"(-{space}{draw(_expressions(depth + 1))})"
    left, right = draw(_expressions(depth + 1)), draw(_expressions(depth + 1))
    text = f"{left}{space}{draw(st.sampled_from('+-*/'))}{draw(_OPTIONAL_SPACE)}{right}"
    return f"({text})" if draw(st.booleans()) else text


@st.composite
def _statements(draw, depth):
    """Lines of a block body, with random indentation, blank lines and comments."""
    lines = []
    for _ in range(draw(st.integers(0, 4))):
        indent = draw(st.sampled_from(["", "  ", "\t", "      "]))
        lines.extend(draw(st.sampled_from(["", "   ", "\t"])) for _ in range(draw(st.integers(0, 2))))
        if draw(st.booleans()):
            lines.append(indent + draw(_COMMENT))
        kind = draw(st.sampled_from(["layer", "let", "repeat", "residual"] if depth < 2 else ["layer", "let"]))
        trailing = draw(st.one_of(st.just(""), _COMMENT.map(lambda comment: " " + comment)))
        if kind == "layer":
            arguments = draw(st.lists(_expressions(), max_size=2))
            keywords = [f"k{index}{draw(_OPTIONAL_SPACE)}={draw(_OPTIONAL_SPACE)}{value}" for index, value in enumerate(draw(st.lists(_expressions(), max_size=2)))]
            kind_name = draw(st.sampled_from(["dense", "conv2d", "unit"]))
            lines.append(indent + kind_name + "".join(draw(_SPACE) + part for part in arguments + keywords) + trailing)
        elif kind == "let":
            lines.append(f"{indent}let{draw(_SPACE)}{draw(st.sampled_from(_NAMES))}{draw(_OPTIONAL_SPACE)}={draw(_OPTIONAL_SPACE)}{draw(_expressions())}{trailing}")
        else:
            head = f"repeat {draw(_expressions())}" if kind == "repeat" else "residual alpha=0.5"
            lines.append(f"{indent}{head}{draw(_OPTIONAL_SPACE)}{{{trailing}")
            lines.extend(draw(_statements(depth + 1)))
            lines.append(indent + "}" + draw(st.one_of(st.just(""), _COMMENT.map(lambda comment: " " + comment))))
    return lines


@st.composite
def _spec_sources(draw):
    items = []
    for _ in range(draw(st.integers(1, 4))):
        blank_lines = "\n" * draw(st.integers(0, 2))
        comments = "".join(draw(_COMMENT) + "\n" for _ in range(draw(st.integers(0, 2))))
        kind = draw(st.sampled_from(["network", "block", "let", "loss", "train"]))
        if kind == "network":
            lines = ["network n {", *draw(_statements(0)), "}"]
        elif kind == "block":
            lines = [f"block unit(channels, scale{draw(_OPTIONAL_SPACE)}={draw(_expressions())}) {{", *draw(_statements(0)), "}"]
        elif kind == "let":
            lines = [f"let {draw(st.sampled_from(_NAMES))} = {draw(_expressions())}"]
        elif kind == "loss":
            lines = [f"loss hinge margin={draw(_expressions())}"]
        else:
            lines = ["train {", *(f"  epochs{draw(_OPTIONAL_SPACE)}={draw(_expressions())}" for _ in range(draw(st.integers(0, 2)))), "}"]
        items.append(blank_lines + comments + "\n".join(lines))
    return "\n".join(items) + draw(st.sampled_from(["", "\n", "\n\n# end\n"]))


@settings(max_examples=150, deadline=None)
@given(_spec_sources())
def test_random_files(source):
    formatted = _formatted(source)
    assert _formatted(formatted) == formatted
    assert strip_locations(parse_source(formatted).items) == strip_locations(parse_source(source).items)
    assert _comment_texts(formatted) == _comment_texts(source)


# The command -------------------------------------------------------------------------------

MESSY = "network n {\n  dense   4 # four\n}\n"
CANONICAL = "network n {\n    dense 4  # four\n}\n"
BROKEN = "network n {\n    dense 4 {\n}\n"


@pytest.fixture
def messy_file(tmp_path):
    path = tmp_path / "net.lip"
    path.write_text(MESSY, encoding="utf-8")
    path.chmod(0o640)
    return path


def test_fmt_rewrites_file(messy_file, capsys):
    assert main(["fmt", str(messy_file)]) == 0
    assert messy_file.read_text(encoding="utf-8") == CANONICAL
    assert capsys.readouterr().err == f"reformatted {messy_file}\n"


def test_fmt_keeps_permissions(messy_file):
    main(["fmt", str(messy_file)])
    assert stat.S_IMODE(messy_file.stat().st_mode) == 0o640


def test_fmt_leaves_no_temporary_file(messy_file):
    main(["fmt", str(messy_file)])
    assert os.listdir(messy_file.parent) == ["net.lip"]


def test_fmt_unchanged_file_silent(tmp_path, capsys):
    path = tmp_path / "net.lip"
    path.write_text(CANONICAL, encoding="utf-8")
    before = path.stat().st_mtime_ns
    assert main(["fmt", str(path)]) == 0
    assert capsys.readouterr() == ("", "")
    assert path.stat().st_mtime_ns == before


def test_fmt_crlf_file_rewritten(tmp_path):
    path = tmp_path / "net.lip"
    path.write_bytes(CANONICAL.replace("\n", "\r\n").encode("utf-8"))
    assert main(["fmt", str(path)]) == 0
    assert path.read_bytes() == CANONICAL.encode("utf-8")


def test_fmt_follows_symlink(messy_file):
    link = messy_file.parent / "link.lip"
    link.symlink_to(messy_file.name)
    main(["fmt", str(link)])
    assert link.is_symlink()
    assert messy_file.read_text(encoding="utf-8") == CANONICAL


def test_write_failure_cleans_up(messy_file, monkeypatch, capsys):
    def disk_full(source, destination):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    assert main(["fmt", str(messy_file)]) == 1
    assert capsys.readouterr().err == (
        f"lipc: error: cannot write {messy_file}: No space left on device\nhint: check the disk space and the folder's permissions\n"
    )
    assert messy_file.read_text(encoding="utf-8") == MESSY
    assert os.listdir(messy_file.parent) == ["net.lip"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write any file")
def test_read_only_file_rejected(messy_file, capsys):
    messy_file.chmod(0o444)
    assert main(["fmt", str(messy_file)]) == 1
    assert capsys.readouterr().err == (
        f"lipc: error: cannot write {messy_file}: permission denied\nhint: make the file writable, or use --check or --diff\n"
    )
    assert messy_file.read_text(encoding="utf-8") == MESSY


def test_check_lists_changes(messy_file, capsys):
    assert main(["fmt", "--check", str(messy_file)]) == 1
    assert capsys.readouterr() == ("", f"would reformat {messy_file}\n")
    assert messy_file.read_text(encoding="utf-8") == MESSY


def test_check_passes_canonical(tmp_path):
    path = tmp_path / "net.lip"
    path.write_text(CANONICAL, encoding="utf-8")
    assert main(["fmt", "--check", str(path)]) == 0


def test_diff_output(messy_file, capsys):
    assert main(["fmt", "--diff", str(messy_file)]) == 0
    expected = (
        f"--- {messy_file}\toriginal\n+++ {messy_file}\tformatted\n@@ -1,3 +1,3 @@\n network n {{\n"
        "-  dense   4 # four\n+    dense 4  # four\n }\n"
    )
    assert capsys.readouterr().out == expected
    assert messy_file.read_text(encoding="utf-8") == MESSY


def test_diff_missing_final_newline(tmp_path, capsys):
    path = tmp_path / "net.lip"
    path.write_text("loss hinge", encoding="utf-8")
    main(["fmt", "--diff", str(path)])
    assert capsys.readouterr().out.splitlines()[-3:] == ["-loss hinge", "\\ No newline at end of file", "+loss hinge"]


def test_stdin_to_stdout(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(MESSY.encode("utf-8"))))
    assert main(["fmt", "-"]) == 0
    assert capsys.readouterr().out == CANONICAL


def test_stdin_error_named(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(BROKEN.encode("utf-8"))))
    assert main(["fmt", "-"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("<stdin>:4:1: error: unexpected end of file")


def test_syntax_error_file_untouched(tmp_path, messy_file, capsys):
    broken = tmp_path / "broken.lip"
    broken.write_text(BROKEN, encoding="utf-8")
    assert main(["fmt", str(broken), str(messy_file)]) == 1
    assert broken.read_text(encoding="utf-8") == BROKEN
    assert messy_file.read_text(encoding="utf-8") == CANONICAL
    assert capsys.readouterr().err == (
        f"{broken}:4:1: error: unexpected end of file; expected a layer, 'let', 'repeat' or '}}'\n"
        "    \n    ^\nhint: close every block with '}' on its own line\n"
        f"reformatted {messy_file}\n"
    )


def test_missing_file(tmp_path, capsys):
    assert main(["fmt", str(tmp_path / "none.lip")]) == 1
    assert capsys.readouterr().err == f"lipc: error: spec file not found: {tmp_path / 'none.lip'}\nhint: check the path\n"


def test_folder_argument(tmp_path, capsys):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.lip").write_text(MESSY, encoding="utf-8")
    (tmp_path / "a.lip").write_text(MESSY, encoding="utf-8")
    (tmp_path / "notes.txt").write_text(MESSY, encoding="utf-8")
    assert main(["fmt", "--check", str(tmp_path)]) == 1
    assert capsys.readouterr().err == f"would reformat {tmp_path / 'a.lip'}\nwould reformat {tmp_path / 'sub' / 'b.lip'}\n"


def test_empty_folder(tmp_path, capsys):
    assert main(["fmt", str(tmp_path)]) == 1
    assert capsys.readouterr().err == f"lipc: error: no .lip files found in folder {tmp_path}\nhint: name .lip files or folders that contain some\n"


def test_specs_canonical(tmp_path):
    result = run_lipc("fmt", "--check", *map(str, SPEC_FILES), cwd=tmp_path)
    assert (result.returncode, result.stderr) == (0, "")


def test_comment_multiset_kept():
    """Every comment of every file comes back exactly once."""
    for source in FILES.values():
        assert Counter(_comment_texts(_formatted(source))) == Counter(_comment_texts(source))
