"""The `lipc` command: compile, train and export Lipschitz networks."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

from lipc import __version__
from lipc.errors import LipcError, UsageError

logger = logging.getLogger("lipc")


class _ArgumentParser(argparse.ArgumentParser):
    """Report a bad command line in one line, instead of argparse's usage block."""

    def error(self, message: str) -> None:
        sys.stderr.write(f"lipc: error: {message} (see '{self.prog} --help')\n")
        sys.exit(2)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of at least 1, not {value}")
    return value


def _nonnegative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number of at least 0, not {value}")
    return value


def _float_in(name: str):
    """An argparse type that accepts a float inside the valid range of setting `name`."""
    from lipc.check.training import range_problem

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, not {text!r}") from None
        problem = range_problem(name, value)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value

    return parse


def _build_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(prog="lipc", description="Compile, train and export Lipschitz networks with clipless DP-SGD.")
    parser.add_argument("--version", action="version", version=f"lipc {__version__}")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"], help="logging level (default: info)")
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only, and show no progress bar")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_ArgumentParser)

    compile_parser = commands.add_parser("compile", help="check a .lip file and print its bounds")
    compile_parser.add_argument("spec", help="the .lip file")
    compile_parser.add_argument("--network", help="the network to compile, when the file defines several")
    compile_parser.add_argument("--json", action="store_true", help="print the report as JSON")
    compile_parser.add_argument(
        "--audit",
        action="store_true",
        help="also search, for each parameter tensor, the largest per-example gradient norm at the initial weights, and print it against its bound",
    )

    train_parser = commands.add_parser("train", help="train a network with clipless DP-SGD")
    train_parser.add_argument("spec", help="the .lip file")
    train_parser.add_argument("--network", help="the network to train, when the file defines several")
    train_parser.add_argument("--epsilon", type=_float_in("epsilon"), help="target ε of the (ε, δ) guarantee")
    train_parser.add_argument("--delta", type=_float_in("delta"), help="δ of the (ε, δ) guarantee")
    train_parser.add_argument("--epochs", type=_positive_int, help="number of epochs")
    train_parser.add_argument("--batch-size", type=_positive_int, help="expected batch size B of Poisson sampling")
    train_parser.add_argument("--lr", type=_float_in("lr"), help="learning rate of the optimizer")
    train_parser.add_argument("--seed", type=_nonnegative_int, help="seed of initialisation, sampling and noise")
    train_parser.add_argument("--device", default="auto", help="auto (GPU when present), cpu, cuda or cuda:N (default: auto)")
    train_parser.add_argument("--out", type=Path, help="run folder to create (default: runs/NETWORK-TIME)")
    train_parser.add_argument("--data", help="built-in data set name, or a .npz or .csv file, an MNIST IDX file or folder, or a CIFAR-10 batch folder")
    train_parser.add_argument("--test-data", help="a separate test set, in any format --data accepts")
    train_parser.add_argument("--label-column", help="name of the label column of CSV data (default: label)")

    export_parser = commands.add_parser("export", help="export a trained run to ONNX")
    export_parser.add_argument("run", type=Path, help="the run folder written by 'lipc train'")
    export_parser.add_argument("-o", "--output", type=Path, help="the ONNX file to write (default: RUN/model.onnx)")

    report_parser = commands.add_parser("report", help="write an HTML page and PNG charts describing a trained run")
    report_parser.add_argument("run", type=Path, help="the run folder written by 'lipc train'")
    report_parser.add_argument("-o", "--output", type=Path, help="the folder to write (default: RUN/report); an earlier report there is replaced")
    return parser


def _compile_command(args) -> int:
    import lipc
    from lipc.check.report import bounds_as_dict, format_bounds_table

    compiled = lipc.compile(args.spec, args.network)
    certified = compiled.certified_lipschitz()
    methods = compiled.module.bound_methods()
    audit = _audit(compiled, args) if args.audit else None
    if args.json:
        report = bounds_as_dict(compiled.checked, certified, methods)
        if audit is not None:
            report["audit"] = [dataclasses.asdict(result) for result in audit]
        print(json.dumps(report, indent=2))
    else:
        print(format_bounds_table(compiled.checked, certified, methods))
        if audit is not None:
            from lipc.nn.audit import format_audit

            print(format_audit(audit))
    return 0


