"""The report stage: Table-4 layout from evaluate@MODEL results, and the paper's findings judged
from hand-made metric files by paired bootstrap intervals: never assumed, never a bare a > b."""

from __future__ import annotations

import json
import random
import statistics
from pathlib import Path

import pytest
import yaml

from conftest import run_cli
from model import stats
from model.stages.report import ReportConfig, findings

BENCHES = ("arithmetic_test", "countdown_test")


def _problems(pass1: list[float], mixing: float = 0.0, readable: float = 0.0,
              budgets: dict[str, list[float]] | None = None) -> dict:
    """Per-problem scores of one benchmark as evaluate writes them (problems.json)."""
    n = len(pass1)
    return {"id": [f"p{i}" for i in range(n)], "pass@1": pass1, "cons@k": pass1, "greedy": pass1,
            "mean_length": [30.0] * n, "reflection_rate": [0.0] * n, "mixing_rate": [mixing] * n,
            "format_rate": [1.0] * n, "readable_rate": [readable] * n,
            "cons_at": {"1": pass1, "2": pass1}, "budget_pass@1": budgets or {"12": [0.0] * n, "24": pass1}}


def _summary(problems: dict) -> dict:
    from model.evaluate import summarize

    return summarize(problems, k=4)


def _write_eval(project: Path, model: str, by_bench: dict[str, dict]) -> None:
    folder = project / "artifacts" / "evaluate" / model
    folder.mkdir(parents=True)
    (folder / "problems.json").write_text(json.dumps({model: by_bench}))
    (folder / "metrics.json").write_text(json.dumps({model: {b: _summary(p) for b, p in by_bench.items()}}))


def _scores(mean: float, n: int = 150, seed: int = 0) -> list[float]:
    """``n`` per-problem pass@1 values over 4 samples (quarters), shuffled, averaging exactly
    ``mean`` (``mean * n * 4`` must be whole)."""
    quarters = round(mean * n * 4)
    assert abs(quarters - mean * n * 4) < 1e-9
    values = [min(4, max(0, quarters - 4 * i)) / 4 for i in range(n)]
    random.Random(seed).shuffle(values)
    return values


def _by_key(found: list[dict]) -> dict[str, dict]:
    return {f["key"]: f for f in found}


def test_a_clear_gap_holds_and_the_reverse_gap_does_not():
    problems = {"base": {b: _problems(_scores(0.30, seed=1)) for b in BENCHES},
                "r1_zero": {b: _problems(_scores(0.70, seed=2)) for b in BENCHES},
                "r1": {b: _problems(_scores(0.40, seed=3)) for b in BENCHES}}
    found = _by_key(findings(problems, {}, ReportConfig()))
    lift = found["rl_lifts_base"]
    assert lift["verdict"] == stats.HOLDS
    assert lift["n"] == 300 and lift["left"] == pytest.approx(0.70) and lift["right"] == pytest.approx(0.30)
    assert 0 < lift["low"] < lift["diff"] < lift["high"]
    assert found["r1_beats_r1_zero"]["verdict"] == stats.FAILS
    assert found["r1_beats_r1_zero"]["high"] < 0


def test_half_a_point_on_150_problems_is_inconclusive():
    problems = {"base": {"arithmetic_test": _problems(_scores(0.50, seed=1))},
                "r1_zero": {"arithmetic_test": _problems(_scores(0.51, seed=2))}}
    lift = _by_key(findings(problems, {}, ReportConfig()))["rl_lifts_base"]
    assert lift["diff"] == pytest.approx(0.01)
    assert lift["low"] < 0 < lift["high"]
    assert lift["verdict"] == stats.INCONCLUSIVE


def test_models_scored_on_different_benchmarks_are_not_compared():
    """The issue's case: r1_zero on one benchmark, base on another: no shared problems."""
    problems = {"base": {"countdown_test": _problems(_scores(0.10))},
                "r1_zero": {"arithmetic_test": _problems(_scores(0.50))}}
    lift = _by_key(findings(problems, {}, ReportConfig()))["rl_lifts_base"]
    assert lift["verdict"] == stats.NOT_MEASURED
    assert "countdown_test (only base has it)" in lift["why"] and "arithmetic_test (only r1_zero" in lift["why"]
    lift = _by_key(findings(problems, {}, ReportConfig(headline=["gsm8k_test"])))["rl_lifts_base"]
    assert "no shared benchmark" in lift["why"] and "compared on ['gsm8k_test']" in lift["why"]


