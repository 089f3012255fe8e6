"""Named values, arithmetic, repeat, blocks and settings sections, expanded into plain layers."""

from __future__ import annotations

import pytest

import lipc
from lipc.check import check_spec
from lipc.errors import SpecError, SpecErrors
from lipc.lang import parse_source
from lipc.lang.expand import MAX_LAYERS, expand_spec

from conftest import SPECS

HEADER = "network n {\n    input shape=[1, 8, 8] clip_norm=1\n"
FOOTER = "    flatten\n    dense 10\n}\nloss cross_entropy\n"


def layers_of(source: str) -> list[str]:
    """The expanded layer lines of the only network, as 'kind arg arg'."""
    spec = expand_spec(parse_source(source)).spec

    def describe(decl, depth=0):
        arguments = " ".join(f"{a.name}={a.value.value}" if a.name else str(a.value.value) for a in decl.arguments)
        lines = ["  " * depth + f"{decl.kind} {arguments}".strip()]
        for inner in decl.body or ():
            lines.extend(describe(inner, depth + 1))
        return lines

    return [line for decl in spec.networks[0].layers for line in describe(decl)]


def error_of(source: str) -> SpecError:
    with pytest.raises(SpecError) as caught:
        check_spec(parse_source(source, "net.lip"))
    return caught.value


# Named values and arithmetic -------------------------------------------------------------


def test_let_and_arithmetic():
    source = "let width = 16\nlet half = width / 2\nnetwork n {\n    input shape=[4] clip_norm=0.5 * 2\n    dense width * 2 + 1\n    dense (half - 1) * 3\n    dense (-half) + 10 * 2\n}\n"
    spec = expand_spec(parse_source(source)).spec
    widths = [decl.arguments[0].value.value for decl in spec.networks[0].layers[1:]]
    assert widths == [33, 21, 12]
    assert spec.networks[0].layers[0].arguments[1].value.value == 1.0


def test_exact_division_stays_whole():
    spec = expand_spec(parse_source("let a = 64 / 2\nlet b = 3 / 2\nnetwork n {\n    dense a\n    dense b\n}\n")).spec
    values = [decl.arguments[0].value.value for decl in spec.networks[0].layers]
    assert values == [32, 1.5]
    assert isinstance(values[0], int)


def test_negative_keyword_argument():
    spec = expand_spec(parse_source("network n {\n    dense 4 x=-3 y=-(2 * 2)\n}\n")).spec
    assert [a.value.value for a in spec.networks[0].layers[0].arguments] == [4, -3, -4]


def test_let_in_settings_and_calls():
    source = HEADER + FOOTER + "let rate = 0.001\nlet epochs = 3\ntrain {\n    epochs = epochs * 2\n    optimizer = adam(lr=rate * 4)\n}\n"
    checked = check_spec(parse_source(source))
    assert checked.train.epochs == 6
    assert checked.train.optimizer.learning_rate == pytest.approx(0.004)


def test_words_stay_words():
    spec = expand_spec(parse_source("network n {\n    conv2d 4 padding=same constraint=bjorck\n}\n")).spec
    assert [a.value.value for a in spec.networks[0].layers[0].arguments[1:]] == ["same", "bjorck"]


def test_let_inside_network_is_local():
    source = "network a {\n    let w = 4\n    dense w\n}\nnetwork b {\n    dense w\n}\n"
    spec = expand_spec(parse_source(source)).spec
    assert spec.networks[0].layers[0].arguments[0].value.value == 4
    assert spec.networks[1].layers[0].arguments[0].value.value == "w"


# Repeat and blocks -----------------------------------------------------------------------


def test_repeat_expands_in_order():
    source = "let n = 2\nnetwork n {\n    repeat n + 1 {\n        dense 8\n        groupsort 2\n    }\n    dense 2\n}\n"
    assert layers_of(source) == ["dense 8", "groupsort 2"] * 3 + ["dense 2"]


def test_block_with_defaults_and_keywords():
    source = (
        "block unit(width, group=2) {\n    dense width\n    groupsort group\n}\n"
        "network n {\n    unit 8\n    unit width=4 group=4\n    unit(width=2)\n}\n"
    )
    # `unit(width=2)` is a layer line whose positional argument is a call: not a block use.
    with pytest.raises(SpecError):
        check_spec(parse_source(source))
    source = source.replace("    unit(width=2)\n", "")
    assert layers_of(source) == ["dense 8", "groupsort 2", "dense 4", "groupsort 4"]


def test_blocks_nest_inside_residual_and_repeat():
    source = (
        "block inner(c) {\n    conv2d c kernel=3 padding=same\n    groupsort 2\n}\n"
        "block unit(c) {\n    residual alpha=0.5 {\n        inner c\n        conv2d c kernel=3 padding=same\n    }\n}\n"
        "network n {\n    repeat 2 {\n        unit 4\n    }\n}\n"
    )
    unit = ["residual alpha=0.5", "  conv2d 4 kernel=3 padding=same", "  groupsort 2", "  conv2d 4 kernel=3 padding=same"]
    assert layers_of(source) == unit * 2


