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


def default_run_dir(network_name: str) -> Path:
    return Path("runs") / f"{network_name}-{time.strftime('%Y%m%d-%H%M%S')}"


def check_run_dir_free(run_dir: Path) -> None:
    """Fail before training, not after, when the run folder cannot be created."""
    if run_dir.exists():
        raise RunError(f"run folder already exists: {run_dir}", hint="choose another --out, or remove the old run")


def write_run(run_dir: Path, spec_source: str, config: dict, state_dict: dict, metrics: dict, ledger: dict) -> None:
    """Write every file into a temporary folder beside `run_dir`, then rename it into place."""
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
        (staging / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        (staging / LEDGER_FILE).write_text(json.dumps(ledger, indent=2) + "\n", encoding="utf-8")
        torch.save(state_dict, staging / WEIGHTS_FILE)
        os.rename(staging, run_dir)
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise RunError(f"cannot write the run folder {run_dir}: {error.strerror}", hint="check the disk space and permissions") from None


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
