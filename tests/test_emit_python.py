"""`lipc compile --emit-python`: a Python module that rebuilds the compiled network."""

from __future__ import annotations

import importlib.util
import itertools
import py_compile
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
import torch

import lipc
from lipc.cli import main
from lipc.errors import RunError
from lipc.export.python_source import LINE_LENGTH, class_name, generate_python_source, verify_python_source

from conftest import SPECS, run_lipc

# Every layer kind, in a network with nested residual blocks, biases and both paddings.
ALL_LAYERS_SOURCE = """\
network all_layers {
    input shape=[2, 16] clip_norm=2.0
    conv1d 4 kernel=3 padding=circular bias_norm=0.5
    maxmin
    residual alpha=0.5 {
        conv1d 4 kernel=3 padding=same constraint=bjorck
        abs
        residual alpha=0.25 {
            conv1d 4 kernel=1 padding=valid bias_norm=0.1
            relu
        }
    }
    centering channel
    maxpool 2
    conv1d 4 kernel=3 stride=2 padding=same
    avgpool 2
    l2pool 2
    fullsort
    flatten
    dense 6 bias_norm=0.2 constraint=bjorck
    groupsort 3
    centering layer
    dense 3
}
loss hinge margin=0.5
"""

GLOBAL_POOLING_SOURCE = """\
network global_pooling {
    input shape=[3, 6, 6] clip_norm=1.0
    conv2d 4 kernel=[3, 1] stride=[1, 2] padding=valid
    global_avgpool
    dense 2
}
network global_l2 {
    input shape=[3, 6, 6] clip_norm=1.0
    conv2d 4 kernel=3
    global_l2pool
    dense 2
}
loss cross_entropy
"""

# A small regression or binary network for each loss whose labels are not class indices.
LOSS_NETWORK = """\
network loss_{name} {{
    input shape=[5] clip_norm=1.0
    dense {outputs}
}}
loss {loss}
"""
LOSSES = {
    "cross_entropy": ("cross_entropy temperature=0.5", 3),
    "hinge": ("hinge margin=2", 3),
    "binary_cross_entropy": ("binary_cross_entropy temperature=0.25", 1),
    "hinge_kr": ("hinge_kr alpha=5 margin=0.5", 1),
    "squared_error": ("squared_error target_bound=2", 2),
    "huber": ("huber delta=0.5", 2),
}

SPEC_PATHS = sorted(SPECS.glob("*.lip"))
EXAMPLES = 3


def _compiled_networks() -> list[tuple[str, lipc.CompiledNetwork]]:
    networks = [(path.stem, lipc.compile(path)) for path in SPEC_PATHS]
    networks.append(("all_layers", lipc.compile_source(ALL_LAYERS_SOURCE, "all_layers.lip")))
    for network in ("global_pooling", "global_l2"):
        networks.append((network, lipc.compile_source(GLOBAL_POOLING_SOURCE, "pooling.lip", network)))
    return networks


@dataclass(frozen=True)
class Generated:
    """A compiled network, its generated module, and the module's network with the compiled weights."""

    compiled: lipc.CompiledNetwork
    module: ModuleType
    network: torch.nn.Module
    initial_lipschitz: float


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> dict[str, Generated]:
    """Each network compiled, with its generated module imported from a temporary folder."""
    folder = tmp_path_factory.mktemp("generated")
    networks = {}
    for name, compiled in _compiled_networks():
        module = _import(generate_python_source(compiled), folder / f"{name}.py")
        network = getattr(module, class_name(compiled.name, set()))()
        initial_lipschitz = network.certified_lipschitz()
        network.load_state_dict(compiled.module.state_dict())
        networks[name] = Generated(compiled, module, network, initial_lipschitz)
    return networks


NAMES = [path.stem for path in SPEC_PATHS] + ["all_layers", "global_pooling", "global_l2"]


def _import(source: str, path: Path) -> ModuleType:
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(f"generated_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", NAMES)
def test_parameter_names_and_shapes(generated, name):
    case = generated[name]
    expected = [(key, tuple(value.shape)) for key, value in case.compiled.module.named_parameters()]
    assert [(key, tuple(value.shape)) for key, value in case.network.named_parameters()] == expected


