"""Write a compiled network as a readable Python module that builds the same PyTorch network.

The generated module imports lipc's layer classes and defines the network as a subclass of
`LipschitzSequential`, with the submodule names that `lipc train` saves weights under. It also
defines the input shape, the clipping radius, the design's Lipschitz bound, the sensitivity of
every parameter tensor and the loss. Before it is written, the source is executed and the
network it builds is compared with the compiled one, so a file that would differ is never
written.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import keyword
import math
import os
import secrets
import shlex
import sys
import textwrap
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Union

import torch
from torch import nn

from lipc import __version__
from lipc.compiler import CompiledNetwork
from lipc.errors import RunError
from lipc.nn import modules
from lipc.nn.build import build_loss

# Black's default line length: longer calls are split into one argument per line.
LINE_LENGTH = 88
INDENT = "    "

# Examples in the random batch on which the generated network is compared with the compiled one.
VERIFICATION_EXAMPLES = 4
VERIFICATION_SEED = 0

# Names that the generated module defines besides its imports: the class name avoids them.
DEFINED_NAMES = {"os", "torch", "INPUT_SHAPE", "INPUT_CLIP_NORM", "LIPSCHITZ_BOUND", "SENSITIVITIES", "LOSS", "loss_function", "load_network"}

BUG_HINT = "report this as a lipc bug, with the spec file"


@dataclass(frozen=True)
class Call:
    """A constructor call in the generated source: `function(arguments)`.

    Each argument is (keyword or None, value), where the value is source text or a nested Call.
    """

    function: str
    arguments: tuple[tuple[str | None, Union[str, "Call"]], ...]


Expression = Union[str, Call]


def _flat(expression: Expression) -> str:
    if isinstance(expression, str):
        return expression
    arguments = ", ".join(_flat(value) if key is None else f"{key}={_flat(value)}" for key, value in expression.arguments)
    return f"{expression.function}({arguments})"


def format_expression(expression: Expression, prefix: str = "", suffix: str = "", depth: int = 0) -> list[str]:
    """Lay out `prefix + expression + suffix` as lines indented `depth` levels, in Black's style.

    The expression stays on one line when it fits in LINE_LENGTH. Otherwise a call is split
    into one argument per line, each with a trailing comma, and nested calls are split the
    same way.
    """
    indent = INDENT * depth
    flat = f"{indent}{prefix}{_flat(expression)}{suffix}"
    if len(flat) <= LINE_LENGTH or isinstance(expression, str) or not expression.arguments:
        return [flat]

    lines = [f"{indent}{prefix}{expression.function}("]
    for key, value in expression.arguments:
        lines.extend(format_expression(value, "" if key is None else f"{key}=", ",", depth + 1))
    lines.append(f"{indent}){suffix}")
    return lines


def _string_literal(text: str) -> str:
    """Return a Python string literal for `text`, in double quotes unless the text contains one."""
    literal = repr(text)
    if literal.startswith("'") and '"' not in text:
        literal = '"' + literal[1:-1] + '"'
    return literal


class _Imports:
    """The names that the generated source imports, by module, and their import lines."""

    def __init__(self) -> None:
        self.names: dict[str, set[str]] = {}

    def name(self, value: type | Callable) -> str:
        """Import the class or function `value`, and return how the source refers to it.

        torch's own modules are referred to as `nn.Name`.
        """
        if value.__module__.startswith("torch.nn.") and getattr(nn, value.__name__, None) is value:
            self.names.setdefault("torch", set()).add("nn")
            return f"nn.{value.__name__}"
        self.names.setdefault(value.__module__, set()).add(value.__name__)
        return value.__name__

    def imported_names(self) -> set[str]:
        return {name for names in self.names.values() for name in names}

    def lines(self) -> list[str]:
        """Return the import statements, grouped as isort does: standard library, third party, lipc."""
        standard, third_party, own = ["import os"], ["import torch"], []
        for module in sorted(self.names):
            line = _from_import(module, sorted(self.names[module]))
            top_level = module.split(".")[0]
            if top_level == "lipc":
                own.append(line)
            elif top_level in sys.stdlib_module_names:
                standard.append(line)
            else:
                third_party.append(line)
        return [*standard, "", *third_party, "", *own]


def _from_import(module: str, names: list[str]) -> str:
    """Return `from module import names`, split one name per line in parentheses when it is long."""
    line = f"from {module} import {', '.join(names)}"
    if len(line) <= LINE_LENGTH:
        return line
    return "\n".join([f"from {module} import (", *(f"{INDENT}{name}," for name in names), ")"])


def _comment(text: str) -> list[str]:
    """Return `text` as comment lines that fit in LINE_LENGTH."""
    return textwrap.wrap(text, LINE_LENGTH, initial_indent="# ", subsequent_indent="# ", break_on_hyphens=False)


def _literal(value: object, imports: _Imports, where: str) -> Expression:
    """Return the source of a constructor argument: a number, string, None, tuple, dataclass or module."""
    if value is None or isinstance(value, (bool, int)):
        return repr(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise RunError(f"cannot write {where} as Python: the value {value} is not finite", hint=BUG_HINT)
        return repr(value)
    if isinstance(value, str):
        return _string_literal(value)
    if isinstance(value, (tuple, list, torch.Size)):
        items = [_flat(_literal(item, imports, where)) for item in value]
        return "(" + items[0] + ",)" if len(items) == 1 else "(" + ", ".join(items) + ")"
    if isinstance(value, nn.Module):
        return _module_expression(value, imports, where)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _dataclass_expression(value, imports, where)
    raise RunError(f"cannot write {where} as Python: no literal for a value of type {type(value).__name__}", hint=BUG_HINT)


def _dataclass_expression(value: object, imports: _Imports, where: str) -> Call:
    """Return `Class(field=value, ...)` for the fields set in the constructor, leaving out defaults."""
    arguments = []
    for field in dataclasses.fields(value):
        if not field.init:
            continue
        current = getattr(value, field.name)
        if field.default is not dataclasses.MISSING and current == field.default:
            continue
        arguments.append((field.name, _literal(current, imports, where)))
    return Call(imports.name(type(value)), tuple(arguments))


def _constructor_arguments(module: nn.Module, where: str) -> list[tuple[str, object]]:
    """List (keyword, value) for each argument that rebuilds `module` with its class's constructor."""
    if isinstance(module, modules.SpectralDense):
        out_features, in_features = module.weight.shape
        return [("in_features", in_features), ("out_features", out_features), ("bias_norm", module.bias_norm), ("constraint", module.constraint)]

    if isinstance(module, modules.LipschitzConv):
        out_channels, in_channels, *kernel_size = module.weight.shape
        return [
            ("in_channels", in_channels),
            ("out_channels", out_channels),
            ("kernel_size", tuple(kernel_size)),
            ("stride", module.stride),
            ("padding", module.padding),
            ("circular", module.circular),
            ("fft_sizes", module.fft_sizes),
            ("max_coverage", module.max_coverage),
            ("bias_norm", module.bias_norm),
            ("constraint", module.constraint),
        ]

    # Other modules keep each constructor argument as an attribute of the same name. torch's
    # own modules are written with their default arguments left out, as people write them.
    arguments = []
    for parameter in inspect.signature(type(module)).parameters.values():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if not hasattr(module, parameter.name):
            raise RunError(
                f"cannot write {where} as Python: {type(module).__name__} does not store its argument '{parameter.name}'",
                hint=BUG_HINT,
            )
        value = getattr(module, parameter.name)
        if type(module).__module__.startswith("torch.") and value == parameter.default:
            continue
        arguments.append((parameter.name, value))
    return arguments


