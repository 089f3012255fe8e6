"""The bound report of `lipc compile`: one row per layer, as a table or as JSON."""

from __future__ import annotations

import math

from lipc.check.checker import CheckedSpec


def _number(value: float) -> float | None:
    return None if math.isinf(value) else value


def bounds_as_dict(checked: CheckedSpec, certified_lipschitz: float) -> dict:
    return {
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


def format_bounds_table(checked: CheckedSpec, certified_lipschitz: float) -> str:
    """Render the bound report as an aligned text table."""
    header = ("layer", "output", "Lipschitz", "input norm ≤", "parameter", "sensitivity Δ")
    rows = []
    for bound in checked.layers:
        input_norm = "any" if math.isinf(bound.input_norm_bound) else f"{bound.input_norm_bound:.4g}"
        first = (bound.layer.describe(), str(list(bound.layer.output_shape)), f"{bound.layer.lipschitz_bound:g}", input_norm)
        if not bound.sensitivities:
            rows.append(first + ("", ""))
        for position, (name, value) in enumerate(bound.sensitivities):
            prefix = first if position == 0 else ("",) * 4
            rows.append(prefix + (f"{bound.name}.{name}", f"{value:.6g}"))

    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [f"network {checked.network_name} ({checked.spec.path})"]
    for row in [header, *rows]:
        lines.append("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    total = math.sqrt(sum(v**2 for v in checked.sensitivities.values()))
    lines.append(f"loss {checked.loss.describe()}: Lipschitz constant {checked.loss.lipschitz:.6g} with respect to the logits")
    lines.append(f"total sensitivity sqrt(Σ Δ²): {total:.6g}")
    lines.append(f"certified Lipschitz constant: {certified_lipschitz:.6g} (budget {checked.lipschitz_bound:g})")
    return "\n".join(lines)
