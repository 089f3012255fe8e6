"""Check a parsed spec: shapes, compliance, and the bound of every parameter tensor."""

from __future__ import annotations

import math
from dataclasses import dataclass

from lipc.check.arguments import end_location, spec_error
from lipc.check.layers import LAYER_KINDS, UNBOUNDED_LAYERS, InputLayer, Layer, check_layer_options, parse_layer
from lipc.check.losses import BINARY_LABELS, REGRESSION_TARGETS, Loss, parse_loss
from lipc.check.training import TrainConfig, parse_train
from lipc.check.warnings import spec_warnings
from lipc.errors import SpecError, SpecErrors, SpecWarning, did_you_mean
from lipc.lang.expand import expand_spec
from lipc.lang.syntax import NetworkDecl, SpecFile

# Relative margin added to every sensitivity, so that float32 rounding in the forward and
# backward passes (input clipping, matrix products) cannot push a real per-example gradient
# norm past its reported bound.
SENSITIVITY_SAFETY_MARGIN = 1e-4

# The maximum number of trainable values in a network: a sanity limit (4 GiB of float32 weights,
# before optimizer state) that turns a mistyped width into an error rather than an
# allocation failure when the network is built.
# NOTE: a network within these limits can still exceed the memory of a small machine, and
# torch then raises its own allocation error when the network is built.
MAX_NETWORK_PARAMETERS = 2**30


@dataclass(frozen=True)
class LayerBound:
    """Bounds at one layer: X_{d-1}, X_d, G_d and the sensitivity Δ of each parameter tensor."""

    index: int
    layer: Layer
    input_norm_bound: float
    output_norm_bound: float
    output_gradient_bound: float
    sensitivities: tuple[tuple[str, float], ...]

    @property
    def name(self) -> str:
        """The name of the layer's submodule in the compiled network."""
        return f"{self.layer.kind}_{self.index}"


@dataclass(frozen=True)
class CheckedSpec:
    """A spec that passed every check, with the bounds that the privacy guarantee rests on."""

    spec: SpecFile
    network_name: str
    layers: tuple[LayerBound, ...]
    loss: Loss
    train: TrainConfig
    warnings: tuple[SpecWarning, ...] = ()

    @property
    def input_layer(self) -> InputLayer:
        return self.layers[0].layer

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.input_layer.input_shape

    @property
    def num_classes(self) -> int:
        """The number of outputs: logits of a classifier, or regression outputs."""
        return self.layers[-1].layer.output_shape[0]

    @property
    def label_kind(self) -> str:
        """The kind of labels that the loss takes: class indices, binary labels or regression targets."""
        return self.loss.labels

    @property
    def lipschitz_bound(self) -> float:
        """Product of the layers' constrained Lipschitz constants: the design's bound."""
        return math.prod(bound.layer.lipschitz_bound for bound in self.layers)

    @property
    def sensitivities(self) -> dict[str, float]:
        """Per-example gradient bound of every parameter tensor, keyed by its name in the module."""
        return {f"{bound.name}.{local}": value for bound in self.layers for local, value in bound.sensitivities}


def _select_network(spec: SpecFile, network_name: str | None) -> NetworkDecl:
    names = [n.name for n in spec.networks]
    if not spec.networks:
        raise spec_error(spec, end_location(spec), "the file defines no network", "add a block 'network NAME { ... }'")
    if network_name is None:
        if len(spec.networks) > 1:
            raise spec_error(
                spec,
                spec.networks[1].location,
                f"the file defines {len(spec.networks)} networks: {', '.join(names)}",
                "pick one with --network NAME",
            )
        return spec.networks[0]
    for network in spec.networks:
        if network.name == network_name:
            return network
    hint = did_you_mean(network_name, names) or f"the file defines {', '.join(names)}"
    raise SpecError(f"{spec.path}: no network named '{network_name}'", hint=hint)


def _single(spec: SpecFile, sections, what: str):
    if len(sections) > 1:
        raise spec_error(spec, sections[1].location, f"the file has more than one '{what}' section", "keep one")
    return sections[0] if sections else None


def _check_layers(spec: SpecFile, network: NetworkDecl, errors: list[SpecError]) -> list[Layer] | None:
    """Check every layer in order; return None when some layer has an error.

    After the first error the shapes that reach later layers are unknown, so later layers
    are checked only for what does not depend on shapes: their kinds and option names.
    """
    if not network.layers or network.layers[0].kind != "input":
        location = network.layers[0].location if network.layers else network.location
        errors.append(spec_error(
            spec,
            location,
            "the network must start with an 'input' layer: it sets the input shape and the clipping radius that every bound starts from",
            "declare the shape and the clipping radius first, as in 'input shape=[64] clip_norm=1.0'",
        ))
        return None

    layers: list[Layer] = []
    shape: tuple[int, ...] | None = ()
    for decl in network.layers:
        try:
            if decl.kind == "input" and layers:
                raise spec_error(spec, decl.location, "a network has exactly one 'input' layer, and it comes first", "remove this one")
            if shape is None:
                check_layer_options(spec, decl)
                continue
            layer = parse_layer(spec, decl, shape)
        except SpecError as error:
            errors.append(error)
            shape = None
            continue
        layers.append(layer)
        shape = layer.output_shape
    return layers if shape is not None else None


