"""`lipc compile --audit`: the search reports per-example gradient norms within, and close to, each bound."""

from __future__ import annotations

import json

import lipc
from lipc.nn.audit import audit_sensitivities

from conftest import SPECS, run_lipc


def test_audit_within_and_near_bounds():
    compiled = lipc.compile(SPECS / "digits_mlp.lip")
    results = audit_sensitivities(compiled, samples=8, steps=10, show_progress=False)
    assert [r.name for r in results] == list(compiled.sensitivities)
    for result in results:
        assert result.worst <= result.bound, result
    # Orthogonal weights and GroupSort let the search come within 5% of each bound.
    assert min(r.ratio for r in results) > 0.95


def test_audit_option_prints_table(tmp_path):
    result = run_lipc("compile", str(SPECS / "breast_cancer_mlp.lip"), "--audit", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [entry["name"] for entry in report["audit"]] == list(report["sensitivities"])
    for entry in report["audit"]:
        assert entry["worst"] <= entry["bound"]
