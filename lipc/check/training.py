"""The settings sections: `train` (schedule and optimizer), `data` and `privacy`."""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lipc.check.arguments import ArgumentReader, describe_value, spec_error
from lipc.data import BUILTIN_DATASETS, DEFAULT_LABEL_COLUMN, L2Normalize, Normalize, PreprocessStep, Scale, Standardize
from lipc.data.preprocess import DATA_DEPENDENT_STEPS, PUBLIC_STEPS
from lipc.errors import SpecError, SpecErrors, did_you_mean
from lipc.lang.syntax import Argument, Call, ListValue, Name, Number, SectionDecl, SpecFile, String
from lipc.privacy.accounting import ACCOUNTANTS
from lipc.privacy.noise import NOISE_STRATEGIES
from lipc.privacy.sampling import SAMPLING_METHODS

PREPROCESS_STEPS = PUBLIC_STEPS + DATA_DEPENDENT_STEPS


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

    # `data` is a built-in name or a path; a path in a spec is resolved from the spec's folder.
    data: str | None = None
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
    # "auto" (a GPU when there is one), "cpu", "cuda" or "cuda:N".
    device: str = "auto"
    test_data: str | None = None
    label_column: str = DEFAULT_LABEL_COLUMN
    preprocess: tuple[PreprocessStep, ...] = ()
    # Accept preprocessing that reads training-data statistics; the ledger then records
    # that the privacy guarantee does not cover it.
    allow_data_statistics: bool = False


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


# Typical values of the range-checked settings that have no default.
SETTING_EXAMPLES = {"epsilon": 3, "lr": 0.01, "noise_multiplier": 1.0, "dataset_size": 60000}


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
            raise spec_error(spec, argument.location, f"optimizer option '{argument.name}' must be a number or true/false, not {describe_value(argument.value)}", f"write {argument.name}=0.01, or true or false for a flag")
    if "lr" in arguments:
        problem = range_problem("lr", arguments["lr"])
        if problem:
            raise spec_error(spec, value.location, problem, "use a learning rate such as 0.01")
    return OptimizerConfig(class_name, tuple(arguments.items()))


# The settings of each section. Each command-line option of `lipc train` overrides one of them:
# --epochs, --batch-size, --seed, --device, --lr (the optimizer's lr), --data (source),
# --test-data (test_source), --label-column, --epsilon, --delta, --noise, --accountant, --sampling.
SECTION_SETTINGS = {
    "train": ("epochs", "batch_size", "optimizer", "seed", "device", "certify_radii"),
    "data": ("source", "test_source", "label_column", "preprocess", "allow_data_statistics"),
    "privacy": ("epsilon", "delta", "noise", "accountant", "sampling"),
}


# Names that users reach for, by analogy with --data and --test-data, and the setting meant.
_DATA_SET_SETTINGS = {"data": "source", "test_data": "test_source"}


def _section_of(setting: str) -> str | None:
    return next((section for section, names in SECTION_SETTINGS.items() if setting in names), None)


def check_sections(spec: SpecFile) -> list[SpecError]:
    """Check section names, repeated sections, and unknown or misplaced settings."""
    errors = []
    seen = set()
    for section in spec.sections:
        if section.name not in SECTION_SETTINGS:
            hint = did_you_mean(section.name, SECTION_SETTINGS) or f"the sections are {', '.join(SECTION_SETTINGS)}"
            errors.append(spec_error(spec, section.location, f"unknown section '{section.name}'", hint))
            continue
        if section.name in seen:
            errors.append(spec_error(spec, section.location, f"the file has more than one '{section.name}' section", "merge them into one"))
        seen.add(section.name)
        for setting in section.settings:
            if setting.name in _DATA_SET_SETTINGS:
                new_name = _DATA_SET_SETTINGS[setting.name]
                errors.append(spec_error(spec, setting.location, f"'{setting.name}' is not a setting; the data set is the '{new_name}' setting of the data section", f"write data {{ {new_name} = ... }}"))
                continue
            home = _section_of(setting.name)
            if home is None:
                names = SECTION_SETTINGS[section.name]
                hint = did_you_mean(setting.name, names) or _misplaced_hint(setting.name, section.name) or f"{section.name} accepts {', '.join(names)}"
                errors.append(spec_error(spec, setting.location, f"unknown setting '{setting.name}' for {section.name}", hint))
            elif home != section.name:
                errors.append(spec_error(spec, setting.location, f"'{setting.name}' is a {home} setting, not a {section.name} setting", f"move it to the '{home}' section"))
    return errors


