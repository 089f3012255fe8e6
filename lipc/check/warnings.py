"""Warnings for legal but poor choices in a checked spec."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lipc.errors import Location, SpecWarning

if TYPE_CHECKING:
    from lipc.check.checker import LayerBound
    from lipc.check.training import TrainConfig
    from lipc.lang.expand import Expansion
    from lipc.lang.syntax import SpecFile


def _warning(spec: "SpecFile", location: Location, message: str, hint: str) -> SpecWarning:
    return SpecWarning(message, location, spec.source_line(location.line), hint)


def _all_layers(bounds):
    """Yield each layer with its input-norm bound, entering residual blocks."""
    for bound in bounds:
        yield bound.layer, bound.input_norm_bound
        inner = getattr(bound.layer, "inner", ())
        norm = bound.input_norm_bound
        for layer in inner:
            yield layer, norm
            norm = layer.output_norm_bound(norm)


def spec_warnings(spec: "SpecFile", bounds: tuple["LayerBound", ...], train: "TrainConfig", expansion: "Expansion") -> tuple[SpecWarning, ...]:
    """Return the warnings of a spec that passed every check, in source order."""
    warnings = []

    for layer, input_norm in _all_layers(bounds):
        if layer.kind == "relu":
            warnings.append(_warning(
                spec,
                layer.location,
                "relu is 1-Lipschitz but zeroes the gradient of every negative unit, so gradient norms shrink layer after layer",
                "use 'groupsort 2', which keeps gradient norms and has the same Lipschitz bound",
            ))
        bias_norm = getattr(layer, "bias_norm", None)
        if bias_norm:
            # With l = 1, the output-norm bound is the input-norm bound plus the bias's contribution.
            bias_contribution = layer.output_norm_bound(input_norm) - input_norm
            if bias_contribution > input_norm:
                warnings.append(_warning(
                    spec,
                    layer.location,
                    f"the bias can add {bias_contribution:g} to the output-norm bound, more than the input-norm bound {input_norm:g} it starts from",
                    f"lower bias_norm below {input_norm / (bias_contribution / bias_norm):g} or leave the bias out: "
                    "the sensitivities of later layers grow with this bound",
                ))

    for let in expansion.unused_lets:
        warnings.append(_warning(spec, let.location, f"the name '{let.name}' is defined but never used", "use it or remove the definition"))
    for block in expansion.unused_blocks:
        warnings.append(_warning(spec, block.location, f"the block '{block.name}' is defined but never used", "use it in a network or remove it"))

    sections = {section.name: section for section in spec.sections}
    if train.sampling != "poisson":
        location = _setting_location(sections.get("privacy"), "sampling")
        if location is not None:
            warnings.append(_warning(
                spec,
                location,
                f"sampling = {train.sampling} is not covered by the privacy accounting, which assumes Poisson sampling",
                "remove the setting to use Poisson sampling",
            ))
    if train.allow_data_statistics:
        location = _setting_location(sections.get("data"), "allow_data_statistics")
        if location is not None:
            warnings.append(_warning(
                spec,
                location,
                "preprocessing may read statistics of the private training data, which the privacy guarantee does not cover",
                "use public constants (scale, normalize, l2_normalize) instead",
            ))

    # A layer inside a block that is used several times is warned about once.
    unique = {(w.location.line, w.location.column, w.message): w for w in warnings}
    return tuple(unique[key] for key in sorted(unique))


def _setting_location(section, name: str) -> Location | None:
    if section is None:
        return None
    return next((setting.location for setting in section.settings if setting.name == name), None)
