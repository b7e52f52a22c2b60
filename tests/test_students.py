"""Distillation into smaller students and the RL-only baseline (paper 2.4 / 4.1), on a tiny preset.

Stages run in-process through ``flows.cli.run_stage`` (the path of `r1flow stage NAME@ITEM`)
in one project folder per module: student@s64, then traces, then distill@s64 and
rl_student@s64 from them.
"""

from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path

import pytest
import yaml

TINY = {
    "student": {"corpus_size": 200, "max_steps": 3, "batch_size": 16, "micro_batch": 16, "warmup_steps": 1,
                "vocab_size": 300, "checkpoint_every": 0},
    "traces": {"dataset": "arithmetic", "dataset_size": 4, "samples_per_prompt": 2, "max_new_tokens": 12},
    "distill": {"max_steps": 2, "batch_size": 8, "micro_batch": 8, "warmup_steps": 1, "checkpoint_every": 0},
    "rl_student": {"steps": 2, "prompts_per_step": 2, "num_generations": 4, "micro_batch": 8, "max_completion_length": 12,
                   "dataset": "arithmetic", "dataset_size": 16, "checkpoint_every": 0, "sample_every": 0},
}


def _stage(instance: str, *overrides: str) -> dict:
    from flows.cli import run_stage

    return run_stage(instance, [f"--set={o}" for o in overrides])


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _solved(row: dict, language: str = "en") -> dict:
    """``row`` with a correct, readable worked solution written in ``language``."""
    from data.filters import to_readable
    from data.synthetic import Noise, solve_arithmetic

    clean = Noise(slip=0.0, forget_carry=0.0, fix=0.0, unformatted=0.0)
    terms = [int(x) for x in row["prompt"].removeprefix("Compute ").split(" + ")]
    reasoning, answer = solve_arithmetic(terms, random.Random(0), clean, language=language)
    return {**row, "completion": to_readable(f"<think> {reasoning} </think> <answer> {answer} </answer>")}


def _candidates() -> list[dict]:
    """Readable correct traces plus one of each kind the traces stage must drop."""
    from data.synthetic import make_rows

    rows = [_solved(row) for row in make_rows("arithmetic", "train", 6, seed=1)]
    good, wrong = rows[0], rows[1]
    return rows + [
        {**good, "id": "dup"},
        {**good, "id": "second", "completion": good["completion"].replace("<think> ", "<think> so ", 1)},
        {**good, "id": "third", "completion": good["completion"].replace("<think> ", "<think> ok ", 1)},
        {**wrong, "id": "wrong", "completion": wrong["completion"].replace(wrong["answer"] + "}", "1}")},
        {**rows[2], "id": "tagged", "completion": f"<think> x </think> <answer> {rows[2]['answer']} </answer>"},
        {**_solved(rows[3], language="ru"), "id": "russian"},
    ]


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_base):
    root = tmp_path_factory.mktemp("students")
    candidates = root / "candidates.jsonl"
    candidates.write_text("".join(json.dumps(r) + "\n" for r in _candidates()))
    params = {**TINY, "traces": {**TINY["traces"], "model": str(tiny_base), "files": [str(candidates)]}}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        yield root


@pytest.fixture(scope="module")
def student(project) -> Path:
    _stage("student@s64")
    return project / "artifacts" / "student" / "s64"


@pytest.fixture(scope="module")
def traces(project) -> Path:
    _stage("traces")
    return project / "artifacts" / "traces"


def test_student_has_exactly_the_requested_size(student):
    from model import factory

    config = json.loads((student / "model" / "config.json").read_text())
    assert (config["hidden_size"], config["num_hidden_layers"], config["num_attention_heads"],
            config["num_key_value_heads"], config["intermediate_size"]) == (64, 2, 2, 1, 192)
    metrics = json.loads((student / "metrics.json").read_text())
    model = factory.load_model(student / "model")
    assert sum(p.numel() for p in model.parameters()) == metrics["parameters"]
    assert len(_jsonl(student / "steps.jsonl")) == 3 and (student / "corpus.jsonl").is_file()


def test_unknown_student_fails_naming_the_known_ones(project):
    with pytest.raises(SystemExit) as err:
        _stage("student@s999")
    assert "s999" in str(err.value) and "'s64', 's96'" in str(err.value)
    assert not (project / "artifacts" / "student" / "s999").exists()


def test_traces_are_correct_readable_single_language_and_checked(traces):
    from data.quality import check_rows
    from model.rewards import get_reward

    rows = _jsonl(traces / "traces.jsonl")
    kept = {r["id"] for r in rows if not re.search(r"-s\d+$", r["id"])}  # the random teacher's samples can't pass
    assert kept == {f"arithmetic-train-{i:05d}" for i in range(6)} | {"second"}  # 2 per prompt at most
    columns = {k: [r.get(k) for r in rows] for k in ("answer", "source")}
    assert get_reward("accuracy")([r["completion"] for r in rows], **columns) == [1.0] * len(rows)
    assert get_reward("readable_format")([r["completion"] for r in rows]) == [1.0] * len(rows)
    assert check_rows(rows, "traces").success
    metrics = json.loads((traces / "metrics.json").read_text())
    assert metrics["candidates"] == 4 * 2 + 12  # teacher samples + file rows
    assert {k: metrics[f"removed/{k}"] for k in ("readable", "correct", "single_language", "duplicate",
                                                  "per_prompt_cap")} == {
        "readable": 8 + 1, "correct": 1, "single_language": 1, "duplicate": 1, "per_prompt_cap": 1}


def test_distill_changes_every_student_parameter(student, traces, project):
    from model import factory

    metrics = _stage("distill@s64")
    out = project / "artifacts" / "distill" / "s64"
    before = factory.load_model(student / "model").state_dict()
    after = factory.load_model(out / "model").state_dict()
    unchanged = [name for name, tensor in before.items() if after[name].equal(tensor)]
    assert not unchanged, f"parameters the distillation did not train: {unchanged}"
    assert metrics["steps_done"] == 2 and math.isfinite(metrics["loss"])
    assert json.loads((out / "metrics.json").read_text())["rows"] == len(_jsonl(traces / "traces.jsonl"))


def test_rl_student_writes_its_steps_and_policy(student, project):
    _stage("rl_student@s64")
    out = project / "artifacts" / "rl_student" / "s64"
    steps = _jsonl(out / "steps.jsonl")
    assert [s["step"] for s in steps] == [1, 2] and {"reward", "accuracy", "kl"} <= set(steps[0])
    assert (out / "model" / "model.safetensors").is_file() and (out / "prompts.jsonl").is_file()
    assert json.loads((out / "run.json").read_text())["stage"] == "rl_student@s64"


def test_student_sizes_are_checked_up_front():
    from model.stages.student import StudentConfig

    with pytest.raises(ValueError, match="sizes.odd: hidden_size must divide by num_heads"):
        StudentConfig(sizes={"odd": {"hidden_size": 50, "num_heads": 3}})
    with pytest.raises(ValueError, match=r"sizes.s1: unknown keys \['width'\]"):
        StudentConfig(sizes={"s1": {"width": 8}})
