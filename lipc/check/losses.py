"""Losses of the language and their Lipschitz constants with respect to the logits."""

from __future__ import annotations

import math
from dataclasses import dataclass

from lipc.check.arguments import ArgumentReader, end_location, spec_error
from lipc.errors import Location, did_you_mean
from lipc.lang.syntax import LossDecl, SpecFile


@dataclass(frozen=True)
class CrossEntropyLoss:
    """Softmax cross-entropy of z/τ: loss(z, y) = CE(softmax(z/τ), y).

    Its gradient with respect to z is (softmax(z/τ) − e_y)/τ, and ‖p − e_y‖² =
    (1 − p_y)² + Σ_{k≠y} p_k² ≤ 2(1 − p_y)² ≤ 2, so L = sqrt(2)/τ.
    """

    temperature: float
    location: Location
    kind: str = "cross_entropy"

    @property
    def lipschitz(self) -> float:
        return math.sqrt(2.0) / self.temperature

    def describe(self) -> str:
        return f"cross_entropy temperature={self.temperature:g}"


Loss = CrossEntropyLoss

LOSS_KINDS = ("cross_entropy",)


def parse_loss(spec: SpecFile, decl: LossDecl | None) -> Loss:
    if decl is None:
        raise spec_error(
            spec,
            end_location(spec),
            "the file has no loss",
            "add a line such as 'loss cross_entropy temperature=0.2'",
        )
    if decl.kind not in LOSS_KINDS:
        hint = did_you_mean(decl.kind, LOSS_KINDS) or f"the losses are {', '.join(LOSS_KINDS)}"
        raise spec_error(spec, decl.location, f"unknown loss '{decl.kind}'", hint)
    reader = ArgumentReader(spec, f"loss {decl.kind}", decl.location, decl.arguments, (), ("temperature",))
    temperature = reader.number("temperature", 1.0, exclusive_minimum=0.0)
    return CrossEntropyLoss(temperature, decl.location)