@pytest.mark.parametrize("name", NAMES)
def test_same_outputs_with_loaded_weights(generated, name):
    case = generated[name]
    inputs = 3.0 * torch.randn(EXAMPLES, *case.compiled.input_shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(case.network(inputs), case.compiled.module(inputs))


@pytest.mark.parametrize("name", NAMES)
def test_sensitivities_equal(generated, name):
    case = generated[name]
    assert case.module.SENSITIVITIES == case.compiled.sensitivities


@pytest.mark.parametrize("name", NAMES)
def test_constants_equal(generated, name):
    case = generated[name]
    assert case.module.INPUT_SHAPE == case.compiled.input_shape
    assert case.module.INPUT_CLIP_NORM == case.compiled.input_clip_norm
    assert case.module.LIPSCHITZ_BOUND == case.compiled.checked.lipschitz_bound


@pytest.mark.parametrize("name", NAMES)
def test_bound_methods_equal(generated, name):
    case = generated[name]
    assert case.network.bound_methods() == case.compiled.module.bound_methods()


@pytest.mark.parametrize("name", NAMES)
def test_new_network_is_projected(generated, name):
    case = generated[name]
    assert case.initial_lipschitz <= case.module.LIPSCHITZ_BOUND


@pytest.mark.parametrize("name", NAMES)
def test_source_compiles_and_fits_lines(generated, name):
    path = Path(generated[name].module.__file__)
    py_compile.compile(str(path), doraise=True)
    code_lines = [line for line in path.read_text(encoding="utf-8").splitlines() if not line.startswith(" " * 4 + "lipc compile")]
    assert max(len(line) for line in code_lines) <= LINE_LENGTH


def test_residual_layers_nest(generated):
    network = generated["all_layers"].network
    assert "residual_3.inner.residual_2.inner.conv1d_0.bias" in dict(network.named_parameters())


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_loss_function_equal(loss, tmp_path):
    declaration, outputs = LOSSES[loss]
    compiled = lipc.compile_source(LOSS_NETWORK.format(name=loss, outputs=outputs, loss=declaration), "loss.lip")
    module = _import(generate_python_source(compiled), tmp_path / "loss_network.py")

    generator = torch.Generator().manual_seed(2)
    logits = 4.0 * torch.randn(EXAMPLES, outputs, generator=generator)
    if compiled.checked.label_kind == "class":
        labels = torch.randint(outputs, (EXAMPLES,), generator=generator)
    elif compiled.checked.label_kind == "binary":
        labels = torch.randint(2, (EXAMPLES,), generator=generator).float()
    else:
        labels = 3.0 * torch.randn(EXAMPLES, outputs, generator=generator)

    assert module.LOSS == compiled.checked.loss
    assert torch.equal(module.loss_function(logits, labels), compiled.loss_function(logits, labels))


def test_load_network_reads_saved_weights(generated, tmp_path):
    compiled, module = generated["digits_mlp"].compiled, generated["digits_mlp"].module
    weights = tmp_path / "weights.pt"
    torch.save(compiled.module.state_dict(), weights)
    inputs = torch.randn(EXAMPLES, *compiled.input_shape, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(module.load_network(weights)(inputs), compiled.module(inputs))


def test_generation_keeps_random_state():
    compiled = lipc.compile(SPECS / "digits_mlp.lip")
    state = torch.get_rng_state()
    generate_python_source(compiled)
    assert torch.equal(torch.get_rng_state(), state)


def test_generation_keeps_eval_mode():
    compiled = lipc.compile(SPECS / "digits_mlp.lip")
    compiled.module.eval()
    generate_python_source(compiled)
    assert not compiled.module.training


def test_docstring_names_spec_and_version():
    source = generate_python_source(lipc.compile(SPECS / "digits_mlp.lip"))
    assert source.startswith('"""The Lipschitz network digits_mlp as a PyTorch module.\n')
    assert f"Generated by lipc {lipc.__version__} from {SPECS / 'digits_mlp.lip'}." in source
    assert "project_()` after every update" in source


@pytest.mark.parametrize(
    "network, names_in_use, expected",
    [
        ("digits_mlp", set(), "DigitsMlp"),
        ("mnist1d_cnn", set(), "Mnist1dCnn"),
        ("residual", {"Residual"}, "ResidualNetwork"),
        ("none", set(), "NoneNetwork"),
        ("_private", set(), "Private"),
    ],
)
def test_class_name(network, names_in_use, expected):
    assert class_name(network, names_in_use) == expected


def test_class_name_avoids_imports(tmp_path):
    source = "network residual {\n    input shape=[4] clip_norm=1\n    residual alpha=0.5 {\n        dense 4\n    }\n    dense 2\n}\nloss cross_entropy\n"
    compiled = lipc.compile_source(source, "residual.lip")
    module = _import(generate_python_source(compiled), tmp_path / "residual_network.py")
    assert isinstance(module.ResidualNetwork(), module.LipschitzSequential)


def test_changed_layer_rejected():
    compiled = lipc.compile(SPECS / "digits_mlp.lip")
    source = generate_python_source(compiled).replace("ClipNorm(radius=1.0)", "ClipNorm(radius=2.0)")
    with pytest.raises(RunError) as error:
        verify_python_source(source, compiled, "DigitsMlp")
    assert error.value.message == "the Python source for digits_mlp differs from the compiled network in: layers, outputs"


def test_changed_sensitivity_rejected():
    compiled = lipc.compile(SPECS / "digits_mlp.lip")
    value = compiled.sensitivities["dense_3.weight"]
    source = generate_python_source(compiled).replace(f'"dense_3.weight": {value!r}', f'"dense_3.weight": {value / 2!r}')
    with pytest.raises(RunError) as error:
        verify_python_source(source, compiled, "DigitsMlp")
    assert error.value.message == "the Python source for digits_mlp differs from the compiled network in: SENSITIVITIES"


def test_broken_source_rejected():
    compiled = lipc.compile(SPECS / "digits_mlp.lip")
    source = generate_python_source(compiled).replace("group_size=2", "groups=2")
    with pytest.raises(RunError) as error:
        verify_python_source(source, compiled, "DigitsMlp")
    assert error.value.message.startswith("the Python source for digits_mlp does not build the network: ")


# The command line, end to end.


def test_cli_writes_importable_file(digits_spec, tmp_path):
    result = run_lipc("compile", str(digits_spec), "--emit-python", "digits.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "wrote digits.py"
    assert "certified Lipschitz constant" in result.stdout

    check = "import digits; network = digits.load_network('weights.pt'); print(sorted(network.state_dict()))"
    torch.save(lipc.compile(digits_spec).module.state_dict(), tmp_path / "weights.pt")
    imported = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == "['dense_1.weight', 'dense_3.weight']"


def test_cli_prints_source_to_stdout(digits_spec, tmp_path):
    result = run_lipc("compile", str(digits_spec), "--emit-python", "-", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == generate_python_source(lipc.compile(digits_spec))
    assert list(tmp_path.iterdir()) == []


def test_cli_json_names_file(digits_spec, tmp_path, capsys):
    output = tmp_path / "digits.py"
    assert main(["compile", str(digits_spec), "--json", "--emit-python", str(output)]) == 0
    assert f'"python_source": "{output}"' in capsys.readouterr().out
    assert output.read_text(encoding="utf-8") == generate_python_source(lipc.compile(digits_spec))


def test_cli_network_option(tmp_path, capsys):
    spec = tmp_path / "pooling.lip"
    spec.write_text(GLOBAL_POOLING_SOURCE, encoding="utf-8")
    output = tmp_path / "pooling.py"
    assert main(["compile", str(spec), "--network", "global_l2", "--emit-python", str(output)]) == 0
    source = output.read_text(encoding="utf-8")
    assert "class GlobalL2(LipschitzSequential):" in source
    assert f"    lipc compile {spec} --network global_l2 --emit-python PATH" in source


def test_cli_replaces_existing_file(digits_spec, tmp_path, capsys):
    output = tmp_path / "digits.py"
    output.write_text("old", encoding="utf-8")
    assert main(["compile", str(digits_spec), "--emit-python", str(output)]) == 0
    assert output.read_text(encoding="utf-8").startswith('"""The Lipschitz network digits_mlp')
    assert sorted(path.name for path in tmp_path.iterdir()) == ["digits.py"]


def test_cli_missing_folder_is_one_line(digits_spec, tmp_path, capsys):
    output = tmp_path / "missing" / "digits.py"
    assert main(["compile", str(digits_spec), "--emit-python", str(output)]) == 1
    error = capsys.readouterr().err
    assert error.splitlines() == [f"lipc: error: cannot write {output}: No such file or directory. Choose a writable path for --emit-python"]
    assert list(tmp_path.iterdir()) == []


def test_cli_directory_target_leaves_no_file(digits_spec, tmp_path, capsys):
    output = tmp_path / "folder"
    output.mkdir()
    assert main(["compile", str(digits_spec), "--emit-python", str(output)]) == 1
    assert capsys.readouterr().err.splitlines() == [f"lipc: error: cannot write {output}: Is a directory. Choose a writable path for --emit-python"]
    assert [path.name for path in itertools.chain(tmp_path.iterdir(), output.iterdir())] == ["folder"]


def test_cli_stdout_with_json_rejected(digits_spec, capsys):
    assert main(["compile", str(digits_spec), "--emit-python", "-", "--json", "--audit"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "lipc: error: --emit-python - prints the Python source instead of the report, so it cannot be combined with --json, --audit"
    ]


def test_cli_spec_overwrite_rejected(tmp_path, capsys):
    spec = tmp_path / "net.lip"
    spec.write_text((SPECS / "digits_mlp.lip").read_text(encoding="utf-8"), encoding="utf-8")
    assert main(["compile", str(spec), "--emit-python", str(spec)]) == 1
    assert capsys.readouterr().err.splitlines() == [f"lipc: error: --emit-python {spec} would overwrite the spec. Choose another path"]
    assert spec.read_text(encoding="utf-8") == (SPECS / "digits_mlp.lip").read_text(encoding="utf-8")


def test_cli_empty_path_rejected(digits_spec, capsys):
    assert main(["compile", str(digits_spec), "--emit-python", ""]) == 1
    assert capsys.readouterr().err.splitlines() == ["lipc: error: --emit-python needs a file path, or - for standard output"]
