"""Clipless DP-SGD: ordinary batch gradients, Gaussian noise scaled to proven bounds.

Each step draws a Poisson batch and takes the gradient of the loss summed over the batch
and divided by the expected batch size B. It adds Gaussian noise to every parameter tensor
in proportion to its sensitivity and lets the optimizer update the weights. Last, it
projects them back onto their constraints, so that the sensitivities stay valid.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from lipc import __version__
from lipc.check.training import TrainConfig
from lipc.compiler import CompiledNetwork
from lipc.check.training import OptimizerConfig
from lipc.errors import DataError, RunError, UsageError
from lipc.privacy.accounting import calibrate_noise_multiplier, check_privacy_parameters, compute_epsilon, pld_interval
from lipc.privacy.ledger import PrivacyLedger
from lipc.privacy.noise import TensorNoise, allocate_noise, noisy_update_
from lipc.privacy.planning import steps_per_epoch
from lipc.privacy.sampling import poisson_sample, shuffled_batches
from lipc.train import evaluation
from lipc.train.data import Dataset, load_training_data
from lipc.train.run_folder import check_run_dir_free, create_run, finish_run, read_unfinished_run, save_epoch

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    test_accuracy: float
    certified_accuracy: dict[float, float]
    lipschitz_constant: float
    ledger: PrivacyLedger
    network: str = ""
    data: str = ""


def resolve_device(name: str) -> torch.device:
    """Map "auto" to the GPU when one is present, else the CPU; check any explicit device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"invalid device '{name}'", hint="use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device '{name}' requested, but no CUDA GPU is available", hint="use --device cpu or auto")
    if device.type not in ("cpu", "cuda"):
        raise UsageError(f"unsupported device '{name}'", hint="use auto, cpu, cuda or cuda:N")
    return device


# Losses whose targets are real values: the data loaders provide class labels only.
REGRESSION_LOSSES = ("squared_error", "huber")


def _check_data(compiled: CompiledNetwork, dataset: Dataset, config: TrainConfig) -> None:
    # A single logit classifies two classes by its sign.
    if dataset.num_classes > max(compiled.num_classes, 2):
        raise DataError(
            f"data set '{dataset.name}' has {dataset.num_classes} classes, but network '{compiled.name}' outputs {compiled.num_classes} logits",
            hint=f"make the last dense layer {dataset.num_classes} wide",
        )
    if config.batch_size > len(dataset.train_labels):
        raise UsageError(
            f"batch size {config.batch_size} exceeds the {len(dataset.train_labels)} training examples of '{dataset.name}'",
            hint="lower batch_size",
        )


def accumulate_batch_gradients(
    compiled: CompiledNetwork,
    module: torch.nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    expected_batch_size: float,
    physical_batch_size: int | None = None,
) -> float:
    """Add the gradient of Σ_batch loss / B to each parameter's `.grad`; return the summed loss.

    A Poisson batch is larger than B about half of the time. At most `physical_batch_size`
    examples go through each forward and backward pass, so peak memory stays that of a batch
    of that size whatever the draw. Every layer acts on each example alone, so the passes'
    gradients add up to the whole batch's gradient, and its sensitivity is unchanged.
    """
    chunk_size = physical_batch_size or max(len(labels), 1)
    loss_sum = torch.zeros((), dtype=torch.float64, device=inputs.device)
    for start in range(0, len(labels), chunk_size):
        # Divide by the expected batch size B, never by len(labels), which is private.
        losses = compiled.loss_function(module(inputs[start : start + chunk_size]), labels[start : start + chunk_size])
        (losses.sum() / expected_batch_size).backward()
        loss_sum += losses.detach().sum()

    # One conversion per batch: on a GPU each one waits for the device.
    return float(loss_sum)


def private_step(
    compiled: CompiledNetwork,
    module: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    parameters: dict[str, torch.nn.Parameter],
    allocation: dict[str, TensorNoise],
    inputs: torch.Tensor,
    labels: torch.Tensor,
    expected_batch_size: float,
    generator: torch.Generator,
    physical_batch_size: int | None = None,
) -> float:
    """Take one noisy step on a Poisson batch (possibly empty); return the batch's summed loss.

    `physical_batch_size` caps the examples of one forward and backward pass
    (`accumulate_batch_gradients`); None means one pass.
    """
    # Gradients set to None, not zeroed: backward then writes each gradient into a new tensor
    # rather than adding a temporary one to the old, which saves memory and a pass.
    optimizer.zero_grad(set_to_none=True)
    loss_sum = accumulate_batch_gradients(compiled, module, inputs, labels, expected_batch_size, physical_batch_size)
    noisy_update_(module, optimizer, parameters, allocation, generator)
    return loss_sum


