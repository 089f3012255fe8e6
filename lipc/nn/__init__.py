"""Compilation stage: PyTorch modules whose weights stay inside their certified constraints."""

from lipc.nn.build import build_loss, build_module
from lipc.nn.modules import LipschitzSequential

__all__ = ["LipschitzSequential", "build_loss", "build_module"]
