"""Randomized soundness: random networks of every layer kind and loss, checked like the fixed ones.

By default a few seeds run, so that the generator itself stays tested. For the long run, set
LIPC_SOUNDNESS_SEEDS to the number of random networks, for example:

    LIPC_SOUNDNESS_SEEDS=300 pytest tests/test_soundness_random.py
"""

from __future__ import annotations

import os
import random

import pytest
import torch

import lipc
from lipc.errors import SpecError

from test_soundness import adversarial_inputs, all_labels, assert_within_bounds, lipschitz_ratios, on_sphere, randomise_weights

SEEDS = int(os.environ.get("LIPC_SOUNDNESS_SEEDS", "2"))

ACTIVATIONS = ["groupsort 2", "maxmin", "fullsort", "abs", "relu"]
LOSSES = [
    ("cross_entropy temperature={t}", 3),
    ("hinge margin={m}", 3),
    ("binary_cross_entropy temperature={t}", 1),
    ("hinge_kr alpha={a} margin={m}", 1),
    ("squared_error target_bound={m}", 2),
    ("huber delta={m}", 2),
]


def _convolution(rng: random.Random, dims: int, stride_allowed: bool = True) -> str:
    kind = "conv1d" if dims == 1 else "conv2d"
    padding = rng.choice(["same", "valid", "circular"]) if stride_allowed else "same"
    kernel = rng.choice([1, 2, 3, 4])
    stride = rng.choice([1, 1, 2, 3]) if stride_allowed else 1
    bias = f" bias_norm={rng.choice([0.1, 1.0, 3.0])}" if rng.random() < 0.5 else ""
    constraint = " constraint=bjorck" if rng.random() < 0.3 else ""
    return f"{kind} {rng.choice([2, 4])} kernel={kernel} stride={stride} padding={padding}{bias}{constraint}"


def random_source(seed: int) -> str:
    """A random network: convolutions, activations, pooling and residual blocks, then dense layers."""
    rng = random.Random(seed)
    dims = rng.choice([1, 2])
    size = rng.randint(5, 9)
    shape = [rng.choice([1, 2])] + [size] * dims
    lines = [f"input shape={shape} clip_norm={rng.choice([0.5, 1.0, 4.0])}"]
    for _ in range(rng.randint(1, 2)):
        lines.append(_convolution(rng, dims))
        lines.append(rng.choice(ACTIVATIONS))
        if rng.random() < 0.4:
            alpha = rng.choice([0.1, 0.5, 1.0])
            inner = [_convolution(rng, dims, stride_allowed=False).replace(" 2 kernel", " CHANNELS kernel").replace(" 4 kernel", " CHANNELS kernel"), rng.choice(ACTIVATIONS)]
            lines.append(f"residual alpha={alpha} {{\n" + "\n".join(f"        {line}" for line in inner) + "\n    }")
        if rng.random() < 0.3:
            lines.append(f"{rng.choice(['maxpool', 'avgpool', 'l2pool'])} 2")
        if rng.random() < 0.2:
            lines.append(f"centering {rng.choice(['channel', 'layer'])}")
    ending = rng.choice(["flatten", "global_avgpool", "global_l2pool"])
    lines.append(ending)
    if rng.random() < 0.6:
        lines.append(f"dense {rng.choice([4, 6])} bias_norm={rng.choice([0.1, 1.0])}")
        lines.append(rng.choice(["groupsort 2", "abs", "relu"]))
    loss, outputs = rng.choice(LOSSES)
    lines.append(f"dense {outputs}")
    loss = loss.format(t=rng.choice([0.1, 1.0]), m=rng.choice([0.5, 2.0]), a=rng.choice([0.0, 5.0]))
    return "network random {\n" + "\n".join(f"    {line}" for line in lines) + f"\n}}\nloss {loss}\n"


def random_network(seed: int):
    """The first random spec from `seed` onwards that passes the checker, with residual widths fixed."""
    for attempt in range(100):
        source = random_source(seed * 1000 + attempt)
        # A residual block keeps the channel count of its input: try each width the generator uses.
        for channels in (1, 2, 4):
            try:
                return lipc.compile_source(source.replace("CHANNELS", str(channels))), source
            except SpecError:
                continue
    raise AssertionError(f"no valid random network from seed {seed}")


@pytest.mark.parametrize("seed", range(SEEDS))
def test_random_network_sound(seed):
    compiled, source = random_network(seed)
    generator = torch.Generator().manual_seed(seed)
    randomise_weights(compiled, generator)
    shape, radius = compiled.input_shape, compiled.input_clip_norm

    labels = all_labels(compiled, 64, generator)
    for factor in (1.0, 4.0):
        assert_within_bounds(compiled, on_sphere(64, shape, radius * factor, generator), labels)

    start = on_sphere(16, shape, radius, generator)
    short_labels = all_labels(compiled, 16, generator)
    for target, adversarial in adversarial_inputs(compiled, start, short_labels, steps=10).items():
        assert_within_bounds(compiled, adversarial, short_labels, only=target)

    certified = compiled.certified_lipschitz()
    assert certified <= compiled.checked.lipschitz_bound
    x = on_sphere(256, shape, radius, generator)
    for scale in (1e-3, 0.3):
        y = x + scale * torch.randn(x.shape, generator=generator)
        assert float(lipschitz_ratios(compiled.module, x, y).max()) <= certified, source
