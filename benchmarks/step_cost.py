"""Time and memory of one training step: non-private PyTorch, lipc, and Opacus.

For each architecture and batch size, five configurations run, each in its own process,
after warm-up, on synthetic data of the right shape kept on the training device:

1. plain: non-private training of the unconstrained network, built from torch.nn layers (the floor);
2. lipc_no_noise: lipc's step with projection but without noise;
3. lipc_dp: lipc's clipless DP-SGD step (noise and projection);
4. opacus: Opacus DP-SGD with per-example clipping (its default hooks);
5. opacus_ghost: Opacus with ghost clipping.

Every configuration draws its batch from the same in-memory data set on the device: the lipc
configurations by a Poisson mask (expected size B), the others as B indices drawn uniformly.
As `lipc train` does, lipc runs a Poisson batch larger than B in passes of at most B examples.
So (3)/(2) measures the noise alone, and (3)/(1) the noise and the projection.

Run from the repository root, with the benchmark extra installed (pip install '.[benchmark]'):

    python benchmarks/step_cost.py --out benchmarks/results

It writes step_cost.md (tables with the machine, the versions and the command), step_cost.png
and step_cost.json (the raw results), and prints the ratios of medians that the targets are
stated in. A run limited to some architectures, batch sizes or configurations keeps the stored results
of the others, and the page lists the command of each run.
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
import tempfile
import time
from dataclasses import asdict, dataclass, replace
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

SPECS = Path(__file__).resolve().parent.parent / "specs"
# Architecture name -> .lip source, or the spec file it comes from.
ARCHITECTURES = {"mlp": MLP_SOURCE, "mnist_cnn": SPECS / "mnist_cnn.lip", "cifar_cnn": SPECS / "cifar_resnet.lip"}

# Size of the synthetic data set that batches are drawn from (that of MNIST's training set).
DATASET_SIZE = 60_000
NOISE_MULTIPLIER = 1.0
LEARNING_RATE = 1e-3
OPACUS_MAX_GRAD_NORM = 1.0

# Configurations left out of a default run, with the reason the results page gives.
SKIPPED = {
    ("cifar_cnn", 4096, "opacus"): (
        "left out of the default run to keep it under an hour (Opacus took 12.7 s per step at batch 1024 "
        "on an idle 2-core CPU, and its per-example gradients grow with the batch); --no-skip runs it"
    ),
}

# Targets, as ratios of medians.
NOISE_TARGET = 1.05
PLAIN_TARGET = 1.5
PLAIN_TARGET_BATCH = 1024
OPACUS_TARGETS = {"mlp": 0.2, "mnist_cnn": 0.5, "cifar_cnn": 0.5}
MEMORY_TARGET = 1.1


@dataclass(frozen=True)
class Measurement:
    """Result of one configuration: median step time, timed steps, peak memory above the baseline."""

    median_step_seconds: float
    timed_steps: int
    peak_memory_bytes: int
    projection_seconds: float | None = None
    noise_seconds: float | None = None
    # 1-minute load average of the machine when the measurement ended: above the number of
    # cores, other processes competed for the CPU during the steps.
    load_average: float | None = None


def _peak_rss_bytes() -> int:
    # ru_maxrss is in kilobytes on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _status_bytes(field: str) -> int:
    """Read a memory field of /proc/self/status (VmRSS, VmHWM), in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(f"{field} not found in /proc/self/status")


def _reset_peak_rss() -> bool:
    """Reset the process's peak resident memory to its current value (Linux 4.0 and later)."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


# glibc serves allocations of at least this many bytes with their own mmap and returns them
# to the system when they are freed. Without a fixed threshold, glibc raises it as large blocks
# are freed and then keeps freed blocks, so the resident size of a process depends on its
# allocation history rather than on the memory its step needs.
MEMORY_PASS_MMAP_THRESHOLD = 65536


class PlainResidual(nn.Module):
    """y = (1 − α)·x + α·f(x) with an unconstrained f."""

    def __init__(self, alpha: float, inner: nn.Module) -> None:
        super().__init__()
        self.alpha = alpha
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (1.0 - self.alpha) * x + self.alpha * self.inner(x)


def _plain_convolution(layer: nn.Module) -> nn.Module:
    """nn.Conv1d or nn.Conv2d with the layer's weights and padding: its own, or a padding module before it."""
    spatial = layer.weight.dim() - 2
    convolution_class = nn.Conv1d if spatial == 1 else nn.Conv2d
    convolution = convolution_class(
        layer.weight.shape[1], layer.weight.shape[0], tuple(layer.weight.shape[2:]), stride=layer.stride,
        padding=layer._builtin_padding, bias=layer.bias is not None,
    )
    with torch.no_grad():
        convolution.weight.copy_(layer.weight)
        if layer.bias is not None:
            convolution.bias.copy_(layer.bias)
    if not any(layer._pad):
        return convolution
    if layer.circular:
        pad_class = nn.CircularPad1d if spatial == 1 else nn.CircularPad2d
        return nn.Sequential(pad_class(layer._pad), convolution)
    pad_class = nn.ConstantPad1d if spatial == 1 else nn.ConstantPad2d
    return nn.Sequential(pad_class(layer._pad, 0.0), convolution)


