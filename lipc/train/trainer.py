"""Clipless DP-SGD: ordinary batch gradients, Gaussian noise scaled to proven bounds.

Each step draws a Poisson batch, takes the gradient of the loss summed over the batch and
divided by the expected batch size B, adds Gaussian noise to every parameter tensor in
proportion to its sensitivity, lets the optimizer update the weights, and projects them
back onto their constraints so that the sensitivities stay valid for the next step.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from lipc import __version__
from lipc.check.training import TrainConfig
from lipc.compiler import CompiledNetwork
from lipc.errors import DataError, UsageError
from lipc.privacy.accounting import calibrate_noise_multiplier, compute_epsilon
from lipc.privacy.ledger import PrivacyLedger
from lipc.privacy.noise import TensorNoise, add_noise_, allocate_noise
from lipc.privacy.sampling import poisson_sample
from lipc.train import evaluation
from lipc.train.data import Dataset, load_training_data
from lipc.train.run_folder import check_run_dir_free, write_run

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    test_accuracy: float
    certified_accuracy: dict[float, float]
    lipschitz_constant: float
    ledger: PrivacyLedger


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


def steps_per_epoch(dataset_size: int, batch_size: int) -> int:
    """Steps that draw, in expectation, as many examples as the data set holds."""
    return max(1, round(dataset_size / batch_size))


def _check_data(compiled: CompiledNetwork, dataset: Dataset, config: TrainConfig) -> None:
    if dataset.num_classes > compiled.num_classes:
        raise DataError(
            f"data set '{dataset.name}' has {dataset.num_classes} classes, but network '{compiled.name}' outputs {compiled.num_classes} logits",
            hint=f"make the last dense layer {dataset.num_classes} wide",
        )
    if config.batch_size > len(dataset.train_labels):
        raise UsageError(
            f"batch size {config.batch_size} exceeds the {len(dataset.train_labels)} training examples of '{dataset.name}'",
            hint="lower batch_size",
        )


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
) -> float:
    """Take one noisy step on a Poisson batch (possibly empty); return the batch's summed loss.

    Every parameter must already have a `.grad` tensor.
    """
    optimizer.zero_grad(set_to_none=False)
    loss_sum = 0.0
    if len(labels):
        # Divide by the expected batch size B, never by len(labels), which is private.
        losses = compiled.loss_function(module(inputs), labels)
        (losses.sum() / expected_batch_size).backward()
        loss_sum = float(losses.detach().sum())
    add_noise_(parameters, allocation, generator)
    optimizer.step()
    module.project_()
    return loss_sum


def train(compiled: CompiledNetwork, config: TrainConfig, run_dir: Path, device: str = "auto", show_progress: bool = True) -> TrainResult:
    """Train `compiled.module` in place with clipless DP-SGD and write the run folder."""
    if config.epsilon is None:
        raise UsageError("no privacy target: epsilon is not set", hint="pass --epsilon, or set 'epsilon = 3' in the train block")
    check_run_dir_free(run_dir)
    target = resolve_device(device)
    if target.type == "cuda":
        # Bounds are computed in float64, but keep every matrix product in full float32 too.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False

    dataset = load_training_data(config, compiled.input_shape, compiled.num_classes)
    _check_data(compiled, dataset, config)
    dataset = dataset.to(target)
    dataset_size = len(dataset.train_labels)

    expected_batch_size = float(config.batch_size)
    sampling_rate = expected_batch_size / dataset_size
    total_steps = config.epochs * steps_per_epoch(dataset_size, config.batch_size)
    noise_multiplier = calibrate_noise_multiplier(config.epsilon, config.delta, sampling_rate, total_steps, config.accountant)
    allocation = allocate_noise(compiled.sensitivities, noise_multiplier, expected_batch_size, config.noise)
    logger.info(
        "%d examples, sampling rate %.4f, %d steps, noise multiplier %.4f for ε = %g at δ = %g",
        dataset_size, sampling_rate, total_steps, noise_multiplier, config.epsilon, config.delta,
    )

    ledger = PrivacyLedger(
        accountant=config.accountant,
        sampling="poisson",
        sampling_rate=sampling_rate,
        expected_batch_size=expected_batch_size,
        dataset_size=dataset_size,
        noise_multiplier=noise_multiplier,
        noise_strategy=config.noise,
        delta=config.delta,
        target_epsilon=config.epsilon,
        steps_planned=total_steps,
        tensors={name: dataclasses.asdict(noise) for name, noise in allocation.items()},
        preprocessing=dataset.preprocessing,
        preprocessing_covered_by_guarantee=not dataset.uses_training_statistics,
    )

    module = compiled.module.to(target)
    module.train()
    module.project_()
    parameters = dict(module.named_parameters())
    if set(parameters) != set(allocation):
        raise AssertionError(f"parameters {sorted(parameters)} do not match the bounded tensors {sorted(allocation)}")
    for parameter in parameters.values():
        parameter.grad = torch.zeros_like(parameter)
    optimizer = config.optimizer.build(parameters.values())

    # NOTE: noise comes from torch's seeded generator, which makes runs reproducible but is not
    # a cryptographically secure source; an attacker who learns the seed can remove the noise.
    generator = torch.Generator(device=target).manual_seed(config.seed)
    metrics = {"epochs": []}
    steps_in_epoch = steps_per_epoch(dataset_size, config.batch_size)

    for epoch in range(1, config.epochs + 1):
        loss_sum, examples_seen = 0.0, 0
        progress = tqdm(range(steps_in_epoch), desc=f"epoch {epoch}/{config.epochs}", disable=None if show_progress else True, leave=False, unit="step")
        for _ in progress:
            batch = poisson_sample(dataset_size, sampling_rate, generator, target)
            loss_sum += private_step(compiled, module, optimizer, parameters, allocation, dataset.train_inputs[batch], dataset.train_labels[batch], expected_batch_size, generator)
            examples_seen += len(batch)
            ledger.steps_taken += 1
            progress.set_postfix(loss=f"{loss_sum / max(examples_seen, 1):.3f}")

        ledger.epsilon_spent = compute_epsilon(sampling_rate, noise_multiplier, ledger.steps_taken, config.delta, config.accountant)
        ledger.epsilon_after_epoch.append(ledger.epsilon_spent)
        test_accuracy = evaluation.accuracy(evaluation.predict_logits(module, dataset.test_inputs), dataset.test_labels)
        metrics["epochs"].append({
            "epoch": epoch,
            "steps": ledger.steps_taken,
            "train_loss_not_private": loss_sum / max(examples_seen, 1),
            "test_accuracy": test_accuracy,
            "epsilon": ledger.epsilon_spent,
        })
        logger.info("epoch %d/%d: test accuracy %.4f, ε spent %.3f", epoch, config.epochs, test_accuracy, ledger.epsilon_spent)

    if ledger.epsilon_spent > config.epsilon:
        raise AssertionError(f"spent ε = {ledger.epsilon_spent} exceeds the target {config.epsilon}")

    lipschitz_constant = module.certified_lipschitz()
    logits = evaluation.predict_logits(module, dataset.test_inputs)
    test_accuracy = evaluation.accuracy(logits, dataset.test_labels)
    certified = evaluation.certified_accuracy(logits, dataset.test_labels, lipschitz_constant, config.certify_radii)
    metrics.update({
        "test_accuracy": test_accuracy,
        "certified_accuracy": {f"{radius:g}": value for radius, value in certified.items()},
        "lipschitz_constant": lipschitz_constant,
        "note": "train_loss_not_private is computed on private training data and is not covered by the privacy guarantee",
    })

    run_config = {
        "lipc_version": __version__,
        "network": compiled.name,
        "device": str(target),
        "train": _config_to_json(config),
    }
    state_dict = {name: tensor.detach().cpu() for name, tensor in module.state_dict().items()}
    write_run(run_dir, compiled.checked.spec.source, run_config, state_dict, metrics, ledger.to_dict())
    return TrainResult(run_dir, test_accuracy, certified, lipschitz_constant, ledger)


def _config_to_json(config: TrainConfig) -> dict:
    values = dataclasses.asdict(config)
    values["optimizer"] = config.optimizer.describe()
    values["certify_radii"] = list(config.certify_radii)
    return values
