"""`lipc.compile`: from a `.lip` file to a PyTorch module with its privacy bounds."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import torch

from lipc.check import CheckedSpec, check_spec
from lipc.lang import parse_file, parse_source
from lipc.nn import LipschitzSequential, build_loss, build_module


@dataclass(frozen=True)
class CompiledNetwork:
    """A checked network, its PyTorch module, and the bound of every parameter tensor.

    `sensitivities` maps each of `module`'s parameter names to Δ, a bound on the norm of one
    example's gradient of the loss with respect to that tensor. The bounds hold only while
    the module's weights satisfy their constraints: call `module.project_()` after each update.
    """

    checked: CheckedSpec
    module: LipschitzSequential
    loss_function: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

    @property
    def name(self) -> str:
        return self.checked.network_name

    @property
    def sensitivities(self) -> dict[str, float]:
        return self.checked.sensitivities

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.checked.input_shape

    @property
    def input_clip_norm(self) -> float:
        return self.checked.input_layer.clip_norm

    @property
    def num_classes(self) -> int:
        return self.checked.num_classes

    def certified_lipschitz(self) -> float:
        """Certified Lipschitz constant of the module with its current weights."""
        return self.module.certified_lipschitz()


def _compile_checked(checked: CheckedSpec) -> CompiledNetwork:
    return CompiledNetwork(checked, build_module(checked), build_loss(checked.loss))


def compile(path: str | os.PathLike, network: str | None = None) -> CompiledNetwork:  # noqa: A001  (the public name)
    """Parse, check and compile the `.lip` file at `path`; pick `network` if it defines several."""
    return _compile_checked(check_spec(parse_file(path), network))


def compile_source(source: str, path: str = "<string>", network: str | None = None) -> CompiledNetwork:
    """Like `compile`, for `.lip` source text; `path` is only used in error messages."""
    return _compile_checked(check_spec(parse_source(source, path), network))