def plain_copy(module: nn.Module) -> nn.Module:
    """Copy the network with torch.nn layers and no constraint, which Opacus supports: the non-private floor."""
    from lipc.nn.modules import LipschitzConv, LipschitzSequential, Residual, SpectralDense

    if isinstance(module, SpectralDense):
        linear = nn.Linear(module.weight.shape[1], module.weight.shape[0], bias=module.bias is not None)
        with torch.no_grad():
            linear.weight.copy_(module.weight)
            if module.bias is not None:
                linear.bias.copy_(module.bias)
        return linear
    if isinstance(module, LipschitzConv):
        return _plain_convolution(module)
    if isinstance(module, Residual):
        return PlainResidual(module.alpha, plain_copy(module.inner))
    if isinstance(module, LipschitzSequential):
        return nn.Sequential(*(plain_copy(child) for child in module))
    if any(True for _ in module.parameters()):
        raise TypeError(f"no plain equivalent for layer {type(module).__name__} with parameters")
    return module


def _time_steps(step, device: torch.device, warmup: int, min_steps: int, max_steps: int, time_budget: float) -> list[float]:
    """Run `warmup` untimed steps, then timed ones: at least `min_steps`, more while under `time_budget` seconds."""
    for _ in range(warmup):
        step()
    times: list[float] = []
    while len(times) < max_steps and (len(times) < min_steps or sum(times) < time_budget):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def _median_call_seconds(function, device: torch.device, repeats: int) -> float:
    return statistics.median(_time_steps(function, device, 0, repeats, repeats, 0.0))


def _compile(architecture: str):
    import lipc

    source = ARCHITECTURES[architecture]
    if isinstance(source, Path):
        return lipc.compile(source)
    return lipc.compile_source(source, f"<{architecture}>")