def test_block_default_sees_file_values():
    source = "let width = 12\nblock unit(w=width) {\n    dense w\n}\nnetwork n {\n    unit\n}\n"
    assert layers_of(source) == ["dense 12"]


def test_cifar_example_uses_blocks_and_repeat():
    text = (SPECS / "cifar_resnet.lip").read_text()
    assert "block " in text
    assert "repeat " in text
    compiled = lipc.compile(SPECS / "cifar_resnet.lip")
    kinds = [bound.layer.kind for bound in compiled.checked.layers]
    assert kinds.count("residual") == 2


def test_block_layers_named_like_written_layers():
    blocks = "block unit(w) {\n    dense w\n    groupsort 2\n}\nnetwork n {\n    input shape=[8] clip_norm=1\n    unit 8\n    unit 4\n}\nloss cross_entropy\n"
    plain = "network n {\n    input shape=[8] clip_norm=1\n    dense 8\n    groupsort 2\n    dense 4\n    groupsort 2\n}\nloss cross_entropy\n"
    assert lipc.compile_source(blocks).sensitivities == lipc.compile_source(plain).sensitivities


# Errors in the language ------------------------------------------------------------------

EXPANSION_ERRORS = [
    ("let a = 2\nlet a = 3\nnetwork n {\n    dense a\n}\n", "the name 'a' is defined twice", 2, 1),
    ("network n {\n    dense widht * 2\n}\n", "unknown name 'widht' in arithmetic", 2, 11),
    ("network n {\n    dense 4 / (2 - 2)\n}\n", "division by zero", 2, 16),
    ('network n {\n    dense "a" * 2\n}\n', 'arithmetic needs numbers, not "a"', 2, 11),
    ("network n {\n    repeat 0 {\n        dense 2\n    }\n}\n", "the count of repeat must be a whole number of at least 1, not 0", 2, 12),
    ("network n {\n    repeat 1.5 {\n        dense 2\n    }\n}\n", "the count of repeat must be a whole number of at least 1, not 1.5", 2, 12),
    ("block u(w) {\n    dense w\n}\nnetwork n {\n    u\n}\n", "the block 'u' needs the argument 'w'", 5, 5),
    ("block u(w) {\n    dense w\n}\nnetwork n {\n    u wdith=3\n}\n", "unknown parameter 'wdith' for block 'u'", 5, 7),
    ("block u(w) {\n    dense w\n}\nnetwork n {\n    u 1 2\n}\n", "too many arguments for block 'u'", 5, 9),
    ("block u {\n    u\n}\nnetwork n {\n    u\n}\n", "the block 'u' uses itself (u -> u)", 2, 5),
    ("block dense(w) {\n    groupsort 2\n}\nnetwork n {\n    dense 2\n}\n", "the block 'dense' has the name of a layer", 1, 1),
    ("let true = 1\nnetwork n {\n    dense 2\n}\n", "'true' is a reserved word and cannot be defined", 1, 1),
    ("network n {\n    repeat 100000 {\n        dense 2\n    }\n}\n", f"the count of repeat must be at most {MAX_LAYERS}, not 100000", 2, 12),
]


@pytest.mark.parametrize("source, message, line, column", EXPANSION_ERRORS)
def test_expansion_error(source, message, line, column):
    error = error_of(source)
    assert error.message == message
    assert (error.location.line, error.location.column) == (line, column)


def test_unknown_name_suggests_definition():
    error = error_of("let width = 4\nnetwork n {\n    dense widht * 2\n}\n")
    assert error.hint == "did you mean 'width'?"


def test_bare_misspelt_name_suggests_definition():
    error = error_of("let width = 4\nnetwork n {\n    input shape=[4] clip_norm=1\n    dense widht\n}\nloss cross_entropy\n")
    assert error.message == "dense option 'width' must be a whole number, not widht"
    assert error.hint == "did you mean 'width'?"


def test_error_inside_block_names_the_use():
    source = "block unit(w) {\n    dense w\n}\nnetwork n {\n    input shape=[4] clip_norm=1\n    unit 0\n}\nloss cross_entropy\n"
    error = error_of(source)
    assert (error.location.line, error.location.column) == (2, 11)
    assert error.notes == ["net.lip:6:5: note: in the block used here: unit 0"]
    assert "net.lip:6:5: note: in the block used here: unit 0" in error.format()


def test_unknown_layer_suggests_block():
    error = error_of("block stage(w) {\n    dense w\n}\nnetwork n {\n    input shape=[4] clip_norm=1\n    stag 4\n}\nloss cross_entropy\n")
    assert error.message == "unknown layer 'stag'"
    assert error.hint == "did you mean 'stage'?"