def _misplaced_hint(name: str, section_name: str) -> str | None:
    """Suggest a close setting of another section, as in `delt` written in the train section."""
    for other, names in SECTION_SETTINGS.items():
        suggestion = did_you_mean(name, names) if other != section_name else None
        if suggestion:
            return f"{suggestion[:-1]}, a setting of the '{other}' section?"
    return None


def _reader(spec: SpecFile, section_name: str) -> ArgumentReader:
    sections = spec.sections_named(section_name)
    if not sections:
        return ArgumentReader(spec, section_name, None, (), (), SECTION_SETTINGS[section_name], noun="setting")
    section = sections[0]
    # Unknown settings, and settings that belong to another section, were reported by check_sections.
    arguments = [Argument(s.name, s.value, s.location) for s in section.settings if _section_of(s.name) == section_name]
    return ArgumentReader(spec, section_name, section.location, arguments, (), SECTION_SETTINGS[section_name], noun="setting")


def _read_each(errors: list[SpecError], readers: dict) -> dict:
    """Call each reader of a setting; collect the errors so that every bad setting is reported."""
    values = {}
    for name, read in readers.items():
        try:
            values[name] = read()
        except SpecError as error:
            errors.append(error)
    return values


def _check_ranges(spec: SpecFile, reader: ArgumentReader, values: dict, errors: list[SpecError]) -> None:
    for name, value in values.items():
        if name in SETTING_RANGES and value is not None:
            problem = range_problem(name, value)
            if problem:
                errors.append(spec_error(spec, reader.location_of(name), problem, f"for example, {name} = {getattr(TrainConfig(), name, None) or SETTING_EXAMPLES[name]}"))


def _train_settings(spec: SpecFile, defaults: "TrainConfig", errors: list[SpecError]) -> dict:
    reader = _reader(spec, "train")
    values = _read_each(errors, {
        "epochs": lambda: reader.integer("epochs", defaults.epochs),
        "batch_size": lambda: reader.integer("batch_size", defaults.batch_size),
        "seed": lambda: reader.integer("seed", defaults.seed),
        "certify_radii": lambda: reader.number_list("certify_radii", defaults.certify_radii),
    })
    _check_ranges(spec, reader, values, errors)

    def optimizer():
        value = reader.call("optimizer", None)
        return parse_optimizer(spec, value) if value is not None else defaults.optimizer

    readers = {"optimizer": optimizer}
    if reader.has("device"):
        readers["device"] = lambda: parse_device(spec, reader.values["device"])
    values.update(_read_each(errors, readers))
    return values


def _privacy_settings(spec: SpecFile, defaults: "TrainConfig", errors: list[SpecError]) -> dict:
    reader = _reader(spec, "privacy")
    values = _read_each(errors, {
        "epsilon": lambda: reader.number("epsilon", defaults.epsilon),
        "delta": lambda: reader.number("delta", defaults.delta),
        "noise": lambda: reader.choice("noise", NOISE_STRATEGIES, defaults.noise),
        "accountant": lambda: reader.choice("accountant", ACCOUNTANTS, defaults.accountant),
        "sampling": lambda: reader.choice("sampling", SAMPLING_METHODS, defaults.sampling),
    })
    _check_ranges(spec, reader, values, errors)
    return values


def _data_settings(spec: SpecFile, defaults: "TrainConfig", errors: list[SpecError]) -> dict:
    reader = _reader(spec, "data")
    values = _read_each(errors, {"data": lambda: parse_data_source(spec, reader, "source", defaults.data)})
    try:
        values.update(parse_data_settings(spec, reader))
    except SpecError as error:
        errors.append(error)
    return values


def parse_train(spec: SpecFile) -> TrainConfig:
    """Read the train, data and privacy sections into a TrainConfig; settings left out keep their defaults.

    Raise SpecErrors listing every problem: each bad setting (the data section's settings
    other than `source` stop at their first problem), and every unknown or misplaced setting.
    """
    defaults = TrainConfig()
    errors = check_sections(spec)
    values = {}
    for read in (_train_settings, _data_settings, _privacy_settings):
        try:
            values.update(read(spec, defaults, errors))
        except SpecError as error:
            errors.append(error)
    if errors:
        raise SpecErrors(errors)
    return TrainConfig(**values)


def parse_device(spec: SpecFile, argument: Argument) -> str:
    """Read `device = cpu`, `cuda`, `auto` or `"cuda:1"`."""
    value = argument.value
    text = value.value if isinstance(value, (Name, String)) else None
    valid = text in ("auto", "cpu", "cuda") or (text is not None and text.startswith("cuda:") and text[5:].isdigit())
    if not valid:
        raise spec_error(spec, argument.location, f"invalid device {describe_value(value)}", 'use auto, cpu, cuda or "cuda:N"')
    return text


# Data and preprocessing settings ---------------------------------------------------------