def run_worker(architecture: str, batch_size: int, configuration: str, device_name: str, timing: dict, memory_pass: bool = False) -> Measurement:
    """Measure one configuration in this process: its step time, or with `memory_pass` its peak CPU memory."""
    from lipc.privacy.noise import add_noise_, allocate_noise
    from lipc.privacy.sampling import poisson_sample
    from lipc.train.trainer import accumulate_batch_gradients, parameter_sizes, private_step

    device = torch.device(device_name)
    torch.manual_seed(0)
    compiled = _compile(architecture)
    generator = torch.Generator(device=device).manual_seed(0)
    inputs = torch.randn(DATASET_SIZE, *compiled.input_shape, device=device, generator=generator)
    labels = torch.randint(compiled.num_classes, (DATASET_SIZE,), device=device, generator=generator)
    expected_batch_size = float(batch_size)
    sampling_rate = batch_size / DATASET_SIZE

    def uniform_batch() -> torch.Tensor:
        return torch.randint(DATASET_SIZE, (batch_size,), device=device, generator=generator)

    # Batches come from a generator of their own, so the two lipc configurations draw the same
    # sequence of Poisson batches: step times vary with the batch size, and (3)/(2) then
    # compares equal batches. The noise is drawn from `generator`.
    sampling_generator = torch.Generator(device=device).manual_seed(1)

    module = compiled.module.to(device)
    module.project_()
    projection_seconds = noise_seconds = None
    if configuration in ("lipc_no_noise", "lipc_dp"):
        parameters = dict(module.named_parameters())
        optimizer = torch.optim.Adam(parameters.values(), lr=LEARNING_RATE)
        allocation = allocate_noise(compiled.sensitivities, NOISE_MULTIPLIER, expected_batch_size, "global", parameter_sizes(module))

        if configuration == "lipc_dp":

            def step():
                batch = poisson_sample(DATASET_SIZE, sampling_rate, sampling_generator, device)
                private_step(
                    compiled, module, optimizer, parameters, allocation, inputs[batch], labels[batch], expected_batch_size, generator, batch_size
                )

        else:

            def step():
                # private_step without add_noise_: the same data path, loss and projection.
                batch = poisson_sample(DATASET_SIZE, sampling_rate, sampling_generator, device)
                optimizer.zero_grad(set_to_none=True)
                accumulate_batch_gradients(compiled, module, inputs[batch], labels[batch], expected_batch_size, batch_size)
                optimizer.step()
                module.project_()

    elif configuration == "plain":
        module = plain_copy(module).to(device)
        optimizer = torch.optim.Adam(module.parameters(), lr=LEARNING_RATE)
        loss_function = nn.CrossEntropyLoss()

        def step():
            batch = uniform_batch()
            optimizer.zero_grad()
            loss_function(module(inputs[batch]), labels[batch]).backward()
            optimizer.step()

    else:
        from opacus import PrivacyEngine

        module = plain_copy(module).to(device)
        optimizer = torch.optim.Adam(module.parameters(), lr=LEARNING_RATE)
        # make_private reads the expected batch size from a data loader; batches are drawn below.
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(inputs[:batch_size], labels[:batch_size]), batch_size=batch_size)
        ghost = configuration == "opacus_ghost"
        private_objects = PrivacyEngine().make_private(
            module=module,
            optimizer=optimizer,
            data_loader=loader,
            criterion=nn.CrossEntropyLoss(),
            noise_multiplier=NOISE_MULTIPLIER,
            max_grad_norm=OPACUS_MAX_GRAD_NORM,
            poisson_sampling=False,
            grad_sample_mode="ghost" if ghost else "hooks",
        )
        if ghost:
            private_module, private_optimizer, criterion, _ = private_objects
        else:
            private_module, private_optimizer, _ = private_objects
            criterion = nn.CrossEntropyLoss()

        def step():
            batch = uniform_batch()
            private_optimizer.zero_grad()
            criterion(private_module(inputs[batch]), labels[batch]).backward()
            private_optimizer.step()

    if memory_pass:
        # Peak resident memory above the resident size after setup; the allocator is set up by
        # the parent process (MEMORY_PASS_MMAP_THRESHOLD).
        baseline_memory = _status_bytes("VmRSS")
        if _reset_peak_rss():
            _time_steps(step, device, timing["warmup"], 1, 1, 0.0)
            peak_memory = _status_bytes("VmHWM") - baseline_memory
        else:
            baseline_memory = _peak_rss_bytes()
            _time_steps(step, device, timing["warmup"], 1, 1, 0.0)
            peak_memory = _peak_rss_bytes() - baseline_memory
        return Measurement(0.0, 0, max(peak_memory, 0))

    baseline_memory = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = _time_steps(step, device, timing["warmup"], timing["min_steps"], timing["max_steps"], timing["time_budget"])
    # On the CPU, a separate memory pass measures the memory (see `_run_configuration`).
    peak_memory = torch.cuda.max_memory_allocated(device) - baseline_memory if device.type == "cuda" else 0

    if configuration == "lipc_dp":
        # The two parts of a step that a non-private step does not have, timed on their own.
        projection_seconds = _median_call_seconds(module.project_, device, len(times))
        noise_seconds = _median_call_seconds(lambda: add_noise_(parameters, allocation, generator), device, len(times))
    return Measurement(statistics.median(times), len(times), max(peak_memory, 0), projection_seconds, noise_seconds, os.getloadavg()[0])


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


