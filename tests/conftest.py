"""Shared fixtures: small specs written as source text, and helpers to run the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SPECS = REPO / "specs"

MLP_SOURCE = """\
network tiny {
    input shape=[12] clip_norm=2.0
    dense 8 bias_norm=0.5
    groupsort 2
    dense 8
    relu
    dense 3
}
loss cross_entropy temperature=0.5
data {
    source = digits
}
train {
    epochs = 1
    batch_size = 64
}
"""


def run_lipc(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run the installed `lipc` command from `cwd`, outside the source tree."""
    return subprocess.run([sys.executable, "-m", "lipc", *args], cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.fixture
def digits_spec() -> Path:
    return SPECS / "digits_mlp.lip"
