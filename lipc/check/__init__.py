"""Checking stage: shapes, Lipschitz compliance and per-example gradient bounds."""

from lipc.check.checker import CheckedSpec, check_spec

__all__ = ["CheckedSpec", "check_spec"]