def _run_worker_process(architecture: str, batch: int, configuration: str, args, memory_pass: bool) -> tuple[Measurement | None, str]:
    worker = [
        sys.executable, __file__, "--device", args.device, "--warmup", str(args.warmup), "--min-steps", str(args.min_steps),
        "--max-steps", str(args.max_steps), "--time-budget", str(args.time_budget), "--worker", architecture, str(batch), configuration,
    ]
    environment = dict(os.environ)
    if args.threads:
        worker += ["--threads", str(args.threads)]
        # BLAS libraries outside torch (scipy's, for ARPACK) read these at start.
        environment.update({name: str(args.threads) for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
    if memory_pass:
        worker.append("--memory-pass")
        environment["MALLOC_MMAP_THRESHOLD_"] = str(MEMORY_PASS_MMAP_THRESHOLD)
    completed = subprocess.run(worker, capture_output=True, text=True, env=environment)
    if completed.returncode != 0:
        last_line = (completed.stderr.strip().splitlines() or [f"exit code {completed.returncode}, no output"])[-1]
        return None, f"failed: {last_line}"
    return Measurement(**json.loads(completed.stdout.strip().splitlines()[-1])), ""


def _run_configuration(architecture: str, batch: int, configuration: str, args) -> tuple[Measurement | None, str]:
    """Run one configuration in fresh processes; return its measurement, or None and the reason.

    On the CPU the step time comes from one process and the peak memory from a second one.
    The second takes the warm-up steps and one more with glibc's mmap threshold fixed, so that
    freed blocks go back to the system and the resident size follows the memory in use. The
    timing process keeps the default, because the fixed threshold adds a page fault to every
    large allocation.
    """
    measurement, failure = _run_worker_process(architecture, batch, configuration, args, memory_pass=False)
    if measurement is None or args.device != "cpu":
        return measurement, failure
    memory, failure = _run_worker_process(architecture, batch, configuration, args, memory_pass=True)
    if memory is None:
        return None, f"memory pass {failure}"
    return replace(measurement, peak_memory_bytes=memory.peak_memory_bytes), ""


def _key(architecture: str, batch: int, configuration: str) -> str:
    return f"{architecture}/{batch}/{configuration}"


def _load_stored(path: Path, args) -> tuple[dict, list[dict]]:
    """Results and runs stored by earlier runs on the same device, less the cells this run measures again."""
    if not path.is_file():
        return {}, []
    try:
        stored = json.loads(path.read_text())
    except json.JSONDecodeError:
        logger.warning("ignoring %s: not valid JSON", path)
        return {}, []
    if stored.get("device") != args.device:
        return {}, []
    remeasured = {_key(a, b, c) for a in args.architectures for b in args.batch_sizes for c in args.configurations}
    results = {key: value for key, value in stored.get("results", {}).items() if key not in remeasured}
    return results, stored.get("runs", [])


def _write_atomically(path: Path, content: str | bytes) -> None:
    with tempfile.NamedTemporaryFile("wb", dir=path.parent, prefix=f".{path.name}.", delete=False) as file:
        file.write(content.encode() if isinstance(content, str) else content)
    os.replace(file.name, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architectures", nargs="+", choices=list(ARCHITECTURES), default=list(ARCHITECTURES), help="architectures to run")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[256, 1024, 4096])
    parser.add_argument("--configurations", nargs="+", default=list(CONFIGURATIONS), choices=CONFIGURATIONS)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps before measuring")
    parser.add_argument("--min-steps", type=int, default=3, help="timed steps always taken; the median is reported")
    parser.add_argument("--max-steps", type=int, default=20, help="most timed steps")
    parser.add_argument("--time-budget", type=float, default=10.0, help="seconds of timed steps after which no step beyond --min-steps starts")
    parser.add_argument("--threads", type=int, help="CPU threads of each worker (torch, OpenMP and BLAS); default: torch's own choice")
    parser.add_argument("--no-skip", action="store_true", help="also run the configurations left out by default")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--worker", nargs=3, metavar=("ARCHITECTURE", "BATCH", "CONFIGURATION"), help=argparse.SUPPRESS)
    parser.add_argument("--memory-pass", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    if args.worker:
        if args.threads:
            torch.set_num_threads(args.threads)
        architecture, batch, configuration = args.worker
        timing = {"warmup": args.warmup, "min_steps": args.min_steps, "max_steps": args.max_steps, "time_budget": args.time_budget}
        print(json.dumps(asdict(run_worker(architecture, int(batch), configuration, args.device, timing, args.memory_pass))))
        return
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device} requested, but no CUDA GPU is available; use --device cpu")

    command = " ".join(["python", *sys.argv])
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.out / "step_cost.json"
    results, runs = _load_stored(json_path, args)

    started = time.perf_counter()
    for architecture in args.architectures:
        for batch in args.batch_sizes:
            for configuration in args.configurations:
                key = _key(architecture, batch, configuration)
                reason = SKIPPED.get((architecture, batch, configuration))
                if reason and not args.no_skip:
                    results[key] = {"skipped": reason}
                    logger.info("%s: skipped (%s)", key, reason)
                    continue
                measurement, failure = _run_configuration(architecture, batch, configuration, args)
                if measurement is None:
                    results[key] = {"skipped": failure}
                    logger.warning("%s %s", key, failure)
                    continue
                results[key] = asdict(measurement)
                logger.info("%s: %.4f s/step over %d steps", key, measurement.median_step_seconds, measurement.timed_steps)

    runs.append({
        "command": command,
        "architectures": args.architectures,
        "batch_sizes": args.batch_sizes,
        "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "wall_seconds": time.perf_counter() - started,
    })
    run = {
        "device": args.device,
        "machine": _machine(),
        "versions": _versions(),
        "settings": {"threads": args.threads or torch.get_num_threads(), "warmup": args.warmup, "min_steps": args.min_steps, "max_steps": args.max_steps, "time_budget": args.time_budget},
        "runs": runs,
        "results": results,
    }
    _write_atomically(json_path, json.dumps(run, indent=1) + "\n")
    architectures = [name for name in ARCHITECTURES if any(key.startswith(f"{name}/") for key in results)]
    batch_sizes = sorted({int(key.split("/")[1]) for key in results})
    page = markdown_page(run, architectures, batch_sizes)
    _write_atomically(args.out / "step_cost.md", page)
    plot(results, architectures, batch_sizes, args.out / "step_cost.png", f"{run['machine']}; {run['versions']}; commands in step_cost.md")
    print(ratio_table(results, architectures, batch_sizes))


def _seconds(results: dict, architecture: str, batch: int, configuration: str, field: str = "median_step_seconds") -> float | None:
    result = results.get(_key(architecture, batch, configuration))
    if not result or "skipped" in result or result.get(field) is None:
        return None
    return result[field]


def _ratio_cell(numerator: float | None, denominator: float | None, target: float | None) -> str:
    if numerator is None or not denominator:
        return "n/a"
    ratio = numerator / denominator
    if target is None:
        return f"{ratio:.2f}"
    return f"{ratio:.2f} {'met' if ratio <= target else 'missed'}"


def ratio_table(results: dict, architectures: list[str], batch_sizes: list[int]) -> str:
    """Markdown table of the target ratios, each marked met or missed where a target applies."""
    lines = [
        "| architecture | batch | (3)/(2) noise, ≤ 1.05 | (3)/(1) vs plain, ≤ 1.5 at 1024 | (3)/(4) vs Opacus | (3)/(5) vs ghost | memory (3)/(1), ≤ 1.1 | projection share of (3) | noise share of (3) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for architecture in architectures:
        for batch in batch_sizes:
            def value(configuration, field="median_step_seconds"):
                return _seconds(results, architecture, batch, configuration, field)

            private = value("lipc_dp")
            plain_target = PLAIN_TARGET if batch == PLAIN_TARGET_BATCH else None
            opacus_target = OPACUS_TARGETS.get(architecture) if batch == PLAIN_TARGET_BATCH else None
            cells = [
                _ratio_cell(private, value("lipc_no_noise"), NOISE_TARGET),
                _ratio_cell(private, value("plain"), plain_target),
                _ratio_cell(private, value("opacus"), opacus_target),
                _ratio_cell(private, value("opacus_ghost"), None),
                _ratio_cell(value("lipc_dp", "peak_memory_bytes"), value("plain", "peak_memory_bytes"), MEMORY_TARGET),
                _ratio_cell(value("lipc_dp", "projection_seconds"), private, None),
                _ratio_cell(value("lipc_dp", "noise_seconds"), private, None),
            ]
            lines.append(f"| {architecture} | {batch} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _measurement_table(results: dict, architectures: list[str], batch_sizes: list[int]) -> str:
    lines = [
        "| architecture | batch | " + " | ".join(f"({i}) {c}" for i, c in enumerate(CONFIGURATIONS, 1)) + " |",
        "|---|---|" + "---|" * len(CONFIGURATIONS),
    ]
    for architecture in architectures:
        for batch in batch_sizes:
            cells = []
            for configuration in CONFIGURATIONS:
                result = results.get(_key(architecture, batch, configuration))
                if not result:
                    cells.append("not run")
                elif "skipped" in result:
                    cells.append("skipped")
                else:
                    megabytes = result["peak_memory_bytes"] / 2**20
                    cells.append(f"{result['median_step_seconds'] * 1e3:.1f} ms, {megabytes:.0f} MiB ({result['timed_steps']} timed)")
            lines.append(f"| {architecture} | {batch} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def markdown_page(run: dict, architectures: list[str], batch_sizes: list[int]) -> str:
    """Results page: the setting, the ratios against their targets, the measurements and what was skipped."""
    results = run["results"]
    settings = run["settings"]
    skipped = [f"- {key}: {result['skipped']}" for key, result in results.items() if "skipped" in result]
    loads = [result["load_average"] for result in results.values() if result.get("load_average") is not None]
    load_range = f"{min(loads):.1f} to {max(loads):.1f}" if loads else "not recorded"
    lines = [
        "# Step cost: lipc against non-private training and Opacus",
        "",
        "How to read these numbers, and why some targets miss: [README.md](README.md).",
        "",
        f"- machine: {run['machine']}",
        f"- versions: {run['versions']}",
        *(f"- command: `{entry['command']}` (finished {entry['finished']}, {entry['wall_seconds'] / 60:.0f} min)" for entry in run["runs"]),
        f"- device: {run['device']}; the same script runs on a GPU with `--device cuda`, which was not run here",
        f"- each configuration runs in its own process (the last command's settings; each command above shows its own): "
        f"CPU threads {settings['threads']}, warm-up steps {settings['warmup']}, then at least {settings['min_steps']} timed steps, "
        f"more while under {settings['time_budget']:g} s, at most {settings['max_steps']}; the median is reported",
        "- memory (CPU): peak resident memory of the warm-up steps and one more step, above the resident size after setup "
        "(data set and model included in the baseline), measured in a separate process in which glibc returns each freed "
        f"block of {MEMORY_PASS_MMAP_THRESHOLD // 1024} KiB or more to the system (MALLOC_MMAP_THRESHOLD_), "
        "so that it follows the memory in use; (GPU) peak allocated memory above the baseline",
        f"- data: {DATASET_SIZE} synthetic examples of the network's input shape on the device; Adam at learning rate {LEARNING_RATE:g}; "
        f"noise multiplier {NOISE_MULTIPLIER:g}; Opacus clips at {OPACUS_MAX_GRAD_NORM:g}",
        f"- load: the 1-minute load average at the end of each timing ranged from {load_range} on {os.cpu_count()} cores; "
        "the worker itself counts for about one per thread, and more means that other processes competed for the CPU",
        "",
        "## Ratios of median step times",
        "",
        ratio_table(results, architectures, batch_sizes),
        "Projection share and noise share: `module.project_()` and the noise draw, each timed alone after the steps, over the step time of (3).",
        "",
        "## Measurements",
        "",
        "Median time per step, peak memory above the baseline, and the number of timed steps.",
        "",
        _measurement_table(results, architectures, batch_sizes),
    ]
    if skipped:
        lines += ["## Not measured", "", *skipped, ""]
    return "\n".join(lines)


def plot(results: dict, architectures: list[str], batch_sizes: list[int], path: Path, caption: str) -> None:
    """Time per step and peak memory against the batch size, one column per architecture, captioned with the machine."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(2, len(architectures), figsize=(5 * len(architectures), 8), squeeze=False)
    for column, architecture in enumerate(architectures):
        for row, (field, label, scale) in enumerate((("median_step_seconds", "median seconds per step", 1.0), ("peak_memory_bytes", "peak memory (MiB)", 2**-20))):
            axis = axes[row][column]
            for configuration in CONFIGURATIONS:
                points = [(batch, value * scale) for batch in batch_sizes if (value := _seconds(results, architecture, batch, configuration, field))]
                if points:
                    axis.plot(*zip(*points), marker="o", label=configuration)
            axis.set_xscale("log", base=2)
            axis.set_yscale("log")
            axis.set_xlabel("batch size")
            axis.set_ylabel(label)
            axis.set_title(architecture)
            axis.legend(fontsize="small")
    figure.suptitle(caption, fontsize="small")
    figure.tight_layout()
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".png", delete=False) as file:
        figure.savefig(file, dpi=100)
    os.replace(file.name, path)


if __name__ == "__main__":
    main()