def _audit(compiled, args):
    from lipc.errors import BoundViolation
    from lipc.nn.audit import audit_sensitivities

    results = audit_sensitivities(compiled, show_progress=not args.quiet)
    exceeded = [result for result in results if result.worst > result.bound]
    if exceeded:
        names = ", ".join(f"{r.name} ({r.worst:.6g} > {r.bound:.6g})" for r in exceeded)
        raise BoundViolation(f"per-example gradient norms above their bounds: {names}", hint="report this as a lipc bug, with the spec file")
    return results


def _train_command(args) -> int:
    import torch

    import lipc
    from lipc.check import check_spec
    from lipc.lang import parse_file
    from lipc.train.run_folder import default_run_dir
    from lipc.train.trainer import train

    checked = check_spec(parse_file(args.spec), args.network)
    overrides = {
        "epsilon": args.epsilon,
        "delta": args.delta,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "seed": args.seed,
    }
    overrides.update(_data_overrides(args))
    config = dataclasses.replace(checked.train, **{k: v for k, v in overrides.items() if v is not None})
    if args.lr is not None:
        config = dataclasses.replace(config, optimizer=config.optimizer.with_learning_rate(args.lr))

    # Seed before compiling, so that the initial weights are reproducible too.
    torch.manual_seed(config.seed)
    compiled = lipc.compile(args.spec, checked.network_name)
    run_dir = args.out or default_run_dir(compiled.name)
    result = train(compiled, config, run_dir, device=args.device, show_progress=not args.quiet)

    ledger = result.ledger
    certified = ", ".join(f"r={radius:g}: {value:.3f}" for radius, value in result.certified_accuracy.items())
    print(f"trained {compiled.name} on {config.data}: {ledger.dataset_size} examples, {ledger.steps_taken} steps")
    print(
        f"privacy: ε = {ledger.epsilon_spent:.4f}, δ = {ledger.delta:g} ({ledger.accountant.upper()} accountant, "
        f"add-or-remove-one, Poisson sampling q = {ledger.sampling_rate:.4f}, noise multiplier {ledger.noise_multiplier:.4f})"
    )
    print(f"test accuracy: {result.test_accuracy:.4f}")
    print(f"certified accuracy: {certified}")
    print(f"certified Lipschitz constant: {result.lipschitz_constant:.6g}")
    print(f"run folder: {result.run_dir}")
    return 0


def _data_overrides(args) -> dict:
    """Map --data, --test-data and --label-column to train settings; paths are read from the working folder."""
    from lipc.data import is_builtin

    def source(text: str | None) -> str | None:
        if text is None or is_builtin(text):
            return text
        return str(Path(text).expanduser().absolute())

    return {"data": source(args.data), "test_data": source(args.test_data), "label_column": args.label_column}


def _report_command(args) -> int:
    from lipc.report import write_report

    report = write_report(args.run, args.output or args.run / "report")
    print(f"wrote {report.html_path}")
    for chart in report.chart_paths:
        print(f"  {chart}")
    return 0


def _export_command(args) -> int:
    from lipc.export import export_run

    output = args.output or args.run / "model.onnx"
    report = export_run(args.run, output)
    print(f"wrote {report.path}")
    for key, value in report.metadata.items():
        print(f"  {key} = {value}")
    print(f"onnxruntime matches PyTorch on {report.examples_checked} held-out inputs: largest difference {report.max_abs_difference:.3g}")
    return 0


COMMANDS = {"compile": _compile_command, "train": _train_command, "export": _export_command, "report": _report_command}


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    level = logging.WARNING if args.quiet else getattr(logging, args.log_level.upper())
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)
    try:
        return COMMANDS[args.command](args)
    except LipcError as error:
        print(error.format(), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lipc: interrupted; nothing was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
