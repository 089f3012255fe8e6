"""`lipc compile --audit`: the search reports per-example gradient norms within, and close to, each bound."""

from __future__ import annotations

import json

import lipc
from lipc.cli import main
from lipc.nn.audit import audit_sensitivities

from conftest import SPECS


def test_audit_within_and_near_bounds():
    compiled = lipc.compile(SPECS / "digits_mlp.lip")
    results = audit_sensitivities(compiled, samples=8, steps=10, show_progress=False)
    assert [r.name for r in results] == list(compiled.sensitivities)
    for result in results:
        assert result.worst <= result.bound, result
    # Orthogonal weights and GroupSort let the search come within 5% of each bound.
    assert min(r.ratio for r in results) > 0.95


def test_audit_option_prints_table(capsys):
    assert main(["-q", "compile", str(SPECS / "breast_cancer_mlp.lip"), "--audit"]) == 0
    output = capsys.readouterr().out
    assert "audit: largest per-example gradient norm found by search, against each bound" in output
    assert "dense_5.bias" in output.split("audit:")[1]


def test_audit_option_in_json(capsys):
    assert main(["-q", "compile", str(SPECS / "breast_cancer_mlp.lip"), "--audit", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [entry["name"] for entry in report["audit"]] == list(report["sensitivities"])
    for entry in report["audit"]:
        assert entry["worst"] <= entry["bound"]
