"""The `lipc` command: compile, train and export Lipschitz networks."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
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
    """Build an argparse type that accepts a float inside the valid range of setting `name`."""
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
    _add_privacy_target_options(compile_parser, "with a privacy target, also print the noise each parameter tensor will get: ")
    compile_parser.add_argument(
        "--emit-python",
        metavar="PATH",
        help="also write a Python module that builds the network, with its input shape, clipping radius, "
        "Lipschitz bound, sensitivities and loss, to PATH ('-' prints it instead of the report)",
    )

    train_parser = commands.add_parser("train", help="train a network with clipless DP-SGD")
    train_parser.add_argument("spec", nargs="?", help="the .lip file (not with --resume)")
    train_parser.add_argument("--network", help="the network to train, when the file defines several")
    train_parser.add_argument("--epsilon", type=_float_in("epsilon"), help="target ε of the (ε, δ) guarantee")
    train_parser.add_argument("--delta", type=_float_in("delta"), help="δ of the (ε, δ) guarantee")
    train_parser.add_argument("--epochs", type=_positive_int, help="number of epochs")
    train_parser.add_argument("--batch-size", type=_positive_int, help="expected batch size B of Poisson sampling")
    train_parser.add_argument("--lr", type=_float_in("lr"), help="learning rate of the optimizer")
    train_parser.add_argument("--seed", type=_nonnegative_int, help="seed of initialisation, sampling and noise")
    train_parser.add_argument("--device", help="auto (GPU when present), cpu, cuda or cuda:N (default: the spec's, else auto)")
    train_parser.add_argument("--out", type=Path, help="run folder to create (default: runs/NETWORK-TIME)")
    train_parser.add_argument("--data", help="built-in data set name, or a .npz or .csv file, an MNIST IDX file or folder, or a CIFAR-10 batch folder")
    train_parser.add_argument("--test-data", help="a separate test set, in any format --data accepts")
    train_parser.add_argument("--label-column", help="name of the label column of CSV data (default: label)")
    _add_privacy_method_options(train_parser)
    train_parser.add_argument("--resume", type=Path, metavar="RUN", help="continue the unfinished run in folder RUN, with its settings, step count and ledger")

    privacy_parser = commands.add_parser(
        "privacy",
        help="plan privacy before training: noise multiplier, ε, or the largest number of epochs",
        description="Answer one planning question. With --epsilon: the noise multiplier for that ε. With --noise-multiplier: "
        "the ε it spends. With both: the largest number of epochs within that ε. A .lip file supplies the data set size and "
        "the defaults of its train, data and privacy sections; the options override them.",
    )
    privacy_parser.add_argument("spec", nargs="?", help="a .lip file whose sections and data set supply defaults")
    privacy_parser.add_argument("--network", help="the network, when the file defines several")
    privacy_parser.add_argument("--dataset-size", type=_positive_int, help="number of training examples N")
    privacy_parser.add_argument("--batch-size", type=_positive_int, help="expected batch size B of Poisson sampling (q = B/N)")
    privacy_parser.add_argument("--epochs", type=_positive_int, help="number of epochs, each of round(N/B) steps")
    privacy_parser.add_argument("--epsilon", type=_float_in("epsilon"), help="target ε")
    privacy_parser.add_argument("--noise-multiplier", type=_float_in("noise_multiplier"), help="noise multiplier σ (noise standard deviation over sensitivity)")
    privacy_parser.add_argument("--delta", type=_float_in("delta"), help="δ of the (ε, δ) guarantee (default: 1e-5, or the spec's)")
    privacy_parser.add_argument("--accountant", choices=["rdp", "pld"], help="dp-accounting accountant (default: rdp, or the spec's)")
    privacy_parser.add_argument("--json", action="store_true", help="print the result as JSON")

    export_parser = commands.add_parser("export", help="export a trained run to ONNX")
    export_parser.add_argument("run", type=Path, help="the run folder written by 'lipc train'")
    export_parser.add_argument("-o", "--output", type=Path, help="the ONNX file to write (default: RUN/model.onnx)")

    report_parser = commands.add_parser("report", help="write an HTML page and PNG charts describing a trained run")
    report_parser.add_argument("run", type=Path, help="the run folder written by 'lipc train'")
    report_parser.add_argument("-o", "--output", type=Path, help="the folder to write (default: RUN/report); an earlier report there is replaced")

    fmt_parser = commands.add_parser(
        "fmt",
        help="rewrite .lip files in canonical layout, keeping their comments",
        description="Rewrite each .lip file in place in canonical layout, keeping its comments. A folder means "
        "the .lip files under it, and '-' formats standard input to standard output. The names of changed files "
        "go to standard error; a file that does not parse is reported and left unchanged.",
    )
    fmt_parser.add_argument("paths", nargs="+", metavar="FILE", help="a .lip file, a folder, or '-' for standard input")
    fmt_parser.add_argument("--check", action="store_true", help="write nothing, but list the files that would change and exit with status 1 if any would")
    fmt_parser.add_argument("--diff", action="store_true", help="write nothing, but print a unified diff of the changes on standard output")
    return parser


def _add_privacy_method_options(parser: argparse.ArgumentParser, sampling: bool = True) -> None:
    from lipc.privacy.noise import NOISE_STRATEGIES

    parser.add_argument("--noise", choices=NOISE_STRATEGIES, help="how noise is split across parameter tensors (default: the spec's)")
    parser.add_argument("--accountant", choices=["rdp", "pld"], help="dp-accounting accountant: rdp or pld (default: the spec's)")
    if not sampling:
        return
    parser.add_argument(
        "--sampling", choices=["poisson", "shuffle"],
        help="poisson (default; the only sampling the reported ε covers) or shuffle (fixed-size batches; ε is then labelled as not covering the run)",
    )


def _add_privacy_target_options(parser: argparse.ArgumentParser, prefix: str) -> None:
    parser.add_argument("--epsilon", type=_float_in("epsilon"), help=prefix + "target ε")
    parser.add_argument("--delta", type=_float_in("delta"), help="δ of the (ε, δ) guarantee (default: the spec's)")
    parser.add_argument("--epochs", type=_positive_int, help="number of epochs (default: the spec's)")
    parser.add_argument("--batch-size", type=_positive_int, help="expected batch size B (default: the spec's)")
    _add_privacy_method_options(parser, sampling=False)


def _config_with_overrides(config, args):
    """Apply the command-line options that were given to a TrainConfig."""
    names = ("epsilon", "delta", "epochs", "batch_size", "seed", "noise", "accountant", "sampling")
    overrides = {name: getattr(args, name, None) for name in names}
    if hasattr(args, "data"):
        overrides.update(_data_overrides(args))
    config = dataclasses.replace(config, **{k: v for k, v in overrides.items() if v is not None})
    if getattr(args, "lr", None) is not None:
        config = dataclasses.replace(config, optimizer=config.optimizer.with_learning_rate(args.lr))
    return config


def _compile_privacy(compiled, args) -> tuple[dict, str] | None:
    """With --epsilon, the noise each parameter tensor will get, as JSON and as a table."""
    from lipc.privacy.noise import allocate_noise, format_noise_table
    from lipc.privacy.planning import noise_multiplier_for_epsilon
    from lipc.train.data import load_training_data
    from lipc.train.trainer import parameter_sizes

    config = _config_with_overrides(compiled.checked.train, args)
    if config.epsilon is None:
        return None
    dataset_size = len(load_training_data(config, compiled.input_shape, compiled.num_classes).train_labels)
    plan = noise_multiplier_for_epsilon(config.epsilon, config.delta, dataset_size, config.batch_size, config.epochs, config.accountant)
    sizes = parameter_sizes(compiled.module)
    allocation = allocate_noise(compiled.sensitivities, plan.noise_multiplier, float(config.batch_size), config.noise, sizes)
    as_dict = {
        **dataclasses.asdict(plan),
        "noise_strategy": config.noise,
        "tensors": {name: dataclasses.asdict(noise) for name, noise in allocation.items()},
    }
    text = f"privacy plan: {plan.describe()}\nnoise per tensor ({config.noise} strategy):\n{format_noise_table(allocation, sizes)}"
    return as_dict, text


def _print_warnings(checked) -> None:
    for warning in checked.warnings:
        print(warning.format(), file=sys.stderr)


def _warning_as_dict(warning) -> dict:
    location = warning.location
    return {"path": location.path, "line": location.line, "column": location.column, "message": warning.message, "hint": warning.hint}


def _compile_command(args) -> int:
    import lipc
    from lipc.check.report import bounds_as_dict, format_bounds_table

    _check_emit_python(args)
    compiled = lipc.compile(args.spec, args.network)
    _print_warnings(compiled.checked)
    if args.emit_python == "-":
        sys.stdout.write(_python_source(compiled))
        return 0

    certified = compiled.certified_lipschitz()
    methods = compiled.module.bound_methods()
    audit = _audit(compiled, args) if args.audit else None
    privacy = _compile_privacy(compiled, args)
    if args.emit_python is not None:
        from lipc.export.python_source import write_python_source

        write_python_source(_python_source(compiled), Path(args.emit_python))
    if args.json:
        report = bounds_as_dict(compiled.checked, certified, methods)
        report["warnings"] = [_warning_as_dict(warning) for warning in compiled.checked.warnings]
        if args.emit_python is not None:
            report["python_source"] = args.emit_python
        if audit is not None:
            report["audit"] = [dataclasses.asdict(result) for result in audit]
        if privacy is not None:
            report["privacy"] = privacy[0]
        print(json.dumps(report, indent=2))
    else:
        print(format_bounds_table(compiled.checked, certified, methods))
        if audit is not None:
            from lipc.nn.audit import format_audit

            print(format_audit(audit))
        if privacy is not None:
            print(privacy[1])
        if args.emit_python is not None:
            print(f"wrote {args.emit_python}")
    return 0


def _check_emit_python(args) -> None:
    """Reject an --emit-python target that is empty, is the spec itself, or shares stdout with a report."""
    if args.emit_python is None:
        return
    if not args.emit_python:
        raise UsageError("--emit-python needs a file path, or - for standard output")
    if args.emit_python == "-":
        requested = [option for option, given in (("--json", args.json), ("--audit", args.audit), ("--epsilon", args.epsilon is not None)) if given]
        if requested:
            raise UsageError(f"--emit-python - prints the Python source instead of the report, so it cannot be combined with {', '.join(requested)}")
        return
    if Path(args.emit_python).resolve() == Path(args.spec).resolve():
        raise UsageError(f"--emit-python {args.emit_python} would overwrite the spec. Choose another path")


def _python_source(compiled) -> str:
    from lipc.export.python_source import generate_python_source

    return generate_python_source(compiled)


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

    if args.resume is not None:
        return _resume_command(args)
    if args.spec is None:
        raise UsageError("no .lip file given", hint="pass a .lip file, or --resume RUN to continue a run")
    checked = check_spec(parse_file(args.spec), args.network)
    _print_warnings(checked)
    config = _config_with_overrides(checked.train, args)

    # Seed before compiling, so that the initial weights are reproducible too.
    torch.manual_seed(config.seed)
    compiled = lipc.compile(args.spec, checked.network_name)
    run_dir = args.out or default_run_dir(compiled.name)
    try:
        result = train(compiled, config, run_dir, device=args.device or config.device, show_progress=not args.quiet)
    except KeyboardInterrupt:
        return _interrupted(run_dir)
    _print_train_result(result)
    return 0


def _interrupted(run_dir: Path) -> int:
    if run_dir.is_dir():
        print(f"lipc: interrupted; resume with 'lipc train --resume {run_dir}'", file=sys.stderr)
    else:
        print("lipc: interrupted; nothing was written", file=sys.stderr)
    return 130


def _resume_command(args) -> int:
    from lipc.train.trainer import resume

    given = [f"--{name.replace('_', '-')}" for name in ("spec", "network", "epsilon", "delta", "epochs", "batch_size", "lr", "seed", "out", "noise", "accountant", "sampling") if getattr(args, name) is not None]
    if given:
        raise UsageError(f"--resume continues a run with its own settings, so {', '.join(given)} cannot be given with it", hint="drop those options")
    try:
        result = resume(args.resume, device=args.device or "auto", show_progress=not args.quiet)
    except KeyboardInterrupt:
        return _interrupted(args.resume)
    _print_train_result(result)
    return 0


def _print_train_result(result) -> None:
    ledger = result.ledger
    certified = ", ".join(f"r={radius:g}: {value:.3f}" for radius, value in result.certified_accuracy.items())
    print(f"trained {result.network} on {result.data}: {ledger.dataset_size} examples, {ledger.steps_taken} steps")
    print(f"privacy: {ledger.summary()}")
    print(f"test accuracy: {result.test_accuracy:.4f}")
    print(f"certified accuracy: {certified}")
    print(f"certified Lipschitz constant: {result.lipschitz_constant:.6g}")
    print(f"run folder: {result.run_dir}")


def _privacy_command(args) -> int:
    from lipc.privacy import planning

    dataset_size, batch_size, epochs, delta, accountant, epsilon = args.dataset_size, args.batch_size, args.epochs, args.delta, args.accountant, args.epsilon
    if args.spec is not None:
        from lipc.check import check_spec
        from lipc.lang import parse_file
        from lipc.train.data import load_training_data

        checked = check_spec(parse_file(args.spec), args.network)
        train = checked.train
        if dataset_size is None:
            dataset_size = len(load_training_data(train, checked.input_shape, checked.num_classes).train_labels)
        batch_size = batch_size or train.batch_size
        epochs = epochs or train.epochs
        delta = delta if delta is not None else train.delta
        accountant = accountant or train.accountant
    if dataset_size is None or batch_size is None:
        raise UsageError("the data set size and the batch size are needed", hint="pass --dataset-size and --batch-size, or a .lip file")
    delta = 1e-5 if delta is None else delta
    accountant = accountant or "rdp"

    if epsilon is not None and args.noise_multiplier is not None:
        if args.epochs is not None:
            raise UsageError("--epsilon, --noise-multiplier and --epochs all given: there is nothing to compute", hint="leave out the one to compute")
        plan = planning.max_epochs_for_budget(args.noise_multiplier, epsilon, delta, dataset_size, batch_size, accountant)
        answer = f"largest number of epochs: {plan.epochs}" + (" (or more; the search stops there)" if plan.epochs_capped else "")
    elif epsilon is not None:
        plan = planning.noise_multiplier_for_epsilon(epsilon, delta, dataset_size, batch_size, epochs or 1, accountant)
        answer = f"noise multiplier: {plan.noise_multiplier:.6g}"
    elif args.noise_multiplier is not None:
        plan = planning.epsilon_for_noise_multiplier(args.noise_multiplier, delta, dataset_size, batch_size, epochs or 1, accountant)
        answer = f"ε: {plan.epsilon:.6g}"
    else:
        raise UsageError("no question asked", hint="pass --epsilon, --noise-multiplier, or both (for the largest number of epochs)")

    if args.json:
        print(json.dumps(dataclasses.asdict(plan), indent=2))
    else:
        print(answer)
        print(plan.describe())
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


def _fmt_command(args) -> int:
    from lipc.lang.format import STDIN_ARGUMENT, format_file, spec_paths, write_atomically

    failed = would_change = False
    for path in spec_paths(args.paths):
        try:
            result = format_file(path)
            if args.diff:
                sys.stdout.write(result.unified_diff())
            elif not args.check and path == STDIN_ARGUMENT:
                sys.stdout.write(result.formatted)
            if not result.changed:
                continue
            would_change = True
            if args.check or args.diff:
                print(f"would reformat {path}", file=sys.stderr)
            elif path != STDIN_ARGUMENT:
                write_atomically(path, result.formatted)
                print(f"reformatted {path}", file=sys.stderr)
        except LipcError as error:
            # Report the file and go on with the others, as formatters of other languages do.
            print(error.format(), file=sys.stderr)
            failed = True
    return 1 if failed or (args.check and would_change) else 0


COMMANDS = {
    "fmt": _fmt_command,
    "compile": _compile_command,
    "train": _train_command,
    "export": _export_command,
    "privacy": _privacy_command,
    "report": _report_command,
}


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
    except BrokenPipeError:
        # The reader of stdout (such as `head`) closed it early. Point stdout at /dev/null so
        # that the interpreter's final flush does not fail again, as the Python docs advise.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
