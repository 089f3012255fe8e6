"""Run folders: written whole or not at all, and read back for export."""

from __future__ import annotations

import io
import json
import pickle
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from lipc.errors import LipcError, RunError

SPEC_FILE = "spec.lip"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.pt"
METRICS_FILE = "metrics.json"
LEDGER_FILE = "ledger.json"
RUN_FILES = (SPEC_FILE, CONFIG_FILE, WEIGHTS_FILE, METRICS_FILE, LEDGER_FILE)

# State to resume an unfinished run from its last completed epoch: weights, optimizer state,
# the noise and sampling generator's state, and the metrics so far. Removed when the run ends.
CHECKPOINT_FILE = "checkpoint.pt"


def default_run_dir(network_name: str) -> Path:
    return Path("runs") / f"{network_name}-{time.strftime('%Y%m%d-%H%M%S')}"


def check_run_dir_free(run_dir: Path) -> None:
    """Fail before training, not after, when the run folder cannot be created."""
    if run_dir.exists():
        raise RunError(f"run folder already exists: {run_dir}", hint="choose another --out, or remove the old run")


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _replace_atomically(path: Path, write) -> None:
    """Call `write(file)` on a temporary file beside `path`, flush it to disk, then rename it over `path`.

    A reader, or a run killed at any point, finds either the old file or the whole new one.
    """
    handle, staging_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    staging = Path(staging_name)
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(staging, path)
        _fsync_directory(path.parent)
    except OSError as error:
        staging.unlink(missing_ok=True)
        raise RunError(f"cannot write {path}: {error.strerror}", hint="check the disk space and permissions") from None
    except BaseException:
        staging.unlink(missing_ok=True)
        raise


def write_json_atomically(path: Path, values: dict) -> None:
    _replace_atomically(path, lambda file: file.write((json.dumps(values, indent=2) + "\n").encode("utf-8")))


def write_torch_atomically(path: Path, values: dict) -> None:
    _replace_atomically(path, lambda file: torch.save(values, file))


