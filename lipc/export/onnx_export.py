"""Export a trained run to ONNX, attach its guarantees as metadata, and verify it with onnxruntime."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch

from lipc import __version__
from lipc.errors import RunError
from lipc.logging_utils import quiet_loggers
from lipc.data import load_run_dataset
from lipc.privacy.sampling import epsilon_label
from lipc.train.run_folder import load_compiled, read_run

logger = logging.getLogger(__name__)

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
OPSET_VERSION = 18

# Largest difference between onnxruntime's and PyTorch's logits that an export may show,
# relative to the largest logit magnitude: float32 kernels differ by rounding only.
VERIFICATION_TOLERANCE = 1e-4


@dataclass(frozen=True)
class ExportReport:
    path: Path
    metadata: dict[str, str]
    max_abs_difference: float
    examples_checked: int


def _metadata(run, lipschitz_constant: float, clip_norm: float) -> dict[str, str]:
    ledger = run.ledger
    return {
        "lipc.lipschitz_constant": repr(lipschitz_constant),
        "lipc.input_clip_norm": repr(clip_norm),
        "lipc.epsilon": repr(ledger["epsilon_spent"]),
        "lipc.delta": repr(ledger["delta"]),
        "lipc.accountant": ledger["accountant"],
        "lipc.neighboring_relation": ledger["neighboring_relation"],
        "lipc.sampling": ledger["sampling"],
        "lipc.epsilon_label": ledger.get("epsilon_label") or epsilon_label(ledger["sampling"]),
        "lipc.noise_multiplier": repr(ledger["noise_multiplier"]),
        "lipc.sampling_rate": repr(ledger["sampling_rate"]),
        "lipc.steps": str(ledger["steps_taken"]),
        "lipc.network": run.config["network"],
        "lipc.spec_sha256": hashlib.sha256(run.spec_source.encode("utf-8")).hexdigest(),
        "lipc.version": __version__,
    }


def _export_graph(module: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    batch = torch.export.Dim("batch", min=1)
    # The exporter logs its optimisation passes and missing optional packages at INFO and WARNING.
    with warnings.catch_warnings(), quiet_loggers("torch.onnx", "onnxscript", "onnx_ir"):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module,
            (example,),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: batch},),
            opset_version=OPSET_VERSION,
            verbose=False,
        )
    program.save(str(path), external_data=False)


def export_run(run_dir: str | os.PathLike, output_path: str | os.PathLike) -> ExportReport:
    """Export the run in `run_dir` to `output_path`, written only once onnxruntime agrees with PyTorch."""
    run = read_run(run_dir)
    compiled = load_compiled(run)
    module = compiled.module.eval()
    output_path = Path(output_path)

    lipschitz_constant = compiled.certified_lipschitz()
    if lipschitz_constant > compiled.checked.lipschitz_bound * (1 + 1e-6):
        raise RunError(
            f"the weights in {run.path} have certified Lipschitz constant {lipschitz_constant:.6g}, "
            f"above the network's budget {compiled.checked.lipschitz_bound:g}",
            hint="the weights were changed after training; train again",
        )

    data = load_run_dataset(run.config["train"], compiled)
    held_out = data.test_inputs
    metadata = _metadata(run, lipschitz_constant, compiled.input_clip_norm)

    parent = output_path.parent if str(output_path.parent) else Path(".")
    if not parent.is_dir():
        raise RunError(f"output folder not found: {parent}", hint="create it first, or choose another -o")
    handle, staging_name = tempfile.mkstemp(prefix=f".{output_path.name}.", suffix=".tmp", dir=parent)
    os.close(handle)
    staging = Path(staging_name)
    try:
        _export_graph(module, held_out[:2], staging)
        model = onnx.load(str(staging))
        for key, value in metadata.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.checker.check_model(model)
        onnx.save(model, str(staging))

        session = onnxruntime.InferenceSession(str(staging), providers=["CPUExecutionProvider"])
        (onnx_logits,) = session.run([OUTPUT_NAME], {INPUT_NAME: held_out.numpy()})
        with torch.no_grad():
            torch_logits = module(held_out).numpy()
        max_abs_difference = float(np.abs(onnx_logits - torch_logits).max())
        scale = max(1.0, float(np.abs(torch_logits).max()))
        if not max_abs_difference <= VERIFICATION_TOLERANCE * scale:
            raise RunError(
                f"the ONNX model's outputs differ from PyTorch's by {max_abs_difference:.3g} on held-out inputs",
                hint="report this as a lipc bug, with the run folder",
            )
        os.replace(staging, output_path)
    except OSError as error:
        raise RunError(f"cannot write {output_path}: {error.strerror}", hint="choose a writable path for -o") from None
    finally:
        staging.unlink(missing_ok=True)

    return ExportReport(output_path, metadata, max_abs_difference, len(held_out))
