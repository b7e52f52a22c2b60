"""Reward models: the Bradley-Terry loss, training on DeepSpeed, the stage, the data suites."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
import torch
import yaml

from conftest import DIST_VARS
from data.preferences import harmlessness_rows, preference_pairs
from data.quality import DataQualityError, check_rows
from model import factory
from model import reward_model as rm


def _fresh(tiny_base, seed: int = 0):
    tokenizer = factory.load_tokenizer(tiny_base)
    return rm.from_base(tiny_base, tokenizer, seed=seed), tokenizer


def _split(rows: list[dict], split: str) -> list[dict]:
    return [r for r in rows if r["split"] == split]


def test_bradley_terry_loss_matches_a_hand_computation():
    r_chosen, r_rejected = torch.tensor([1.0, -0.5, 2.0]), torch.tensor([0.0, 0.5, 2.0])
    # -log sigmoid(d) = log(1 + exp(-d)) for d = 1, -1, 0
    hand = (math.log(1 + math.exp(-1)) + math.log(1 + math.exp(1)) + math.log(2)) / 3
    assert rm.bradley_terry_loss(r_chosen, r_rejected).item() == pytest.approx(hand, rel=1e-6)
    # pointwise: -[y log sigmoid(r) + (1 - y) log(1 - sigmoid(r))]
    r, y = torch.tensor([2.0, -1.0]), torch.tensor([1, 1])
    hand = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(1))) / 2
    assert rm.pointwise_loss(r, y).item() == pytest.approx(hand, rel=1e-6)


def test_reward_model_keeps_the_base_body_and_pads_right(tiny_base):
    model, tokenizer = _fresh(tiny_base)
    base = factory.load_model(tiny_base)
    assert model.config.num_labels == 1 and model.config.pad_token_id == tokenizer.pad_token_id
    assert torch.equal(model.model.layers[0].mlp.up_proj.weight, base.model.layers[0].mlp.up_proj.weight)
    prompts, responses = ["Compute 1 + 2", "What is the capital of France?"], ["3 .", "The capital of France is Paris ."]
    together = rm.score(model, tokenizer, prompts, responses, batch_size=2)
    alone = [rm.score(model, tokenizer, [p], [r])[0] for p, r in zip(prompts, responses)]
    assert together == pytest.approx(alone, abs=1e-5)  # padding does not change a reward


@pytest.mark.parametrize("objective,rows", [
    ("bradley_terry", lambda: preference_pairs(16, seed=0)),
    ("pointwise", lambda: harmlessness_rows(16, seed=0)),
])
def test_one_step_updates_every_parameter(tiny_base, tmp_path, objective, rows):
    model, tokenizer = _fresh(tiny_base)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    args = rm.RewardArgs(batch_size=8, micro_batch=4, warmup_steps=0, checkpoint_every=0)
    trainer = rm.RewardTrainer(model, tokenizer, args, tmp_path, objective=objective, name="m")
    metrics = trainer.train(rows(), total_steps=1)
    assert math.isfinite(metrics["m_loss"]) and metrics["m_grad_norm"] > 0
    unchanged = [n for n, p in model.named_parameters() if p.requires_grad and torch.equal(before[n], p.detach())]
    assert unchanged == []


def test_finished_training_resumes_at_its_last_step(tiny_base, tmp_path):
    rows = preference_pairs(32, seed=0)
    args = rm.RewardArgs(batch_size=8, micro_batch=8, warmup_steps=0, checkpoint_every=1)
    first = rm.RewardTrainer(*_fresh(tiny_base), args, tmp_path, objective="bradley_terry", name="h")
    first.train(rows, total_steps=2)
    again = rm.RewardTrainer(*_fresh(tiny_base, seed=1), args, tmp_path, objective="bradley_terry", name="h")
    assert again.train(rows, total_steps=2) == {}  # nothing left to train
    assert [r["step"] for r in again.steps.read()] == [1, 2]
    for a, b in zip(first.engine.module.parameters(), again.engine.module.parameters()):
        assert torch.equal(a, b)  # the trained weights came back, not the new seed's head


def test_short_training_beats_chance_on_held_out_pairs(tiny_base, tmp_path):
    pairs = preference_pairs(600, seed=0)
    train, test = _split(pairs, "train"), _split(pairs, "test")
    assert not {r["prompt"] for r in train} & {r["prompt"] for r in test}
    model, tokenizer = _fresh(tiny_base)
    args = rm.RewardArgs(batch_size=32, micro_batch=32, warmup_steps=5, checkpoint_every=0, lr=3e-3)
    trainer = rm.RewardTrainer(model, tokenizer, args, tmp_path, objective="bradley_terry", name="h")
    trainer.train(train, total_steps=30)
    margins = rm.pair_margins(trainer.engine.module, tokenizer, test)
    # Measured (torch 2.13 CPU): 0.647 overall at seed 0, 0.63-0.68 over seeds 0-2 and 30/60 steps;
    # evasive and content-free rejections >= 0.9, wrong answers of unseen prompts near chance.
    assert rm.pair_accuracy(margins) > 0.5
    surface = [m for m, r in zip(margins, test) if r["kind"] in ("evasive", "empty")]
    assert rm.pair_accuracy(surface) > 0.8


def test_stage_writes_checked_data_loadable_models_and_accuracies(tiny_base, tmp_path):
    params = {"reward_model": {"model": str(tiny_base), "pairs": 200, "harmless_rows": 120, "helpful_steps": 4,
                               "harmless_steps": 3, "batch_size": 8, "micro_batch": 8, "checkpoint_every": 2}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = {k: v for k, v in os.environ.items() if k not in DIST_VARS}
    code = "import sys; from model.stages.reward_model import main; main(sys.argv[1:])"
    proc = subprocess.run([sys.executable, "-c", code, "--params", "params.yaml"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = tmp_path / "artifacts" / "reward_model"
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("helpful_pair_accuracy", "harmless_accuracy", "harmless_pair_accuracy"):
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics["pairs_train"] + metrics["pairs_test"] == 200
    from transformers import AutoModelForSequenceClassification

    for name in ("helpful", "harmless"):
        model = AutoModelForSequenceClassification.from_pretrained(out / name)
        assert model.config.num_labels == 1
        (reward,) = rm.score(model, factory.load_tokenizer(out / name), ["Compute 1 + 2"], ["3 ."])
        assert math.isfinite(reward)
    steps = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == [1, 2, 3, 4] and "harmless_loss" in steps[2] and "harmless_loss" not in steps[3]
    assert len((out / "preferences.jsonl").read_text().splitlines()) == 200
    assert (out / "quality" / "preferences.json").is_file() and (out / "quality" / "harmlessness.json").is_file()
    assert not (out / "checkpoints").exists()


def test_good_reward_data_pass_their_suites():
    assert check_rows(preference_pairs(200, seed=0), "preferences").success
    assert check_rows(harmlessness_rows(200, seed=0), "harmlessness").success


def test_pair_with_chosen_equal_to_rejected_fails_the_suite_naming_rule_and_row():
    rows = preference_pairs(50, seed=0)
    rows[7]["rejected"] = rows[7]["chosen"]
    with pytest.raises(DataQualityError) as err:
        check_rows(rows, "preferences", path="preferences.jsonl")
    message = str(err.value)
    assert "expect_select_column_values_to_be_unique_within_record" in message and "[contrast]" in message
    assert rows[7]["id"] in message


@pytest.mark.parametrize("field,value,rule", [
    ("label", 2, "expect_column_values_to_be_in_set on 'label' [binary]"),
    ("response", "  ", "expect_column_values_to_match_regex on 'response' [content]"),
    ("split", "dev", "expect_column_values_to_be_in_set on 'split' [holdout]"),
])
def test_broken_harmlessness_rows_fail_their_rule(field, value, rule):
    rows = harmlessness_rows(50, seed=0)
    rows[3][field] = value
    with pytest.raises(DataQualityError) as err:
        check_rows(rows, "harmlessness")
    assert rule in str(err.value) and rows[3]["id"] in str(err.value)


def test_splits_are_disjoint_by_prompt_and_unsafe_intent():
    rows = harmlessness_rows(600, seed=0)
    train, test = _split(rows, "train"), _split(rows, "test")
    assert test and not {r["prompt"] for r in train} & {r["prompt"] for r in test}
    assert {r["kind"] for r in test} == {"refusal", "compliance", "safe"}
    pairs = preference_pairs(400, seed=0)
    assert preference_pairs(400, seed=0) == pairs and preference_pairs(400, seed=1) != pairs