def parse_data_source(spec: SpecFile, reader: ArgumentReader, name: str, default: str | None) -> str | None:
    """Read a built-in data set (a name) or a data file (a "path", resolved from the spec's folder)."""
    if not reader.has(name):
        return default
    argument = reader.values[name]
    value = argument.value
    if isinstance(value, String):
        path = Path(value.value).expanduser()
        spec_folder = Path(spec.path).parent
        if not path.is_absolute() and spec_folder.is_dir():
            path = spec_folder / path
        return str(path.absolute())
    if isinstance(value, Name) and value.value in BUILTIN_DATASETS:
        return value.value
    text = value.value if isinstance(value, Name) else None
    hint = (did_you_mean(text, BUILTIN_DATASETS) if text else None) or (
        f'use a built-in data set ({", ".join(BUILTIN_DATASETS)}) or a file path in quotes, as in {name} = "train.npz"'
    )
    raise spec_error(spec, argument.location, f"invalid data {name} {describe_value(value)}", hint)


def parse_data_settings(spec: SpecFile, reader: ArgumentReader) -> dict:
    """Read the test set, the CSV label column and the preprocessing steps of a data section."""
    settings = {"test_data": parse_data_source(spec, reader, "test_source", None)}

    if reader.has("label_column"):
        argument = reader.values["label_column"]
        if not isinstance(argument.value, (String, Name)):
            raise spec_error(spec, argument.location, f"label_column must be a column name, not {describe_value(argument.value)}", 'write label_column = "label"')
        settings["label_column"] = argument.value.value

    allow = False
    if reader.has("allow_data_statistics"):
        argument = reader.values["allow_data_statistics"]
        if not (isinstance(argument.value, Name) and argument.value.value in ("true", "false")):
            raise spec_error(spec, argument.location, f"allow_data_statistics must be true or false, not {describe_value(argument.value)}", "write allow_data_statistics = true, or remove the setting")
        allow = argument.value.value == "true"
    settings["allow_data_statistics"] = allow

    steps = ()
    if reader.has("preprocess"):
        value = reader.values["preprocess"].value
        items = value.items if isinstance(value, ListValue) else (value,)
        steps = tuple(parse_preprocess_step(spec, item, allow) for item in items)
    settings["preprocess"] = steps
    return settings


def parse_preprocess_step(spec: SpecFile, value, allow_data_statistics: bool) -> PreprocessStep:
    """Read one step such as scale(factor=0.5), normalize(mean=[0.5], std=[0.25]) or l2_normalize."""
    if not isinstance(value, (Call, Name)):
        raise spec_error(spec, value.location, f"invalid preprocess step {describe_value(value)}", f"use one of {', '.join(PREPROCESS_STEPS)}, as in scale(factor=0.5)")
    function = value.function if isinstance(value, Call) else value.value
    if function not in PREPROCESS_STEPS:
        hint = did_you_mean(function, PREPROCESS_STEPS) or f"use one of {', '.join(PREPROCESS_STEPS)}"
        raise spec_error(spec, value.location, f"unknown preprocess step '{function}'", hint)
    arguments = value.arguments if isinstance(value, Call) else ()

    if function == "scale":
        reader = ArgumentReader(spec, "scale", value.location, arguments, (), ("factor", "offset"))
        factor = reader.number("factor")
        if factor == 0:
            raise spec_error(spec, reader.location_of("factor"), "scale option 'factor' must not be 0", "use the public constant that maps the data's range to about [0, 1]")
        return Scale(factor, reader.number("offset", 0.0))

    if function == "normalize":
        reader = ArgumentReader(spec, "normalize", value.location, arguments, (), ("mean", "std"))
        mean = reader.number_list("mean", minimum=-math.inf)
        std = reader.number_list("std", minimum=-math.inf)
        if not mean or len(mean) != len(std):
            raise spec_error(spec, value.location, f"normalize needs as many means as standard deviations, at least one, not {len(mean)} and {len(std)}", "give one value per channel, as in normalize(mean=[0.5], std=[0.25])")
        if min(std) <= 0:
            raise spec_error(spec, reader.location_of("std"), f"normalize option 'std' must hold positive numbers, not {list(std)}", "give each channel's public standard deviation, as in std=[0.25]")
        return Normalize(mean, std)

    if arguments:
        raise spec_error(spec, value.location, f"preprocess step {function} takes no options", f"write {function}")
    if function == "l2_normalize":
        return L2Normalize()
    if not allow_data_statistics:
        raise spec_error(
            spec,
            value.location,
            "preprocess step 'standardize' computes statistics of the private training data, which the privacy guarantee does not cover",
            "use public constants (scale, normalize, l2_normalize), or set allow_data_statistics = true to accept that",
        )
    return Standardize()