def _input_norm_bounds(layers: list[Layer]) -> list[float]:
    """X_{d-1} before each layer, then X_D after the last one, from X_0 = clip_norm."""
    input_norms = [math.inf]
    for layer in layers:
        input_norms.append(layer.output_norm_bound(input_norms[-1]))
    return input_norms


def _propagate_bounds(layers: list[Layer], loss: Loss) -> list[LayerBound]:
    """Compute X_d forward from X_0 = clip_norm, then G_d backward from G_D = L."""
    input_norms = _input_norm_bounds(layers)

    gradient_bounds = [0.0] * len(layers)
    gradient = loss.lipschitz
    for index in reversed(range(len(layers))):
        gradient_bounds[index] = gradient
        gradient *= layers[index].lipschitz_bound

    bounds = []
    for index, layer in enumerate(layers):
        raw = layer.parameter_sensitivities(input_norms[index], gradient_bounds[index])
        sensitivities = tuple((name, value * (1.0 + SENSITIVITY_SAFETY_MARGIN)) for name, value in raw.items())
        bounds.append(LayerBound(index, layer, input_norms[index], input_norms[index + 1], gradient_bounds[index], sensitivities))
    return bounds


def _check_output(spec: SpecFile, layers: list[Layer], loss: Loss) -> None:
    output_shape = layers[-1].output_shape
    if len(output_shape) == 1 and loss.min_outputs <= output_shape[0] and (loss.labels != BINARY_LABELS or output_shape[0] == 1):
        return
    if loss.labels == BINARY_LABELS:
        expected, hint = "a single logit", "end the network with 'dense 1'"
    elif loss.labels == REGRESSION_TARGETS:
        expected, hint = "a vector of outputs", "end the network with a 'dense' layer as wide as the targets"
    else:
        expected, hint = "a vector of at least 2 logits", "end the network with a 'dense' layer as wide as the number of classes"
    raise spec_error(spec, layers[-1].location, f"the network's output must be {expected} for {loss.kind}, but it has shape {list(output_shape)}", hint)


def _check_finite_bounds(spec: SpecFile, bounds: tuple[LayerBound, ...]) -> None:
    """Reject bounds that overflowed float64: an infinite sensitivity calls for infinite noise."""
    for bound in bounds:
        for name, value in bound.sensitivities:
            if not math.isfinite(value):
                raise spec_error(
                    spec,
                    bound.layer.location,
                    f"the sensitivity of {bound.name}.{name} is not a finite number: {value}",
                    "lower clip_norm, bias_norm or the loss's Lipschitz constant (raise its temperature)",
                )
        if not math.isfinite(bound.output_norm_bound):
            raise spec_error(
                spec,
                bound.layer.location,
                f"the bound on the norm of the output of {bound.name} is not a finite number: {bound.output_norm_bound}",
                "lower clip_norm or bias_norm",
            )


def check_spec(spec: SpecFile, network_name: str | None = None) -> CheckedSpec:
    """Check `spec` and compute its bounds.

    Raise SpecErrors listing every independent problem: each layer error (after the first,
    later layers are checked for kinds and option names only), the loss, and each setting.
    """
    expansion = expand_spec(spec, set(LAYER_KINDS) | set(UNBOUNDED_LAYERS))
    spec = expansion.spec
    network = _select_network(spec, network_name)
    errors: list[SpecError] = []

    layers = _check_layers(spec, network, errors)
    loss = None
    try:
        loss_decl = _single(spec, spec.losses, "loss")
        if layers is not None:
            loss = parse_loss(spec, loss_decl, layers[-1].output_shape, _input_norm_bounds(layers)[-1])
    except SpecError as error:
        errors.append(error)

    train = None
    try:
        train = parse_train(spec)
    except SpecError as error:
        errors.append(error)

    if layers is not None and loss is not None:
        try:
            _check_output(spec, layers, loss)
            if not any(layer.has_parameters for layer in layers):
                raise spec_error(spec, network.location, "the network has no trainable layer", "add a 'dense' layer")
            parameters = sum(layer.parameter_elements for layer in layers)
            if parameters > MAX_NETWORK_PARAMETERS:
                raise spec_error(
                    spec,
                    network.location,
                    f"the network is too large: it has {parameters:,} parameters, more than the limit of {MAX_NETWORK_PARAMETERS:,}",
                    "use fewer or narrower layers",
                )
        except SpecError as error:
            errors.append(error)
    if errors:
        raise SpecErrors(errors)

    bounds = tuple(_propagate_bounds(layers, loss))
    _check_finite_bounds(spec, bounds)
    warnings = spec_warnings(spec, bounds, train, expansion)
    return CheckedSpec(spec, network.name, bounds, loss, train, warnings)