def test_a_headline_benchmark_only_one_side_has_is_not_measured():
    """base's headline mean would cover countdown, where it scores 0.9, and r1_zero's would not."""
    problems = {"base": {"arithmetic_test": _problems(_scores(0.30)), "countdown_test": _problems(_scores(0.90))},
                "r1_zero": {"arithmetic_test": _problems(_scores(0.60))}}
    lift = _by_key(findings(problems, {}, ReportConfig()))["rl_lifts_base"]
    assert lift["verdict"] == stats.NOT_MEASURED
    assert "countdown_test (only base has it)" in lift["why"]


def test_only_the_shared_problems_are_compared():
    """r1_zero was scored on 100 of base's 150 problems; base's other benchmark is not a headline."""
    problems = {"base": {"arithmetic_test": _problems(_scores(0.30)), "gsm8k_test": _problems(_scores(0.90))},
                "r1_zero": {"arithmetic_test": _sliced(_problems(_scores(0.60)), 100)}}
    lift = _by_key(findings(problems, {}, ReportConfig()))["rl_lifts_base"]
    assert lift["benchmarks"] == ["arithmetic_test"] and lift["n"] == 100
    assert lift["verdict"] == stats.HOLDS


def _sliced(scores: dict, n: int) -> dict:
    return {k: (v[:n] if isinstance(v, list) else {j: w[:n] for j, w in v.items()}) for k, v in scores.items()}


def _pair(left: dict, right: dict) -> dict:
    problems = {"base": {"arithmetic_test": right}, "r1_zero": {"arithmetic_test": left}}
    return _by_key(findings(problems, {}, ReportConfig(headline=["arithmetic_test"])))["rl_lifts_base"]


def test_scores_that_cannot_be_paired_honestly_are_not_measured():
    a, b = _problems(_scores(0.70, seed=1)), _problems(_scores(0.30, seed=2))
    assert _pair(a, b)["verdict"] == stats.HOLDS
    sampled = [{**a, "protocol": {"k": 16, "temperature": 0.6}}, {**b, "protocol": {"k": 4, "temperature": 0.6}}]
    assert "sampled differently (k 16 vs 4)" in _pair(*sampled)["why"]
    other = {**b, "key": ["h0"] * 150}  # same ids, another version of the benchmark
    assert "p1 is a different problem" in _pair({**a, "key": [f"h{i}" for i in range(150)]}, other)["why"]
    few = _pair(_sliced(a, 29), _sliced(b, 29))
    assert few["verdict"] == stats.NOT_MEASURED and "share 29 problems" in few["why"]
    broken = _pair({**a, "pass@1": [float("nan")] + a["pass@1"][1:]}, b)
    assert broken["verdict"] == stats.NOT_MEASURED and "non-finite" in broken["why"]


def test_no_mixing_to_reduce_is_not_measured():
    steps = [{"step": i, "mixing_rate": 0.0} for i in range(40)]
    problems = {m: {"arithmetic_test": _problems(_scores(0.5))} for m in ("reasoning_rl", "reasoning_rl_nolang")}
    found = _by_key(findings(problems, {"reasoning_rl": steps, "reasoning_rl_nolang": steps}, ReportConfig()))
    for key in ("language_reward_cuts_mixing", "language_reward_cuts_mixing_eval"):
        assert found[key]["verdict"] == stats.NOT_MEASURED and "no mixing" in found[key]["why"]