def test_independent_errors_reported_together():
    source = (
        "network n {\n    input shape=[4] clip_norm=1\n    dense 0\n    dnse 3\n}\n"
        "loss cross_entropy\ntrain {\n    epoch = 3\n}\nprivacy {\n    delta = 2\n}\ntrian {\n}\n"
    )
    error = error_of(source)
    assert isinstance(error, SpecErrors)
    assert [(e.location.line, e.message) for e in error.errors] == [
        (3, "dense option 'width' must be at least 1, not 0"),
        (4, "unknown layer 'dnse'"),
        (8, "unknown setting 'epoch' for train"),
        (11, "delta must be less than 1, not 2"),
        (13, "unknown section 'trian'"),
    ]
    assert error.format().endswith("\n5 errors")


# Sections and networks -------------------------------------------------------------------


def test_sections_fill_the_config():
    source = HEADER + FOOTER + (
        "data {\n    source = digits\n    label_column = \"y\"\n}\n"
        "train {\n    epochs = 2\n    device = cpu\n    seed = 7\n}\n"
        "privacy {\n    epsilon = 2\n    delta = 1e-6\n    accountant = pld\n}\n"
    )
    train = check_spec(parse_source(source)).train
    assert (train.data, train.label_column, train.epochs, train.device, train.seed) == ("digits", "y", 2, "cpu", 7)
    assert (train.epsilon, train.delta, train.accountant) == (2, 1e-6, "pld")


def test_repeated_section_rejected():
    error = error_of(HEADER + FOOTER + "train {\n    epochs = 2\n}\ntrain {\n    seed = 1\n}\n")
    assert error.message == "the file has more than one 'train' section"


def test_several_networks_by_name():
    source = "network a {\n    input shape=[8] clip_norm=1\n    dense 2\n}\nnetwork b {\n    input shape=[8] clip_norm=1\n    dense 3\n}\nloss cross_entropy\n"
    assert lipc.compile_source(source, network="b").num_classes == 3
    assert lipc.compile_source(source, network="a").num_classes == 2


def test_warnings_for_relu_and_unused_names():
    source = "let unused = 1\nnetwork n {\n    input shape=[8] clip_norm=1\n    dense 8\n    relu\n    dense 2\n}\nloss cross_entropy\n"
    warnings = check_spec(parse_source(source, "net.lip")).warnings
    assert [(w.location.line, w.message.split(" ")[0]) for w in warnings] == [(1, "the"), (5, "relu")]
    assert warnings[0].format().startswith("net.lip:1:1: warning: the name 'unused' is defined but never used")


def test_dominating_bias_warning():
    source = "network n {\n    input shape=[8] clip_norm=1\n    dense 8 bias_norm=2\n    groupsort 2\n    dense 2\n}\nloss cross_entropy\n"
    (warning,) = check_spec(parse_source(source)).warnings
    assert warning.message == "the bias can add 2 to the output-norm bound, more than the input-norm bound 1 it starts from"
    assert warning.location.line == 3


def test_grammar_has_no_conflicts(caplog):
    import logging

    from lark import Lark, logger as lark_logger

    from lipc.lang.parser import _grammar_text

    lark_logger.setLevel(logging.DEBUG)
    try:
        with caplog.at_level(logging.DEBUG, logger="lark"):
            Lark(_grammar_text(), parser="lalr", lexer="basic")
    finally:
        lark_logger.setLevel(logging.WARNING)
    assert not [record for record in caplog.records if "conflict" in record.getMessage().lower()]


def test_command_line_overrides_sections():
    from lipc.cli import _build_parser, _config_with_overrides

    source = HEADER + FOOTER + "train {\n    epochs = 5\n    seed = 3\n}\nprivacy {\n    epsilon = 2\n    noise = global\n}\n"
    config = check_spec(parse_source(source)).train
    args = _build_parser().parse_args(["train", "net.lip", "--epochs", "1", "--noise", "per_tensor", "--lr", "0.5"])
    overridden = _config_with_overrides(config, args)
    assert (overridden.epochs, overridden.noise, overridden.optimizer.learning_rate) == (1, "per_tensor", 0.5)
    assert (overridden.seed, overridden.epsilon) == (3, 2)


def test_block_default_sees_earlier_parameters():
    source = "block unit(w, inner=w * 2) {\n    dense inner\n    dense w\n}\nnetwork n {\n    unit 3\n    unit 3 inner=1\n}\n"
    assert layers_of(source) == ["dense 6", "dense 3", "dense 1", "dense 3"]


def test_error_in_reused_block_reported_once():
    source = "block unit(w) {\n    dense w\n    group_sort 2\n}\nnetwork n {\n    input shape=[4] clip_norm=1\n    unit 4\n    unit 4\n}\nloss hinge\n"
    error = error_of(source)
    assert [(e.location.line, e.message) for e in getattr(error, "errors", (error,))] == [(3, "unknown layer 'group_sort'")]
    assert error.notes == ["net.lip:7:5: note: in the block used here: unit 4"]
