"""The bound report of `lipc compile`: one row per layer, as a table or as JSON."""

from __future__ import annotations

import math

from lipc.check.checker import CheckedSpec
from lipc.check.layers import Layer, Residual

# Indentation of the rows of a residual block's inner layers.
BLOCK_INDENT = "  "


def _number(value: float) -> float | None:
    return None if math.isinf(value) else value


def bounds_as_dict(checked: CheckedSpec, certified_lipschitz: float, bound_methods: dict[str, str] | None = None) -> dict:
    report = {
        "network": checked.network_name,
        "file": checked.spec.path,
        "input_shape": list(checked.input_shape),
        "input_clip_norm": checked.input_layer.clip_norm,
        "layers": [
            {
                "name": bound.name,
                "layer": bound.layer.describe(),
                "line": bound.layer.location.line,
                "output_shape": list(bound.layer.output_shape),
                "lipschitz": bound.layer.lipschitz_bound,
                "input_norm_bound": _number(bound.input_norm_bound),
                "output_norm_bound": bound.output_norm_bound,
                "output_gradient_bound": bound.output_gradient_bound,
                "sensitivities": {f"{bound.name}.{name}": value for name, value in bound.sensitivities},
            }
            for bound in checked.layers
        ],
        "loss": {"loss": checked.loss.describe(), "lipschitz": checked.loss.lipschitz},
        "sensitivities": checked.sensitivities,
        "total_sensitivity": math.sqrt(sum(v**2 for v in checked.sensitivities.values())),
        "lipschitz_bound": checked.lipschitz_bound,
        "certified_lipschitz_constant": certified_lipschitz,
    }
    if bound_methods is not None:
        report["bound_methods"] = bound_methods
    return report


def _layer_rows(layer: Layer, name: str, input_norm: float, sensitivities: dict[str, float], depth: int) -> list[tuple[str, ...]]:
    """Table rows of one layer; a residual block gets a row, then its inner layers indented."""
    norm = "any" if math.isinf(input_norm) else f"{input_norm:.4g}"
    first = (BLOCK_INDENT * depth + layer.describe(), str(list(layer.output_shape)), f"{layer.lipschitz_bound:.4g}", norm)
    if isinstance(layer, Residual):
        rows = [first + ("", "")]
        inner_norms = layer.inner_input_norm_bounds(input_norm)
        for inner, inner_name, inner_norm in zip(layer.inner, layer.inner_names(), inner_norms):
            rows.extend(_layer_rows(inner, f"{name}.{inner_name}", inner_norm, sensitivities, depth + 1))
        return rows

    names = [f"{name}.{local}" for local in layer.parameter_sensitivities(1.0, 1.0)]
    if not names:
        return [first + ("", "")]
    return [(first if position == 0 else ("",) * 4) + (full, f"{sensitivities[full]:.6g}") for position, full in enumerate(names)]


def format_bounds_table(checked: CheckedSpec, certified_lipschitz: float, bound_methods: dict[str, str] | None = None) -> str:
    """Render the bound report as an aligned text table, then how each operator norm is certified."""
    header = ("layer", "output", "Lipschitz", "input norm ≤", "parameter", "sensitivity Δ")
    sensitivities = checked.sensitivities
    rows = []
    for bound in checked.layers:
        rows.extend(_layer_rows(bound.layer, bound.name, bound.input_norm_bound, sensitivities, 0))

    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [f"network {checked.network_name} ({checked.spec.path})"]
    for row in [header, *rows]:
        lines.append("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    total = math.sqrt(sum(v**2 for v in sensitivities.values()))
    lines.append(f"loss {checked.loss.describe()}: Lipschitz constant {checked.loss.lipschitz:.6g} with respect to the logits")
    lines.append(f"total sensitivity sqrt(Σ Δ²): {total:.6g}")
    lines.append(f"certified Lipschitz constant: {certified_lipschitz:.6g} (budget {checked.lipschitz_bound:g})")
    if bound_methods:
        lines.append("operator norms certified by:")
        lines.extend(f"  {name}: {method}" for name, method in bound_methods.items())
    return "\n".join(lines)
