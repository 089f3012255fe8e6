"""Time and memory of one training step: non-private PyTorch, lipc, and Opacus.

For each architecture and batch size, five configurations run, each in its own process,
after warm-up, on synthetic data of the right shape kept on the training device:

1. plain: non-private training of the unconstrained network (the floor);
2. lipc_no_noise: lipc's step with projection but without noise;
3. lipc_dp: lipc's clipless DP-SGD step (Poisson batch, noise, projection);
4. opacus: Opacus DP-SGD with per-example clipping (its default hooks);
5. opacus_ghost: Opacus with ghost clipping.

Run from the repository root, with the benchmark extra installed (pip install '.[benchmark]'):

    python benchmarks/step_cost.py --out benchmarks/results

It writes step_cost.md (a Markdown table with the machine, versions and command) and
step_cost.png, and prints the ratios of medians that the targets are stated in.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

logger = logging.getLogger("step_cost")

CONFIGURATIONS = ("plain", "lipc_no_noise", "lipc_dp", "opacus", "opacus_ghost")

MLP_SOURCE = """\
network mlp {
    input shape=[784] clip_norm=1.0
    dense 512
    groupsort 2
    dense 512
    groupsort 2
    dense 10
}
loss cross_entropy temperature=0.1
"""

# Architecture name -> .lip source. Convolutional networks come from specs/ when present.
ARCHITECTURES = {"mlp": MLP_SOURCE}

# Dataset size used for the sampling rate of the private configurations.
DATASET_SIZE = 60_000


def _peak_rss_bytes() -> int:
    # ru_maxrss is in kilobytes on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _plain_copy(module: nn.Module) -> nn.Module:
    """Copy the network with ordinary torch layers and no constraint: the non-private floor."""
    from lipc.nn.modules import SpectralDense

    layers = []
    for child in module.children():
        if isinstance(child, SpectralDense):
            linear = nn.Linear(child.weight.shape[1], child.weight.shape[0], bias=child.bias is not None)
            with torch.no_grad():
                linear.weight.copy_(child.weight)
            layers.append(linear)
        else:
            layers.append(child)
    return nn.Sequential(*layers)


def _time_steps(step, device: torch.device, warmup: int, steps: int) -> list[float]:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times


def run_worker(architecture: str, batch_size: int, configuration: str, device_name: str, warmup: int, steps: int) -> dict:
    """Measure one configuration in this process; return median step time and peak memory."""
    import lipc
    from lipc.privacy.noise import TensorNoise, allocate_noise
    from lipc.privacy.sampling import poisson_sample
    from lipc.train.trainer import private_step

    device = torch.device(device_name)
    torch.manual_seed(0)
    compiled = lipc.compile_source(ARCHITECTURES[architecture], f"<{architecture}>")
    shape = compiled.input_shape
    inputs = torch.randn(DATASET_SIZE if configuration == "lipc_dp" else batch_size, *shape, device=device)
    labels = torch.randint(compiled.num_classes, (len(inputs),), device=device)
    baseline_memory = torch.cuda.memory_allocated(device) if device.type == "cuda" else _peak_rss_bytes()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    if configuration in ("lipc_no_noise", "lipc_dp"):
        module = compiled.module.to(device)
        parameters = dict(module.named_parameters())
        for parameter in parameters.values():
            parameter.grad = torch.zeros_like(parameter)
        optimizer = torch.optim.Adam(parameters.values(), lr=1e-3)
        generator = torch.Generator(device=device).manual_seed(0)
        if configuration == "lipc_dp":
            allocation = allocate_noise(compiled.sensitivities, 1.0, float(batch_size))
            rate = batch_size / DATASET_SIZE

            def step():
                batch = poisson_sample(DATASET_SIZE, rate, generator, device)
                private_step(compiled, module, optimizer, parameters, allocation, inputs[batch], labels[batch], float(batch_size), generator)
        else:
            silent = {name: TensorNoise(1.0, float("inf"), 0.0) for name in parameters}

            def step():
                private_step(compiled, module, optimizer, parameters, silent, inputs, labels, float(batch_size), generator)

    elif configuration == "plain":
        module = _plain_copy(compiled.module).to(device)
        optimizer = torch.optim.Adam(module.parameters(), lr=1e-3)
        loss_function = nn.CrossEntropyLoss()

        def step():
            optimizer.zero_grad()
            loss_function(module(inputs), labels).backward()
            optimizer.step()

    else:
        from opacus import PrivacyEngine

        module = _plain_copy(compiled.module).to(device)
        optimizer = torch.optim.Adam(module.parameters(), lr=1e-3)
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(inputs, labels), batch_size=batch_size)
        engine = PrivacyEngine()
        ghost = configuration == "opacus_ghost"
        made = engine.make_private(
            module=module,
            optimizer=optimizer,
            data_loader=loader,
            criterion=nn.CrossEntropyLoss(),
            noise_multiplier=1.0,
            max_grad_norm=1.0,
            poisson_sampling=False,
            grad_sample_mode="ghost" if ghost else "hooks",
        )
        if ghost:
            private_module, private_optimizer, criterion, _ = made
        else:
            private_module, private_optimizer, _ = made
            criterion = nn.CrossEntropyLoss()

        def step():
            private_optimizer.zero_grad()
            criterion(private_module(inputs), labels).backward()
            private_optimizer.step()

    times = _time_steps(step, device, warmup, steps)
    if device.type == "cuda":
        peak_memory = torch.cuda.max_memory_allocated(device) - baseline_memory
    else:
        peak_memory = _peak_rss_bytes() - baseline_memory
    return {"median_step_seconds": statistics.median(times), "peak_memory_bytes": max(peak_memory, 0)}


def _load_spec_architectures() -> None:
    specs = Path(__file__).resolve().parent.parent / "specs"
    for name, file in (("mnist_cnn", "mnist_cnn.lip"), ("cifar_cnn", "cifar_resnet.lip")):
        path = specs / file
        if path.is_file():
            ARCHITECTURES[name] = path.read_text()


def _machine() -> str:
    processor = platform.processor() or platform.machine()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores ({processor}), {gpu}"


def _versions() -> str:
    import lipc

    versions = [f"Python {platform.python_version()}", f"torch {torch.__version__}", f"lipc {lipc.__version__}"]
    try:
        import opacus

        versions.append(f"opacus {opacus.__version__}")
    except ImportError:
        versions.append("opacus not installed")
    return ", ".join(versions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architectures", nargs="+", help="architectures to run (default: all available)")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[256, 1024, 4096])
    parser.add_argument("--configurations", nargs="+", default=list(CONFIGURATIONS), choices=CONFIGURATIONS)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before measuring")
    parser.add_argument("--steps", type=int, default=5, help="timed steps; the median is reported")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--worker", nargs=3, metavar=("ARCHITECTURE", "BATCH", "CONFIGURATION"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    _load_spec_architectures()

    if args.worker:
        architecture, batch, configuration = args.worker
        print(json.dumps(run_worker(architecture, int(batch), configuration, args.device, args.warmup, args.steps)))
        return

    command = " ".join([Path(sys.executable).name, *sys.argv])
    architectures = args.architectures or list(ARCHITECTURES)
    results = {}
    for architecture in architectures:
        for batch in args.batch_sizes:
            for configuration in args.configurations:
                worker = [sys.executable, __file__, "--device", args.device, "--warmup", str(args.warmup), "--steps", str(args.steps), "--worker", architecture, str(batch), configuration]
                completed = subprocess.run(worker, capture_output=True, text=True)
                if completed.returncode != 0:
                    last_line = (completed.stderr.strip().splitlines() or ["no output"])[-1]
                    logger.warning("%s batch %d %s failed: %s", architecture, batch, configuration, last_line)
                    results[(architecture, batch, configuration)] = None
                    continue
                results[(architecture, batch, configuration)] = json.loads(completed.stdout.strip().splitlines()[-1])
                logger.info("%s batch %d %s: %.4f s/step", architecture, batch, configuration, results[(architecture, batch, configuration)]["median_step_seconds"])

    args.out.mkdir(parents=True, exist_ok=True)
    table = _markdown(results, architectures, args, command)
    (args.out / "step_cost.md").write_text(table)
    _plot(results, architectures, args, args.out / "step_cost.png")
    print(table)


def _ratio(results, key_a, key_b, field="median_step_seconds") -> str:
    a, b = results.get(key_a), results.get(key_b)
    if not a or not b or not b[field]:
        return "n/a"
    return f"{a[field] / b[field]:.2f}"


def _markdown(results, architectures, args, command) -> str:
    lines = [
        "# Step cost: lipc against non-private training and Opacus",
        "",
        f"- machine: {_machine()}",
        f"- versions: {_versions()}",
        f"- command: `{command}`",
        f"- device: {args.device}; median of {args.steps} steps after {args.warmup} warm-up steps; each configuration in its own process",
        "- memory: peak resident memory above the process's baseline after setup (CPU), or peak allocated GPU memory above the baseline (GPU)",
        "",
        "| architecture | batch | " + " | ".join(f"{c} s/step" for c in args.configurations) + " | (3)/(2) | (3)/(1) | (3)/(4) | mem (3)/(1) |",
        "|---|---|" + "---|" * len(args.configurations) + "---|---|---|---|",
    ]
    for architecture in architectures:
        for batch in args.batch_sizes:
            cells = []
            for configuration in args.configurations:
                result = results.get((architecture, batch, configuration))
                cells.append(f"{result['median_step_seconds']:.4f}" if result else "failed")
            key = lambda c: (architecture, batch, c)  # noqa: E731
            ratios = [
                _ratio(results, key("lipc_dp"), key("lipc_no_noise")),
                _ratio(results, key("lipc_dp"), key("plain")),
                _ratio(results, key("lipc_dp"), key("opacus")),
                _ratio(results, key("lipc_dp"), key("plain"), "peak_memory_bytes"),
            ]
            lines.append(f"| {architecture} | {batch} | " + " | ".join(cells + ratios) + " |")
    return "\n".join(lines) + "\n"


def _plot(results, architectures, args, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(1, len(architectures), figsize=(5 * len(architectures), 4), squeeze=False)
    for axis, architecture in zip(axes[0], architectures):
        for configuration in args.configurations:
            points = [(b, results[(architecture, b, configuration)]["median_step_seconds"]) for b in args.batch_sizes if results.get((architecture, b, configuration))]
            if points:
                axis.plot(*zip(*points), marker="o", label=configuration)
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.set_xlabel("batch size")
        axis.set_ylabel("median seconds per step")
        axis.set_title(architecture)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