def _module_expression(module: nn.Module, imports: _Imports, where: str) -> Call:
    if isinstance(module, modules.LipschitzSequential):
        children = tuple((name, _module_expression(child, imports, f"{where}.{name}")) for name, child in module.named_children())
        return Call(imports.name(type(module)), ((None, Call(imports.name(OrderedDict), children)),))

    arguments = _constructor_arguments(module, where)
    return Call(imports.name(type(module)), tuple((key, _literal(value, imports, where)) for key, value in arguments))


def class_name(network_name: str, names_in_use: set[str]) -> str:
    """Return the CamelCase class name for a network name (digits_mlp -> DigitsMlp).

    A name that is in `names_in_use` or is a keyword gets the suffix Network.
    """
    name = "".join(part[:1].upper() + part[1:] for part in network_name.split("_"))
    if not name.isidentifier():
        return "Network"
    if keyword.iskeyword(name) or name in names_in_use:
        return f"{name}Network"
    return name


def _docstring(text: str, depth: int = 0) -> list[str]:
    """Return a triple-quoted docstring, with backslashes and triple quotes in `text` escaped."""
    indent = INDENT * depth
    body = text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"').splitlines()
    if len(body) == 1:
        return [f'{indent}"""{body[0]}"""']
    return [f'{indent}"""{body[0]}', *(f"{indent}{line}" if line else "" for line in body[1:]), f'{indent}"""']