def test_short_curves_and_overlapping_windows_are_not_measured():
    rows = [{"step": i, "response_length": 30.0 + i, "mixing_rate": 0.1} for i in range(8)]
    found = _by_key(findings({}, {"r1_zero": rows}, ReportConfig()))
    assert "first and last windows of 5 would overlap" in found["length_grows"]["why"]
    found = _by_key(findings({}, {"r1_zero": rows[:3]}, ReportConfig()))
    assert "logged mixing_rate at 3 steps; a window needs 5" in found["r1_zero_mixes"]["why"]
    broken = [{**r, "response_length": float("inf")} if r["step"] == 2 else r for r in rows * 2]
    assert "non-finite" in _by_key(findings({}, {"r1_zero": broken}, ReportConfig()))["length_grows"]["why"]


def test_problem_files_with_repeated_ids_are_refused_and_other_models_ignored(tmp_path):
    from model.stages.report import load_problems

    _write_eval(tmp_path, "base", {"arithmetic_test": _problems(_scores(0.3))})
    _write_eval(tmp_path, "stale", {"arithmetic_test": _problems(_scores(0.3))})
    evaluations = tmp_path / "artifacts" / "evaluate"
    assert set(load_problems(evaluations, ["base", "r1_zero"])) == {"base"}
    repeated = _problems(_scores(0.3))
    repeated["id"][7] = "p3"
    _write_eval(tmp_path, "r1_zero", {"arithmetic_test": repeated})
    with pytest.raises(ValueError, match=r"r1_zero/problems.json: r1_zero arithmetic_test repeats problem id 'p3'"):
        load_problems(evaluations, ["base", "r1_zero"])


def test_curve_findings_compare_the_last_tenth_of_steps_with_the_first():
    rows = [{"step": i, "response_length": 40.0 + i + (i % 3), "reflection_rate": 0.05 - 0.0004 * i,
             "mixing_rate": 0.0} for i in range(100)]
    found = _by_key(findings({}, {"r1_zero": rows}, ReportConfig()))
    grows = found["length_grows"]
    assert grows["verdict"] == stats.HOLDS and grows["n"] == 10
    assert grows["diff"] == pytest.approx(90.0, abs=1.0)
    # Welch's t interval: 9 degrees of freedom or more, wider than 1.96 standard errors.
    first, last = [r["response_length"] for r in rows[:10]], [r["response_length"] for r in rows[-10:]]
    se = (statistics.variance(first) / 10 + statistics.variance(last) / 10) ** 0.5
    assert 1.96 * se < grows["high"] - grows["diff"] < 2.3 * se
    assert found["reflection_rises"]["verdict"] == stats.FAILS
    assert found["r1_zero_mixes"]["verdict"] == stats.FAILS  # never mixed: no mixing is not "mixes"
    assert found["language_reward_cuts_mixing"]["verdict"] == stats.NOT_MEASURED  # no ablation run


def test_stats_verdicts_on_known_intervals():
    same = stats.paired_interval([1.0, 0.0, 1.0], [1.0, 0.0, 1.0])
    assert (same.low, same.high) == (0.0, 0.0) and stats.verdict(same) == stats.FAILS
    assert stats.paired_interval([0.2] * 5, [0.1] * 5, seed=3) == stats.paired_interval([0.2] * 5, [0.1] * 5, seed=3)
    lower = stats.unpaired_interval([0.0, 0.01, 0.0], [0.2, 0.3, 0.25])
    assert stats.verdict(lower, higher=False) == stats.HOLDS and stats.verdict(lower) == stats.FAILS
    with pytest.raises(ValueError, match="one length"):
        stats.paired_interval([1.0], [1.0, 0.0])
    with pytest.raises(ValueError, match="non-finite"):
        stats.paired_interval([1.0, float("nan")], [1.0, 0.0])
    one = stats.welch_interval([1.0, 2.0, 3.0, 4.0, 5.0], None)  # one-sample t: 3 +- 2.776 * 0.707
    assert (one.low, one.high, one.n) == (pytest.approx(1.0368, abs=1e-4), pytest.approx(4.9632, abs=1e-4), 5)
    flat = stats.welch_interval([0.0] * 5, [0.0] * 6)
    assert (flat.low, flat.high) == (0.0, 0.0) and stats.verdict(flat, higher=False) == stats.FAILS