def create_run(run_dir: Path, spec_source: str, config: dict, ledger: dict, metrics: dict, checkpoint: dict) -> None:
    """Create the run folder of a new run (spec, config, empty ledger, initial checkpoint) all at once."""
    check_run_dir_free(run_dir)
    parent = run_dir.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{run_dir.name}.", dir=parent))
    except OSError as error:
        raise RunError(f"cannot create the run folder in {parent}: {error.strerror}", hint="choose a writable --out") from None

    try:
        (staging / SPEC_FILE).write_text(spec_source, encoding="utf-8")
        (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        write_json_atomically(staging / LEDGER_FILE, ledger)
        write_json_atomically(staging / METRICS_FILE, metrics)
        write_torch_atomically(staging / CHECKPOINT_FILE, checkpoint)
        os.rename(staging, run_dir)
    except (OSError, RunError) as error:
        shutil.rmtree(staging, ignore_errors=True)
        reason = error.strerror if isinstance(error, OSError) else error.message
        raise RunError(f"cannot write the run folder {run_dir}: {reason}", hint="check the disk space and permissions") from None


def save_epoch(run_dir: Path, ledger: dict, checkpoint: dict, metrics: dict) -> None:
    """Record a finished epoch: the ledger first, then the checkpoint whose steps it counts.

    Written in this order, a run killed between the two writes leaves a ledger that counts
    more steps than the saved weights have taken, never fewer.
    """
    write_json_atomically(run_dir / LEDGER_FILE, ledger)
    write_torch_atomically(run_dir / CHECKPOINT_FILE, checkpoint)
    write_json_atomically(run_dir / METRICS_FILE, metrics)


def finish_run(run_dir: Path, ledger: dict, state_dict: dict, metrics: dict) -> None:
    """Write the final ledger, then the final weights and metrics, and drop the checkpoint."""
    write_json_atomically(run_dir / LEDGER_FILE, ledger)
    write_torch_atomically(run_dir / WEIGHTS_FILE, state_dict)
    write_json_atomically(run_dir / METRICS_FILE, metrics)
    (run_dir / CHECKPOINT_FILE).unlink(missing_ok=True)


@dataclass(frozen=True)
class UnfinishedRun:
    """An unfinished run folder, read back to resume training."""

    path: Path
    spec_source: str
    config: dict
    ledger: dict
    checkpoint: dict


def read_unfinished_run(run_dir: str | os.PathLike) -> UnfinishedRun:
    """Read a run folder that `lipc train` left before its end, to resume it."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"run folder not found: {run_dir}", hint="pass the folder that 'lipc train' created")
    if (run_dir / WEIGHTS_FILE).is_file() and not (run_dir / CHECKPOINT_FILE).is_file():
        raise RunError(f"run {run_dir} has already finished", hint="export it, or train a new run")
    missing = [name for name in (SPEC_FILE, CONFIG_FILE, LEDGER_FILE, CHECKPOINT_FILE) if not (run_dir / name).is_file()]
    if missing:
        raise RunError(f"run folder {run_dir} lacks {', '.join(missing)}, so it cannot be resumed", hint="train a new run")
    try:
        spec_source = (run_dir / SPEC_FILE).read_text(encoding="utf-8")
        config = json.loads((run_dir / CONFIG_FILE).read_text(encoding="utf-8"))
        ledger = json.loads((run_dir / LEDGER_FILE).read_text(encoding="utf-8"))
        checkpoint = torch.load(io.BytesIO((run_dir / CHECKPOINT_FILE).read_bytes()), map_location="cpu", weights_only=True)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as error:
        raise RunError(f"cannot read the run folder {run_dir}: {error}", hint="the run folder is damaged; train a new run") from None
    return UnfinishedRun(run_dir, spec_source, config, ledger, checkpoint)


@dataclass(frozen=True)
class SavedRun:
    path: Path
    spec_source: str
    config: dict
    metrics: dict
    ledger: dict
    state_dict: dict


def read_run(run_dir: str | os.PathLike) -> SavedRun:
    """Read a run folder written by `lipc train`, checking that every file is there and readable."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"run folder not found: {run_dir}", hint="pass the folder that 'lipc train' printed")
    missing = [name for name in RUN_FILES if not (run_dir / name).is_file()]
    if missing and (run_dir / CHECKPOINT_FILE).is_file():
        raise RunError(f"run {run_dir} has not finished training", hint=f"resume it with 'lipc train --resume {run_dir}'")
    if missing:
        raise RunError(f"run folder {run_dir} lacks {', '.join(missing)}", hint="pass a complete run folder written by 'lipc train'")

    def read_json(name: str) -> dict:
        try:
            return json.loads((run_dir / name).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise RunError(f"cannot read {run_dir / name}: {error}", hint="the run folder is damaged; train again") from None

    try:
        state_dict = torch.load(io.BytesIO((run_dir / WEIGHTS_FILE).read_bytes()), map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as error:
        raise RunError(f"cannot read {run_dir / WEIGHTS_FILE}: {error}", hint="the run folder is damaged; train again") from None
    try:
        spec_source = (run_dir / SPEC_FILE).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise RunError(f"cannot read {run_dir / SPEC_FILE}: {error}", hint="the run folder is damaged; train again") from None
    return SavedRun(run_dir, spec_source, read_json(CONFIG_FILE), read_json(METRICS_FILE), read_json(LEDGER_FILE), state_dict)


def load_compiled(run: SavedRun):
    """Compile the run's spec and load its trained weights into the module."""
    from lipc.compiler import compile_source

    try:
        compiled = compile_source(run.spec_source, str(run.path / SPEC_FILE), run.config.get("network"))
    except LipcError as error:
        raise RunError(f"the spec saved in {run.path} no longer compiles: {error.message}", hint="train again with this version of lipc") from None
    try:
        compiled.module.load_state_dict(run.state_dict)
    except RuntimeError as error:
        first_line = str(error).splitlines()[0]
        raise RunError(f"the weights in {run.path} do not fit its spec: {first_line}", hint="the run folder is damaged; train again") from None
    return compiled
