"""Stages run as a user runs them (`r1flow stage NAME`), on small presets."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from conftest import run_cli
from presets import SMALL


def _project(tmp_path: Path, **sections) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    params = {k: {**v, **sections.get(k, {})} for k, v in SMALL.items()}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp_path


def _ok(proc):
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def test_base_then_evaluate(tmp_path):
    project = _project(tmp_path)
    _ok(run_cli(["stage", "base"], project))
    out = project / "artifacts" / "base"
    assert (out / "model" / "model.safetensors").is_file() and (out / "model" / "tokenizer.json").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["trained"] == 1 and metrics["corpus_rows"] == 300
    assert 0 < metrics["corpus_reflection_share"] < 0.5
    steps = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == list(range(1, 7)) and steps[-1]["loss"] < steps[0]["loss"]

    _ok(run_cli(["stage", "evaluate", "--set", "models={base: artifacts/base/model}"], project))
    results = json.loads((project / "artifacts" / "evaluate" / "metrics.json").read_text())
    assert set(results) == {"base"} and set(results["base"]) == {"arithmetic_test", "countdown_hard"}
    for bench in results["base"].values():
        assert {"pass@1", "cons@k", "greedy", "mean_length", "reflection_rate"} <= set(bench)
        assert 0.0 <= bench["pass@1"] <= 1.0 and bench["k"] == 2
        # test-time scaling: vote sizes 1..k, budgets a quarter to all of max_new_tokens (12)
        assert sorted(bench["cons_at"]) == ["1", "2"] and bench["cons_at"]["2"] == bench["cons@k"]
        assert sorted(map(int, bench["budget_pass@1"])) == [3, 6, 9, 12]
        # budget forcing at the full budget: the samples that never finished are asked to answer
        assert bench["budget_pass@1"]["12"] >= bench["pass@1"]
    assert "| arithmetic_test |" in (project / "artifacts" / "evaluate" / "table.md").read_text()
    problems = json.loads((project / "artifacts" / "evaluate" / "problems.json").read_text())
    scores = problems["base"]["arithmetic_test"]
    n = results["base"]["arithmetic_test"]["n"]
    assert len(scores["id"]) == len(scores["pass@1"]) == len(set(scores["key"])) == n
    assert scores["protocol"] == {"k": 2, "temperature": 0.6, "top_p": 0.95, "max_new_tokens": 12, "seed": 0}
    assert sum(scores["pass@1"]) / len(scores["pass@1"]) == results["base"]["arithmetic_test"]["pass@1"]


def test_named_base_model_is_referenced_not_trained(tmp_path, tiny_base):
    project = _project(tmp_path, base={"model": str(tiny_base)})
    _ok(run_cli(["stage", "base"], project))
    from model import factory

    assert factory.resolve(project / "artifacts" / "base" / "model") == str(tiny_base)
    assert factory.load_tokenizer(project / "artifacts" / "base" / "model").eos_token is not None


def test_bad_dataset_names_file_line_and_field(tmp_path, tiny_base):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "prompt": "Compute 1 + 1", "answer": "2", "source": "x"}\n'
                   '{"id": "b", "prompt": 7, "answer": "3", "source": "x"}\n')
    project = _project(tmp_path, r1_zero={"model": str(tiny_base), "dataset": str(bad)})
    proc = run_cli(["stage", "r1_zero"], project)
    assert proc.returncode != 0
    assert "bad.jsonl line 2" in proc.stderr and "'prompt'" in proc.stderr
    assert not (project / "artifacts" / "r1_zero" / "model").exists()


def test_unknown_key_fails_before_any_work(tmp_path):
    project = _project(tmp_path)
    proc = run_cli(["stage", "r1_zero", "--set", "learning_rate=1"], project)
    assert proc.returncode != 0 and "unknown key 'learning_rate'" in proc.stderr
    assert not (project / "artifacts").exists()


def test_dataset_breaking_a_quality_rule_fails_and_keeps_the_previous_version(tmp_path, tiny_base):
    project = _project(tmp_path, r1_zero={"model": str(tiny_base), "steps": 1, "checkpoint_every": 0})
    _ok(run_cli(["stage", "r1_zero"], project))
    out = project / "artifacts" / "r1_zero"
    before = {p: (out / p).read_bytes() for p in ("prompts.jsonl", "model/model.safetensors")}

    bad = tmp_path / "prompts.jsonl"  # well-formed rows, but an arithmetic answer that is no integer
    bad.write_text("".join(json.dumps({"id": f"r{i}", "prompt": f"Compute {i} + 1", "answer": str(i + 1),
                                       "source": "arithmetic"}) + "\n" for i in range(7))
                   + json.dumps({"id": "r7", "prompt": "Compute 7 + 1", "answer": "eight",
                                 "source": "arithmetic"}) + "\n")
    proc = run_cli(["stage", "r1_zero", "--set", f"dataset={bad}"], project)
    assert proc.returncode != 0
    assert "expect_column_values_to_match_regex" in proc.stderr and "answer" in proc.stderr
    assert "r7" in proc.stderr  # the offending row is named
    assert {p: (out / p).read_bytes() for p in before} == before


def _candidate_rows() -> list[dict]:
    """Good cold-start candidates plus one of each kind the curation must remove."""
    import random

    from data.loaders import load_gsm8k
    from data.synthetic import Noise, make_rows, solve_arithmetic

    clean = Noise(slip=0.0, forget_carry=0.0, fix=0.0, unformatted=0.0)
    rows = []
    for row in make_rows("arithmetic", "train", 30):
        a, b = (int(x) for x in row["prompt"].removeprefix("Compute ").split(" + "))
        reasoning, answer = solve_arithmetic([a, b], random.Random(0), clean)
        rows.append({**row, "completion": f"<think> {reasoning} </think> <answer> {answer} </answer>"})
    good = rows[0]
    rows.append({**good, "id": "dup"})  # exact duplicate
    rows.append({**rows[1], "id": "wrong", "completion": rows[1]["completion"].replace(
        f"<answer> {rows[1]['answer']} </answer>", "<answer> 1 </answer>")})
    rows.append({**rows[2], "id": "mixed", "completion": rows[2]["completion"].replace("write", "пишем", 1)})
    question = load_gsm8k()[0]["prompt"]
    rows.append({**good, "id": "leak", "prompt": question})  # an evaluation question
    return rows


def test_cold_start_then_sft_cold_then_reasoning_rl(tmp_path, tiny_base):
    candidates = tmp_path / "candidates.jsonl"
    candidates.write_text("".join(json.dumps(r) + "\n" for r in _candidate_rows()))
    project = _project(tmp_path / "p")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["cold_start"] = {"model": "", "few_shot_model": "", "files": [str(candidates)], "eval_sets": ["gsm8k"]}
    params["sft_cold"] = {"model": str(tiny_base), "max_steps": 2, "batch_size": 8, "micro_batch": 8,
                          "warmup_steps": 1, "checkpoint_every": 0}
    params["reasoning_rl"] = {**SMALL["r1_zero"], "steps": 2, "checkpoint_every": 0}
    (project / "params.yaml").write_text(yaml.safe_dump(params))

    _ok(run_cli(["stage", "cold_start"], project))
    metrics = json.loads((project / "artifacts" / "cold_start" / "metrics.json").read_text())
    assert metrics["candidates"] == 34 and metrics["kept"] == 30
    assert (metrics["removed/dedupe_exact"], metrics["removed/correct"], metrics["removed/single_language"],
            metrics["removed/decontaminate"]) == (1, 1, 1, 1)
    kept = [json.loads(line) for line in (project / "artifacts" / "cold_start" / "data.jsonl").open()]
    assert all(r["completion"].endswith(f"The answer is \\boxed{{{r['answer']}}}.") for r in kept)

    _ok(run_cli(["stage", "sft_cold"], project))
    assert (project / "artifacts" / "sft_cold" / "model" / "model.safetensors").is_file()

    _ok(run_cli(["stage", "reasoning_rl"], project))
    steps = _steps_of(project, "reasoning_rl")
    assert len(steps) == 2
    assert {"reward/language_consistency", "reward/readable_format", "mixing_rate"} <= set(steps[0])
    prompts = [json.loads(line) for line in (project / "artifacts" / "reasoning_rl" / "prompts.jsonl").open()]
    assert all(p["language"] == "en" for p in prompts)


def _steps_of(project: Path, stage: str) -> list[dict]:
    return [json.loads(line) for line in (project / "artifacts" / stage / "steps.jsonl").read_text().splitlines()]