def test_report_lists_every_finding_with_its_interval(tmp_path):
    project = tmp_path
    models = ("base", "r1_zero", "reasoning_rl", "reasoning_rl_nolang", "r1", "s64_distill", "s64_rl")
    (project / "params.yaml").write_text(yaml.safe_dump({"report": {
        "students": {"s64": {}}, "models": {m: f"artifacts/{m}/model" for m in models}}}))
    means = {"base": 0.30, "r1_zero": 0.50, "reasoning_rl": 0.55, "reasoning_rl_nolang": 0.55, "s64_distill": 0.40,
             "s64_rl": 0.20}
    for seed, (model, mean) in enumerate(means.items()):
        mixing = {"r1_zero": 0.10, "reasoning_rl": 0.20, "reasoning_rl_nolang": 0.20}.get(model, 0.0)
        readable = 1.0 if model.startswith("reasoning") or model.endswith("distill") else 0.0
        _write_eval(project, model, {b: _problems(_scores(mean, seed=seed), mixing=mixing, readable=readable)
                                     for b in BENCHES})
    for stage, mixing in (("r1_zero", 0.08), ("reasoning_rl", 0.01), ("reasoning_rl_nolang", 0.09)):
        steps = project / "artifacts" / stage / "steps.json"
        steps.parent.mkdir(parents=True)
        rows = [{"step": i, "reward": i / 20, "response_length": 30.0 + i, "reflection_rate": 0.06 - 0.002 * i,
                 "mixing_rate": 0.5 if i < 10 else mixing + 0.002 * (i % 2)} for i in range(1, 21)]
        steps.write_text(json.dumps(rows))

    proc = run_cli(["stage", "report"], project)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = project / "artifacts" / "report"
    report = (out / "report.md").read_text()
    assert "| base | 30.0 | 30.0 | 30.0 | 30.0 |" in report  # Table-4 layout: pass@1, cons@k per benchmark
    assert "Not evaluated: r1." in report
    assert "every verdict here is one run of the recipe" in report  # the intervals do not cover training
    rows = {line.split(" | ")[0].lstrip("| "): line for line in report.splitlines() if line.startswith("| ")}
    assert rows["pure RL lifts the base: pass@1"].endswith("| 300 | holds |")
    assert "r1_zero 50.0% | base 30.0% | 20.0% [" in rows["pure RL lifts the base: pass@1"]
    assert rows["response length grows during R1-Zero RL: rollouts' mean length"].endswith("| holds |")
    assert rows["reflection rises during R1-Zero RL: rollouts with a re-check"].endswith("| does not hold |")
    assert rows["the language reward reduces mixing: rollouts, same start and steps"].endswith("| holds |")
    assert rows["the language reward reduces mixing: at evaluation"].endswith("| does not hold |")
    assert rows["cold start gives readable output: readable rate"].endswith("| holds |")
    assert "not measured: r1 has no per-problem scores" in rows["R1 beats R1-Zero: pass@1"]
    assert rows["distillation beats RL on student s64: pass@1"].endswith("| holds |")
    assert "not measured" in rows["thinking longer raises accuracy: r1 pass@1"]
    assert rows["thinking longer raises accuracy: r1_zero pass@1 by thinking budget"].endswith("| holds |")
    assert "24 tokens 50.0% | 12 tokens 0.0%" in rows["thinking longer raises accuracy: r1_zero pass@1 by thinking budget"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["rl_lifts_base"]["verdict"] == 1 and metrics["reflection_rises"]["verdict"] == -1
    assert "r1_beats_r1_zero" not in metrics and metrics["findings"]["not_measured"] == 2
    found = json.loads((out / "findings.json").read_text())
    assert len(found) == 11 and all(f["verdict"] in (stats.HOLDS, stats.FAILS, stats.INCONCLUSIVE,
                                                     stats.NOT_MEASURED) for f in found)
    for plot in ("reward", "response_length", "reflection_rate", "budget", "cons_at"):
        assert (out / "plots" / f"{plot}.png").stat().st_size > 1000
    html = (out / "report.html").read_text()
    assert "<table>" in html and 'src="plots/budget.png"' in html


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
