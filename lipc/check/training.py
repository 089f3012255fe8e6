"""The `train` block: data set, schedule, optimizer and privacy target."""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field

import torch

from lipc.check.arguments import ArgumentReader, describe_value, spec_error
from lipc.errors import did_you_mean
from lipc.lang.syntax import Argument, Call, Name, Number, SpecFile, TrainDecl
from lipc.privacy.accounting import ACCOUNTANTS
from lipc.privacy.noise import NOISE_STRATEGIES
from lipc.privacy.sampling import SAMPLING_METHODS
BUILTIN_DATASETS = ("digits",)


@dataclass(frozen=True)
class OptimizerConfig:
    """A torch.optim class by name, with its keyword arguments."""

    name: str
    arguments: tuple[tuple[str, float], ...] = (("lr", 0.01),)

    @property
    def learning_rate(self) -> float | None:
        return dict(self.arguments).get("lr")

    def with_learning_rate(self, learning_rate: float) -> "OptimizerConfig":
        arguments = dict(self.arguments)
        arguments["lr"] = learning_rate
        return OptimizerConfig(self.name, tuple(arguments.items()))

    def build(self, parameters) -> torch.optim.Optimizer:
        return getattr(torch.optim, self.name)(parameters, **dict(self.arguments))

    def describe(self) -> str:
        arguments = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.arguments)
        return f"{self.name}({arguments})"


@dataclass(frozen=True)
class TrainConfig:
    """Settings of a training run; the command line may override each of them."""

    data: str = "digits"
    epochs: int = 10
    batch_size: int = 256
    optimizer: OptimizerConfig = field(default_factory=lambda: OptimizerConfig("Adam"))
    epsilon: float | None = None
    delta: float = 1e-5
    noise: str = "least_energy"
    accountant: str = "rdp"
    sampling: str = "poisson"
    seed: int = 0
    certify_radii: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0)


# Valid range of each numeric setting: (exclusive minimum, inclusive minimum, exclusive maximum).
SETTING_RANGES: dict[str, tuple[float | None, float | None, float | None]] = {
    "epochs": (None, 1, None),
    "batch_size": (None, 1, None),
    "epsilon": (0.0, None, None),
    "delta": (0.0, None, 1.0),
    "seed": (None, 0, None),
    "lr": (0.0, None, None),
    "noise_multiplier": (0.0, None, None),
    "dataset_size": (None, 1, None),
}


def range_problem(name: str, value: float) -> str | None:
    """Describe why `value` is out of range for setting `name`, or return None."""
    if not math.isfinite(value):
        return f"{name} must be a finite number, not {value}"
    exclusive_minimum, minimum, exclusive_maximum = SETTING_RANGES[name]
    if exclusive_minimum is not None and not value > exclusive_minimum:
        return f"{name} must be greater than {exclusive_minimum:g}, not {value:g}"
    if minimum is not None and value < minimum:
        return f"{name} must be at least {minimum:g}, not {value:g}"
    if exclusive_maximum is not None and not value < exclusive_maximum:
        return f"{name} must be less than {exclusive_maximum:g}, not {value:g}"
    return None


def _optimizer_classes() -> dict[str, str]:
    """Map lower-case names to torch.optim optimizer class names."""
    classes = {}
    for name, value in vars(torch.optim).items():
        if inspect.isclass(value) and issubclass(value, torch.optim.Optimizer) and value is not torch.optim.Optimizer:
            classes[name.lower()] = name
    return classes


def parse_optimizer(spec: SpecFile, value: Call | Name) -> OptimizerConfig:
    classes = _optimizer_classes()
    function = value.function if isinstance(value, Call) else value.value
    if function.lower() not in classes:
        hint = did_you_mean(function.lower(), classes) or f"use a torch.optim optimizer, such as {', '.join(sorted(classes)[:6])}"
        raise spec_error(spec, value.location, f"unknown optimizer '{function}'", hint)
    class_name = classes[function.lower()]
    accepted = [p for p in inspect.signature(getattr(torch.optim, class_name)).parameters if p != "params"]

    arguments = {}
    for argument in value.arguments if isinstance(value, Call) else ():
        if argument.name not in accepted:
            hint = did_you_mean(argument.name, accepted) or f"torch.optim.{class_name} accepts {', '.join(accepted)}"
            raise spec_error(spec, argument.location, f"unknown option '{argument.name}' for optimizer {function}", hint)
        if isinstance(argument.value, Number):
            arguments[argument.name] = argument.value.value
        elif isinstance(argument.value, Name) and argument.value.value in ("true", "false"):
            arguments[argument.name] = argument.value.value == "true"
        else:
            raise spec_error(spec, argument.location, f"optimizer option '{argument.name}' must be a number or true/false, not {describe_value(argument.value)}")
    if "lr" in arguments:
        problem = range_problem("lr", arguments["lr"])
        if problem:
            raise spec_error(spec, value.location, problem, "use a learning rate such as 0.01")
    return OptimizerConfig(class_name, tuple(arguments.items()))


def parse_train(spec: SpecFile, decl: TrainDecl | None) -> TrainConfig:
    """Read a `train` block into a TrainConfig; settings left out keep their defaults."""
    defaults = TrainConfig()
    if decl is None:
        return defaults
    arguments = [Argument(s.name, s.value, s.location) for s in decl.settings]
    keywords = ("data", "epochs", "batch_size", "optimizer", "epsilon", "delta", "noise", "accountant", "sampling", "seed", "certify_radii")
    reader = ArgumentReader(spec, "train", decl.location, arguments, (), keywords)

    values = {
        "data": reader.choice("data", BUILTIN_DATASETS, defaults.data),
        "epochs": reader.integer("epochs", defaults.epochs),
        "batch_size": reader.integer("batch_size", defaults.batch_size),
        "epsilon": reader.number("epsilon", defaults.epsilon),
        "delta": reader.number("delta", defaults.delta),
        "noise": reader.choice("noise", NOISE_STRATEGIES, defaults.noise),
        "accountant": reader.choice("accountant", ACCOUNTANTS, defaults.accountant),
        "sampling": reader.choice("sampling", SAMPLING_METHODS, defaults.sampling),
        "seed": reader.integer("seed", defaults.seed),
        "certify_radii": reader.number_list("certify_radii", defaults.certify_radii),
    }
    for name, value in values.items():
        if name in SETTING_RANGES and value is not None:
            problem = range_problem(name, value)
            if problem:
                raise spec_error(spec, reader.location_of(name), problem)

    optimizer = reader.call("optimizer", None)
    values["optimizer"] = parse_optimizer(spec, optimizer) if optimizer is not None else defaults.optimizer
    return TrainConfig(**values)