@dataclass(frozen=True)
class _Session:
    """Everything a training loop needs, for a new run or a resumed one."""

    compiled: CompiledNetwork
    config: TrainConfig
    run_dir: Path
    dataset: Dataset
    device: torch.device
    allocation: dict[str, TensorNoise]
    ledger: PrivacyLedger
    run_config: dict


def _disable_tf32(device: torch.device) -> None:
    if device.type == "cuda":
        # Bounds are computed in float64, but keep every matrix product in full float32 too.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False



def _load_data(compiled: CompiledNetwork, config: TrainConfig, target: torch.device) -> Dataset:
    dataset = load_training_data(config, compiled.input_shape, compiled.num_classes)
    _check_data(compiled, dataset, config)
    return dataset.to(target)


def parameter_sizes(module: torch.nn.Module) -> dict[str, int]:
    return {name: parameter.numel() for name, parameter in module.named_parameters()}


def _checkpoint(epoch: int, ledger: PrivacyLedger, module: torch.nn.Module, optimizer: torch.optim.Optimizer, generator: torch.Generator, metric_epochs: list[dict]) -> dict:
    return {
        "epoch": epoch,
        "steps_taken": ledger.steps_taken,
        "module": {name: tensor.detach().cpu() for name, tensor in module.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "generator": generator.get_state(),
        "metric_epochs": metric_epochs,
    }


def train(compiled: CompiledNetwork, config: TrainConfig, run_dir: Path, device: str = "auto", show_progress: bool = True) -> TrainResult:
    """Train `compiled.module` in place with clipless DP-SGD, saving the run folder after every epoch."""
    if config.epsilon is None:
        raise UsageError("no privacy target: epsilon is not set", hint="pass --epsilon, or set 'epsilon = 3' in the privacy section")
    check_privacy_parameters(config.epsilon, config.delta)
    if compiled.checked.loss.kind in REGRESSION_LOSSES:
        raise UsageError(
            f"lipc train trains classifiers, and loss {compiled.checked.loss.kind} needs real-valued targets",
            hint="train this network from Python with lipc.privacy.engine.PrivacyEngine and your own targets",
        )
    check_run_dir_free(run_dir)
    target = resolve_device(device)
    _disable_tf32(target)
    dataset = _load_data(compiled, config, target)
    dataset_size = len(dataset.train_labels)

    expected_batch_size = float(config.batch_size)
    sampling_rate = expected_batch_size / dataset_size
    total_steps = config.epochs * steps_per_epoch(dataset_size, config.batch_size)
    if config.delta >= 1 / dataset_size:
        logger.warning("δ = %g is at least 1/N = %.3g for N = %d training examples: use δ well below 1/N", config.delta, 1 / dataset_size, dataset_size)
    if config.sampling != "poisson":
        logger.warning("shuffled fixed-size batches requested: the reported ε assumes Poisson sampling, which this run does not use")
    pld_discretization = pld_interval(config.epsilon, total_steps) if config.accountant == "pld" else None
    noise_multiplier = calibrate_noise_multiplier(config.epsilon, config.delta, sampling_rate, total_steps, config.accountant, pld_discretization)
    allocation = allocate_noise(compiled.sensitivities, noise_multiplier, expected_batch_size, config.noise, parameter_sizes(compiled.module))
    logger.info(
        "%d examples, sampling rate %.4f, %d steps, noise multiplier %.4f for ε = %g at δ = %g",
        dataset_size, sampling_rate, total_steps, noise_multiplier, config.epsilon, config.delta,
    )

    ledger = PrivacyLedger(
        accountant=config.accountant,
        sampling=config.sampling,
        sampling_rate=sampling_rate,
        expected_batch_size=expected_batch_size,
        dataset_size=dataset_size,
        noise_multiplier=noise_multiplier,
        noise_strategy=config.noise,
        delta=config.delta,
        target_epsilon=config.epsilon,
        steps_planned=total_steps,
        pld_discretization=pld_discretization,
        tensors={name: dataclasses.asdict(noise) for name, noise in allocation.items()},
        preprocessing=dataset.preprocessing,
        preprocessing_covered_by_guarantee=not dataset.uses_training_statistics,
    )
    run_config = {
        "lipc_version": __version__,
        "network": compiled.name,
        "device": str(target),
        "train": _config_to_json(config),
        "optimizer_config": {"name": config.optimizer.name, "arguments": dict(config.optimizer.arguments)},
    }

    module = compiled.module.to(target)
    module.train()
    module.project_()
    optimizer = _build_optimizer(module, allocation, config)
    # NOTE: noise comes from torch's seeded generator, which makes runs reproducible but is not
    # a cryptographically secure source. An attacker who learns the seed can remove the noise.
    generator = torch.Generator(device=target).manual_seed(config.seed)
    create_run(run_dir, compiled.checked.spec.source, run_config, ledger.to_dict(), {"epochs": []}, _checkpoint(0, ledger, module, optimizer, generator, []))

    session = _Session(compiled, config, run_dir, dataset, target, allocation, ledger, run_config)
    return _run_epochs(session, optimizer, generator, first_epoch=1, metric_epochs=[], show_progress=show_progress)


def resume(run_dir: Path, device: str = "auto", show_progress: bool = True) -> TrainResult:
    """Continue an unfinished run from its last saved epoch, with its step count and ledger."""
    from lipc.compiler import compile_source

    run = read_unfinished_run(run_dir)
    compiled = compile_source(run.spec_source, str(run.path / "spec.lip"), run.config.get("network"))
    try:
        config = _config_from_json(run.config, compiled.checked.train)
        ledger = PrivacyLedger.from_dict(run.ledger)
        checkpoint_steps = int(run.checkpoint["steps_taken"])
        epoch = int(run.checkpoint["epoch"])
    except (KeyError, TypeError, ValueError) as error:
        raise RunError(f"cannot resume {run.path}: its files are inconsistent ({error})", hint="the run folder is damaged; train a new run") from None
    target = resolve_device(device)
    _disable_tf32(target)
    dataset = _load_data(compiled, config, target)

    allocation = {name: TensorNoise(**values) for name, values in ledger.tensors.items()}
    # The noise was sized to the sensitivities recorded at the start. A version of lipc that
    # proves larger bounds for the same spec would make that noise too small.
    hint = "resume with the lipc version that started the run, or train a new run"
    for name, bound in compiled.sensitivities.items():
        if name not in allocation:
            raise RunError(f"parameter {name} has no noise in the ledger of {run.path}", hint=hint)
        if bound > allocation[name].sensitivity:
            raise RunError(f"the sensitivity of {name} is now {bound:.6g}, above the {allocation[name].sensitivity:.6g} its noise was sized for", hint=hint)
    if ledger.steps_taken < checkpoint_steps:
        raise RunError(
            f"the ledger of {run.path} counts {ledger.steps_taken} steps, fewer than the {checkpoint_steps} of its checkpoint",
            hint="the run folder is damaged; its privacy cannot be trusted; train a new run",
        )
    if ledger.steps_taken > checkpoint_steps:
        # Killed after the ledger was written but before the checkpoint: those steps stay counted.
        ledger.steps_discarded += ledger.steps_taken - checkpoint_steps
        logger.warning("%d steps after the last checkpoint were lost; the ledger keeps counting them", ledger.steps_taken - checkpoint_steps)

    module = compiled.module.to(target)
    module.load_state_dict(run.checkpoint["module"])
    module.train()
    optimizer = _build_optimizer(module, allocation, config)
    optimizer.load_state_dict(run.checkpoint["optimizer"])
    generator = torch.Generator(device=target)
    generator.set_state(run.checkpoint["generator"])
    logger.info("resuming %s after epoch %d of %d, %d steps counted", run.path, epoch, config.epochs, ledger.steps_taken)

    session = _Session(compiled, config, run.path, dataset, target, allocation, ledger, run.config)
    return _run_epochs(session, optimizer, generator, first_epoch=epoch + 1, metric_epochs=list(run.checkpoint["metric_epochs"]), show_progress=show_progress)


def _build_optimizer(module: torch.nn.Module, allocation: dict[str, TensorNoise], config: TrainConfig) -> torch.optim.Optimizer:
    parameters = dict(module.named_parameters())
    if set(parameters) != set(allocation):
        raise AssertionError(f"parameters {sorted(parameters)} do not match the bounded tensors {sorted(allocation)}")
    return config.optimizer.build(parameters.values())


def _epoch_batches(session: _Session, generator: torch.Generator, steps: int):
    """Yield the index tensor of each step's batch, drawn with the run's sampling method."""
    dataset_size = len(session.dataset.train_labels)
    if session.config.sampling == "shuffle":
        yield from shuffled_batches(dataset_size, session.config.batch_size, steps, generator, session.device)
        return
    for _ in range(steps):
        yield poisson_sample(dataset_size, session.ledger.sampling_rate, generator, session.device)


def _run_epochs(session: _Session, optimizer: torch.optim.Optimizer, generator: torch.Generator, first_epoch: int, metric_epochs: list[dict], show_progress: bool) -> TrainResult:
    compiled, config, dataset, ledger = session.compiled, session.config, session.dataset, session.ledger
    module = compiled.module
    parameters = dict(module.named_parameters())
    steps_in_epoch = steps_per_epoch(ledger.dataset_size, config.batch_size)
    # Passes of at most B examples: a large Poisson draw costs a second pass, not more memory.
    physical_batch_size = math.ceil(ledger.expected_batch_size)

    for epoch in range(first_epoch, config.epochs + 1):
        loss_sum, examples_seen = 0.0, 0
        progress = tqdm(
            _epoch_batches(session, generator, steps_in_epoch), total=steps_in_epoch, desc=f"epoch {epoch}/{config.epochs}",
            disable=None if show_progress else True, leave=False, unit="step",
        )
        for batch in progress:
            loss_sum += private_step(
                compiled, module, optimizer, parameters, session.allocation, dataset.train_inputs[batch], dataset.train_labels[batch],
                ledger.expected_batch_size, generator, physical_batch_size,
            )
            examples_seen += len(batch)
            ledger.steps_taken += 1
            progress.set_postfix(loss=f"{loss_sum / max(examples_seen, 1):.3f}")

        epsilon = compute_epsilon(ledger.sampling_rate, ledger.noise_multiplier, ledger.steps_taken, ledger.delta, ledger.accountant, ledger.pld_discretization)
        ledger.record_epoch(epoch, epsilon)
        test_accuracy = evaluation.accuracy(evaluation.predict_logits(module, dataset.test_inputs), dataset.test_labels)
        metric_epochs = [entry for entry in metric_epochs if entry["epoch"] < epoch]
        metric_epochs.append({
            "epoch": epoch,
            "steps": ledger.steps_taken,
            "train_loss_not_private": loss_sum / max(examples_seen, 1),
            "test_accuracy": test_accuracy,
            "epsilon": epsilon,
        })
        save_epoch(session.run_dir, ledger.to_dict(), _checkpoint(epoch, ledger, module, optimizer, generator, metric_epochs), {"epochs": metric_epochs})
        logger.info("epoch %d/%d: test accuracy %.4f, ε spent %.3f", epoch, config.epochs, test_accuracy, epsilon)

    if ledger.epsilon_spent > ledger.target_epsilon:
        if not ledger.steps_discarded:
            raise AssertionError(f"spent ε = {ledger.epsilon_spent} exceeds the target {ledger.target_epsilon}")
        logger.warning("ε = %.4f exceeds the target %g because %d lost steps stay counted", ledger.epsilon_spent, ledger.target_epsilon, ledger.steps_discarded)

    lipschitz_constant = module.certified_lipschitz()
    logits = evaluation.predict_logits(module, dataset.test_inputs)
    test_accuracy = evaluation.accuracy(logits, dataset.test_labels)
    certified = evaluation.certified_accuracy(logits, dataset.test_labels, lipschitz_constant, config.certify_radii)
    metrics = {
        "epochs": metric_epochs,
        "test_accuracy": test_accuracy,
        "certified_accuracy": {f"{radius:g}": value for radius, value in certified.items()},
        "lipschitz_constant": lipschitz_constant,
        "epsilon_label": ledger.epsilon_label,
        "note": "train_loss_not_private is computed on private training data and is not covered by the privacy guarantee",
    }
    ledger.finished = True
    state_dict = {name: tensor.detach().cpu() for name, tensor in module.state_dict().items()}
    finish_run(session.run_dir, ledger.to_dict(), state_dict, metrics)
    return TrainResult(session.run_dir, test_accuracy, certified, lipschitz_constant, ledger, compiled.name, config.data)


def _config_to_json(config: TrainConfig) -> dict:
    values = dataclasses.asdict(config)
    values["optimizer"] = config.optimizer.describe()
    values["certify_radii"] = list(config.certify_radii)
    return values


def _config_from_json(run_config: dict, spec_train: TrainConfig) -> TrainConfig:
    """Rebuild the TrainConfig of a run from its config.json; preprocessing comes from its spec."""
    values = dict(run_config["train"])
    values["preprocess"] = spec_train.preprocess
    optimizer = run_config["optimizer_config"]
    values["optimizer"] = OptimizerConfig(optimizer["name"], tuple(optimizer["arguments"].items()))
    values["certify_radii"] = tuple(values["certify_radii"])
    return TrainConfig(**values)