def _constant_lines(compiled: CompiledNetwork, imports: _Imports) -> list[str]:
    checked = compiled.checked
    sensitivities = [f"{INDENT}{_string_literal(name)}: {_literal(value, imports, name)}," for name, value in compiled.sensitivities.items()]
    loss = _literal(checked.loss, imports, "the loss")
    return [
        *_comment("Shape of one example, without the batch dimension."),
        f"INPUT_SHAPE = {_literal(compiled.input_shape, imports, 'INPUT_SHAPE')}",
        "",
        *_comment("The first layer projects each input onto the l2 ball of this radius."),
        f"INPUT_CLIP_NORM = {_literal(compiled.input_clip_norm, imports, 'INPUT_CLIP_NORM')}",
        "",
        *_comment(
            "Certified Lipschitz constant (l2 to l2) of the design: the product of the constants that the layers are "
            "constrained to. network.certified_lipschitz() certifies the current weights."
        ),
        f"LIPSCHITZ_BOUND = {_literal(checked.lipschitz_bound, imports, 'LIPSCHITZ_BOUND')}",
        "",
        *_comment(
            "Sensitivity of each parameter tensor: a bound on the norm of one example's gradient of the loss with respect "
            "to that tensor. The bounds hold only while network.project_() is called after every update of the weights."
        ),
        "SENSITIVITIES = {",
        *sensitivities,
        "}",
        "",
        *_comment(f"The loss {checked.loss.describe()}. loss_function(outputs, labels) returns the per-example losses, not reduced."),
        *format_expression(loss, "LOSS = "),
        f"loss_function = {imports.name(build_loss)}(LOSS)",
    ]


def _class_lines(compiled: CompiledNetwork, name: str, base_class: str, layers: list[str]) -> list[str]:
    docstring = (
        f"The network {compiled.name}.\n\n"
        + textwrap.fill(
            "Its layer names are those that `lipc train` saves weights under. A new instance has random weights, "
            "already projected onto their constraints.",
            LINE_LENGTH - len(INDENT),
        )
    )
    return [
        f"class {name}({base_class}):",
        *_docstring(docstring, depth=1),
        "",
        f"{INDENT}def __init__(self) -> None:",
        f"{INDENT * 2}super().__init__()",
        f"{INDENT * 2}# The layers run in the order in which they are assigned.",
        *layers,
        f"{INDENT * 2}self.project_()",
    ]


def _load_function_lines(name: str) -> list[str]:
    return [
        f"def load_network(weights_path: str | os.PathLike) -> {name}:",
        *_docstring("Build the network with the weights that `lipc train` saved (RUN/weights.pt).", depth=1),
        f"{INDENT}network = {name}()",
        f'{INDENT}state_dict = torch.load(weights_path, map_location="cpu", weights_only=True)',
        f"{INDENT}network.load_state_dict(state_dict)",
        f"{INDENT}return network",
    ]


def _module_docstring(compiled: CompiledNetwork, name: str) -> str:
    spec = compiled.checked.spec
    command = f"lipc compile {shlex.quote(spec.path)}"
    if len(spec.networks) > 1:
        command += f" --network {compiled.name}"
    origin = f"Generated by lipc {__version__} from {spec.path}. Edit the spec rather than this file, and generate it again with:"
    guarantee = "The sensitivities below hold only while the weights satisfy their constraints: call `network.project_()` after every update of the weights."
    return "\n".join(
        [
            f"The Lipschitz network {compiled.name} as a PyTorch module.",
            "",
            textwrap.fill(origin, LINE_LENGTH, break_on_hyphens=False),
            "",
            f"{INDENT}{command} --emit-python PATH",
            "",
            textwrap.fill(guarantee, LINE_LENGTH, break_on_hyphens=False),
            "",
            f'{INDENT}network = load_network("RUN/weights.pt")  # the weights of a `lipc train` run',
            f"{INDENT}network = {name}()  # or random weights, to train from scratch",
        ]
    )


