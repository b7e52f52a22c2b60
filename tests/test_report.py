"""The report stage: Table-4 layout from evaluate@MODEL results and the paper's findings
computed (and refuted) from the numbers, never assumed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import run_cli


def _metrics(pass1: float, mixing: float = 0.0) -> dict:
    return {"pass@1": pass1, "cons@k": pass1 + 0.05, "greedy": pass1, "mean_length": 30.0,
            "reflection_rate": 0.0, "mixing_rate": mixing, "format_rate": 1.0, "readable_rate": 0.0, "n": 10, "k": 4}


def _write_eval(project: Path, model: str, pass1: float, mixing: float = 0.0) -> None:
    folder = project / "artifacts" / "evaluate" / model
    folder.mkdir(parents=True)
    benches = {b: _metrics(pass1, mixing) for b in ("arithmetic_test", "countdown_test")}
    (folder / "metrics.json").write_text(json.dumps({model: benches}))


def test_report_states_each_finding_with_its_numbers(tmp_path):
    project = tmp_path
    (project / "params.yaml").write_text(yaml.safe_dump({"report": {
        "students": {"s64": {}}, "models": {m: f"artifacts/{m}/model" for m in
                                       ("base", "r1_zero", "reasoning_rl", "r1", "s64_distill", "s64_rl")}}}))
    _write_eval(project, "base", 0.30)
    _write_eval(project, "r1_zero", 0.50, mixing=0.10)
    _write_eval(project, "reasoning_rl", 0.55, mixing=0.20)  # mixing went UP: must be reported
    _write_eval(project, "s64_distill", 0.40)
    _write_eval(project, "s64_rl", 0.20)
    for stage, mixing in (("r1_zero", 0.08), ("reasoning_rl", 0.01)):  # rollouts: the reward cut mixing
        steps = project / "artifacts" / stage / "steps.json"
        steps.parent.mkdir(parents=True)
        rows = [{"step": i, "reward": i / 20, "mixing_rate": 0.5 if i < 19 else mixing} for i in range(1, 21)]
        steps.write_text(json.dumps(rows))

    proc = run_cli(["stage", "report"], project)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = project / "artifacts" / "report"
    report = (out / "report.md").read_text()
    assert "| base | 30.0 | 35.0 | 30.0 | 35.0 |" in report  # Table-4 layout: pass@1, cons@k per benchmark
    assert "r1_zero 50.0% vs base 30.0% (holds)" in report
    assert "last 10% of steps: reasoning_rl 1.0% vs r1_zero 8.0% (holds)" in report
    assert "at evaluation: reasoning_rl 20.0% vs r1_zero 10.0% (DOES NOT HOLD)" in report
    assert "s64_distill 40.0% vs s64_rl 20.0% (holds)" in report
    assert "Not evaluated: r1." in report
    metrics = json.loads((out / "metrics.json").read_text())
    assert [metrics[f"finding{i}/holds"] for i in range(1, 5)] == [1, 1, 0, 1]
    assert "| reasoning_rl | 30.0 | 0.0 | 20.0 | 100.0 | 0.0 |" in report  # behaviour: length, rates in %
    assert metrics["missing_models"] == 1
    assert (out / "plots" / "reward.png").stat().st_size > 1000
    html = (out / "report.html").read_text()
    assert "<table>" in html and 'src="plots/mixing_rate.png"' in html


def test_report_without_results_fails_clearly(tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"report": {}}))
    proc = run_cli(["stage", "report"], tmp_path)
    assert proc.returncode != 0
    assert "no evaluate results" in proc.stderr


def test_a_hub_id_in_report_models_fails_before_a_run_naming_the_key(tmp_path):
    from flows.pipeline import check_params
    from infra.config import load_yaml

    params = load_yaml((Path(__file__).parents[1] / "params.yaml").read_text())
    params["report"]["models"]["qwen"] = "Qwen/Qwen2.5-0.5B"
    with pytest.raises(ValueError, match=r"report.models.qwen = 'Qwen/Qwen2.5-0.5B'.*r1flow stage evaluate"):
        check_params(params)
