"""Losses of the language and their Lipschitz constants with respect to the logits.

Each loss gives L, the supremum over logits and labels of ‖∇_z loss(z, y)‖ for one example:
the backward propagation of gradient bounds starts from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lipc.check.arguments import ArgumentReader, end_location, spec_error
from lipc.errors import Location, did_you_mean
from lipc.lang.syntax import LossDecl, SpecFile

# Kinds of labels that a loss takes: class indices, a binary label 0/1, or real targets.
CLASS_LABELS = "class"
BINARY_LABELS = "binary"
REGRESSION_TARGETS = "regression"


@dataclass(frozen=True)
class CrossEntropyLoss:
    """Softmax cross-entropy of z/τ: loss(z, y) = CE(softmax(z/τ), y).

    Its gradient with respect to z is (softmax(z/τ) − e_y)/τ, and ‖p − e_y‖² =
    (1 − p_y)² + Σ_{k≠y} p_k² ≤ 2(1 − p_y)² ≤ 2, so L = sqrt(2)/τ.
    """

    temperature: float
    location: Location
    kind: str = "cross_entropy"
    labels: str = CLASS_LABELS
    min_outputs: int = 2

    @property
    def lipschitz(self) -> float:
        return math.sqrt(2.0) / self.temperature

    def describe(self) -> str:
        return f"cross_entropy temperature={self.temperature:g}"


@dataclass(frozen=True)
class HingeLoss:
    """One-vs-all hinge, averaged over the K logits: mean_k max(0, margin − s_k·z_k).

    s_k = +1 for the label's logit and −1 for the others. Each coordinate of the gradient is
    0 or ±1/K, so L = sqrt(K)/K = 1/sqrt(K).
    """

    margin: float
    outputs: int
    location: Location
    kind: str = "hinge"
    labels: str = CLASS_LABELS
    min_outputs: int = 2

    @property
    def lipschitz(self) -> float:
        return 1.0 / math.sqrt(self.outputs)

    def describe(self) -> str:
        return f"hinge margin={self.margin:g}"


@dataclass(frozen=True)
class BinaryCrossEntropyLoss:
    """Binary cross-entropy of one logit at temperature τ: softplus(z/τ) − y·z/τ, y ∈ [0, 1].

    Its derivative is (sigmoid(z/τ) − y)/τ, of magnitude at most 1/τ because both terms lie
    in [0, 1]. Labels are clamped to [0, 1], so the bound holds for any label value.
    """

    temperature: float
    location: Location
    kind: str = "binary_cross_entropy"
    labels: str = BINARY_LABELS
    min_outputs: int = 1

    @property
    def lipschitz(self) -> float:
        return 1.0 / self.temperature

    def describe(self) -> str:
        return f"binary_cross_entropy temperature={self.temperature:g}"


@dataclass(frozen=True)
class HingeKRLoss:
    """Per-example hinge-Kantorovich–Rubinstein loss of one logit: −s·z + α·max(0, margin − s·z).

    s = 2y − 1 ∈ {−1, +1}. The batch form of this loss divides the KR term by in-batch class
    counts, which makes one example's gradient depend on the others. Here each example has the
    same weight, so the loss is per example. Its derivative is −s or −s·(1 + α), so L = 1 + α.
    """

    alpha: float
    margin: float
    location: Location
    kind: str = "hinge_kr"
    labels: str = BINARY_LABELS
    min_outputs: int = 1

    @property
    def lipschitz(self) -> float:
        return 1.0 + self.alpha

    def describe(self) -> str:
        return f"hinge_kr alpha={self.alpha:g} margin={self.margin:g}"


@dataclass(frozen=True)
class SquaredErrorLoss:
    """½‖z − t‖², with the target t projected onto the ball ‖t‖ ≤ target_bound.

    The gradient is z − t, so L = X_D + target_bound, with X_D the bound on the network
    output's norm (every output is bounded because every input is clipped).
    """

    target_bound: float
    output_norm_bound: float
    location: Location
    kind: str = "squared_error"
    labels: str = REGRESSION_TARGETS
    min_outputs: int = 1

    @property
    def lipschitz(self) -> float:
        return self.output_norm_bound + self.target_bound

    def describe(self) -> str:
        return f"squared_error target_bound={self.target_bound:g}"


@dataclass(frozen=True)
class HuberLoss:
    """Huber loss with threshold δ, summed over the K outputs.

    Each coordinate of the gradient is clamp(z_k − t_k, −δ, δ), so L = δ·sqrt(K) whatever
    the targets.
    """

    delta: float
    outputs: int
    location: Location
    kind: str = "huber"
    labels: str = REGRESSION_TARGETS
    min_outputs: int = 1

    @property
    def lipschitz(self) -> float:
        return self.delta * math.sqrt(self.outputs)

    def describe(self) -> str:
        return f"huber delta={self.delta:g}"


Loss = CrossEntropyLoss | HingeLoss | BinaryCrossEntropyLoss | HingeKRLoss | SquaredErrorLoss | HuberLoss

# Options of each loss kind.
LOSS_OPTIONS = {
    "cross_entropy": ("temperature",),
    "hinge": ("margin",),
    "binary_cross_entropy": ("temperature",),
    "hinge_kr": ("alpha", "margin"),
    "squared_error": ("target_bound",),
    "huber": ("delta",),
}
LOSS_KINDS = tuple(LOSS_OPTIONS)

# Losses that practitioners reach for but that have no per-example Lipschitz constant.
UNBOUNDED_LOSSES = {
    "kr": "the Kantorovich–Rubinstein loss divides by in-batch class counts, so one example's gradient depends on the whole batch; use 'hinge_kr', its per-example form",
    "wasserstein": "the Kantorovich–Rubinstein loss divides by in-batch class counts, so one example's gradient depends on the whole batch; use 'hinge_kr', its per-example form",
    "mse": "squared error has no Lipschitz constant for unbounded targets; use 'squared_error target_bound=Y' or 'huber delta=D'",
    "log_cosh": "lipc has no proven constant for it; use 'huber delta=D'",
}


def parse_loss(spec: SpecFile, decl: LossDecl | None, output_shape: tuple[int, ...] = (2,), output_norm_bound: float = math.inf) -> Loss:
    """Check the loss declaration against the network's output shape and output norm bound X_D."""
    if decl is None:
        raise spec_error(
            spec,
            end_location(spec),
            "the file has no loss",
            "add a line such as 'loss cross_entropy temperature=0.2'",
        )
    if decl.kind in UNBOUNDED_LOSSES:
        raise spec_error(spec, decl.location, f"loss '{decl.kind}' has no per-example Lipschitz constant", UNBOUNDED_LOSSES[decl.kind])
    if decl.kind not in LOSS_KINDS:
        hint = did_you_mean(decl.kind, LOSS_KINDS) or f"the losses are {', '.join(LOSS_KINDS)}"
        raise spec_error(spec, decl.location, f"unknown loss '{decl.kind}'", hint)
    reader = ArgumentReader(spec, f"loss {decl.kind}", decl.location, decl.arguments, (), LOSS_OPTIONS[decl.kind])
    outputs = output_shape[0] if len(output_shape) == 1 else 0

    if decl.kind == "cross_entropy":
        return CrossEntropyLoss(reader.number("temperature", 1.0, exclusive_minimum=0.0), decl.location)
    if decl.kind == "hinge":
        return HingeLoss(reader.number("margin", 1.0, exclusive_minimum=0.0), outputs, decl.location)
    if decl.kind == "binary_cross_entropy":
        return BinaryCrossEntropyLoss(reader.number("temperature", 1.0, exclusive_minimum=0.0), decl.location)
    if decl.kind == "hinge_kr":
        alpha = reader.number("alpha", 10.0, minimum=0.0)
        return HingeKRLoss(alpha, reader.number("margin", 1.0, exclusive_minimum=0.0), decl.location)
    if decl.kind == "squared_error":
        return SquaredErrorLoss(reader.number("target_bound", exclusive_minimum=0.0), output_norm_bound, decl.location)
    return HuberLoss(reader.number("delta", 1.0, exclusive_minimum=0.0), outputs, decl.location)