def generate_python_source(compiled: CompiledNetwork) -> str:
    """Return the text of a Python module that rebuilds `compiled`, after checking that it does.

    Raises RunError when a layer cannot be written as Python, or when the network that the
    source builds differs from the compiled one.
    """
    imports = _Imports()
    layers = []
    for layer_name, layer in compiled.module.named_children():
        if not layer_name.isidentifier() or keyword.iskeyword(layer_name):
            raise RunError(f"cannot write layer {layer_name!r} as a Python attribute", hint=BUG_HINT)
        layers.extend(format_expression(_module_expression(layer, imports, layer_name), f"self.{layer_name} = ", depth=2))
    constants = _constant_lines(compiled, imports)
    base_class = imports.name(modules.LipschitzSequential)

    # The class name is chosen once every import is known, so that it shadows none of them.
    name = class_name(compiled.name, imports.imported_names() | DEFINED_NAMES)

    lines = [
        *_docstring(_module_docstring(compiled, name)),
        "",
        *imports.lines(),
        "",
        *constants,
        "",
        "",
        *_class_lines(compiled, name, base_class, layers),
        "",
        "",
        *_load_function_lines(name),
    ]
    source = "\n".join(lines) + "\n"
    verify_python_source(source, compiled, name)
    return source


def _layer_settings(network: nn.Module) -> list[tuple[str, str, str]]:
    """List the name, class and public attributes (the constructor's settings) of every submodule, as text.

    The `training` flag is left out: train or eval mode is not part of the network's definition.
    """
    settings = []
    for name, module in network.named_modules():
        if name:
            attributes = {key: value for key, value in vars(module).items() if not key.startswith("_") and key != "training"}
            settings.append((name, type(module).__qualname__, repr(attributes)))
    return settings


def verify_python_source(source: str, compiled: CompiledNetwork, name: str) -> None:
    """Execute `source` and raise RunError unless its class `name` rebuilds `compiled` exactly.

    Compared: the constants, the loss, each submodule's name, class and settings (which
    include what certifies its operator norm), the parameter names and shapes, and the outputs
    on a random batch once the compiled network's weights are loaded.
    """
    namespace: dict[str, object] = {"__name__": f"lipc_generated_{compiled.name}"}
    # Both networks run on the CPU, wherever the compiled one lives.
    reference = copy.deepcopy(compiled.module).cpu()

    # Building the network draws random initial weights: keep the caller's random state.
    with torch.random.fork_rng(devices=[]):
        try:
            exec(compile(source, f"<Python source of {compiled.name}>", "exec"), namespace)  # noqa: S102  (lipc's own output)
            generated = namespace[name]()
            generated.load_state_dict(reference.state_dict())
        except Exception as error:  # noqa: BLE001  (any failure means that the source is wrong)
            raise RunError(f"the Python source for {compiled.name} does not build the network: {error}", hint=BUG_HINT) from None

        torch.manual_seed(VERIFICATION_SEED)
        batch = torch.randn(VERIFICATION_EXAMPLES, *compiled.input_shape)
        with torch.no_grad():
            same_outputs = torch.equal(generated.eval()(batch), reference.eval()(batch))

    expected = {
        "INPUT_SHAPE": tuple(compiled.input_shape),
        "INPUT_CLIP_NORM": compiled.input_clip_norm,
        "LIPSCHITZ_BOUND": compiled.checked.lipschitz_bound,
        "SENSITIVITIES": compiled.sensitivities,
        "LOSS": compiled.checked.loss,
    }
    differences = [constant for constant, value in expected.items() if namespace.get(constant) != value]
    if _layer_settings(generated) != _layer_settings(reference):
        differences.append("layers")
    if not same_outputs:
        differences.append("outputs")
    if differences:
        raise RunError(f"the Python source for {compiled.name} differs from the compiled network in: {', '.join(differences)}", hint=BUG_HINT)


def write_python_source(source: str, path: Path) -> None:
    """Write `source` to `path` atomically: a temporary file beside it, then a rename.

    A failure leaves `path` as it was and removes the temporary file. Raises RunError, in
    one line, when the file cannot be written.
    """
    parent = path.parent
    staging = parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
    try:
        # O_EXCL never reuses an existing file, and mode 0o666 lets the umask set the permissions.
        descriptor = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(source)
            file.flush()
            os.fsync(file.fileno())
        os.replace(staging, path)
    except OSError as error:
        staging.unlink(missing_ok=True)
        raise RunError(f"cannot write {path}: {error.strerror}. Choose a writable path for --emit-python") from None
    except BaseException:
        staging.unlink(missing_ok=True)
        raise


__all__ = ["generate_python_source", "verify_python_source", "write_python_source"]
