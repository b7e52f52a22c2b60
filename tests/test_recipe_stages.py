"""The second half of the R1 recipe: rejection sampling, SFT on the mix, learned rewards and
all-scenario RL (paper 2.3.3-2.3.4), on the tiny base and tiny reward models trained here."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from conftest import run_cli
from data.general import general_prompts
from data.preferences import harmlessness_rows, preference_pairs
from data.synthetic import make_rows
from model import factory
from model import reward_model as rm
from model.rewards import get_reward, use_reward_models

RULES = ("accuracy", "readable_format", "language_consistency")


@pytest.fixture(scope="module")
def reward_models(tiny_base, tmp_path_factory) -> dict[str, Path]:
    """Helpfulness (Bradley-Terry) and harmlessness (pointwise) models, two steps each."""
    out = tmp_path_factory.mktemp("rm")
    tokenizer = factory.load_tokenizer(tiny_base)
    args = rm.RewardArgs(batch_size=8, micro_batch=8, warmup_steps=0, checkpoint_every=0)
    paths = {}
    for name, objective, rows in (("helpful", "bradley_terry", preference_pairs(16, seed=0)),
                                  ("harmless", "pointwise", harmlessness_rows(16, seed=0))):
        trainer = rm.RewardTrainer(rm.from_base(tiny_base, tokenizer), tokenizer, args, out,
                                   objective=objective, name=name)
        trainer.train(rows, total_steps=2)
        paths[name] = factory.save_pretrained(trainer.engine.module, tokenizer, out / name)
    return paths


@pytest.fixture
def learned(reward_models):
    use_reward_models(helpfulness=reward_models["helpful"], harmlessness=reward_models["harmless"])
    yield
    use_reward_models(helpfulness=None, harmlessness=None)


# ----------------------------------------------------------------------------- rewards


def test_learned_rewards_apply_to_general_rows_only(learned):
    texts = ["<think> The user asks for a capital . </think> The capital of France is Paris .",
             "<think> Something else entirely . </think> The capital of France is Paris .",
             "<think> 1 + 2 = 3 </think> The answer is \\boxed{3}.",
             "<think> no summary follows"]
    columns = {"prompt": ["What is the capital of France?"] * 2 + ["Compute 1 + 2", "Capital of Peru?"],
               "kind": ["general", "general", "reasoning", "general"]}
    helpful = get_reward("helpfulness")(texts, **columns)
    harmless = get_reward("harmlessness")(texts, **columns)
    assert helpful[2] is None and harmless[2] is None  # reasoning rows get the rule rewards
    assert all(0.0 < v < 1.0 for v in helpful[:2] + harmless[:2])  # squashed into (0, 1)
    assert helpful[0] == pytest.approx(helpful[1], abs=1e-6)  # the summary only
    assert harmless[0] != pytest.approx(harmless[1], abs=1e-6)  # the whole response
    assert helpful[3] == 0.0  # no summary: the floor
    assert get_reward("helpfulness")(texts, **{**columns, "kind": ["reasoning"] * 4}) == [None] * 4


def test_rule_rewards_do_not_apply_to_general_prompts():
    rows = general_prompts(6, seed=0, unsafe_share=0.5)
    columns = {k: [r[k] for r in rows] for k in rows[0]}
    texts = ["<think> ok </think> The answer is \\boxed{Paris}."] * len(rows)
    assert get_reward("accuracy")(texts, **columns) == [None] * len(rows)
    assert get_reward("code")(texts, **columns) == [None] * len(rows)


def test_unconfigured_learned_reward_fails_only_when_it_applies():
    use_reward_models(helpfulness=None)
    reward = get_reward("helpfulness")
    assert reward(["<think> a </think> b"], prompt=["q"], kind=["reasoning"]) == [None]
    with pytest.raises(RuntimeError, match="use_reward_models"):
        reward(["<think> a </think> b"], prompt=["q"], kind=["general"])


def test_all_scenario_config_validates_learned_rewards_before_any_model_exists():
    from infra.config import ConfigError, build_config
    from model.stages.all_scenario_rl import AllScenarioRLConfig

    cfg = AllScenarioRLConfig(steps=8, general_from=0.75)  # names resolve: no model is loaded yet
    assert cfg.general_from_step == 7
    with pytest.raises(ConfigError, match="helpful_model"):
        build_config(AllScenarioRLConfig, {"helpful_model": ""})
    with pytest.raises(ConfigError, match="unknown reward 'helpfullness'"):
        build_config(AllScenarioRLConfig, {"rewards": {"helpfullness": 1.0}})


def test_grpo_draws_rows_only_from_their_from_step(tiny_base, tmp_path):
    from model.grpo import GRPOArgs, GRPOTrainer

    rows = make_rows("arithmetic", "train", 8) + [{**r, "from_step": 3} for r in general_prompts(24, seed=0)]
    args = GRPOArgs(prompts_per_step=8, num_generations=2, micro_batch=16, rewards={"format": 1.0})
    trainer = GRPOTrainer(factory.load_model(tiny_base), factory.load_tokenizer(tiny_base), rows, args, tmp_path)
    kinds = {step: {rows[i].get("kind") for i in trainer._sample_prompts(step)} for step in (1, 2, 3, 4)}
    assert kinds[1] == kinds[2] == {None} and "general" in kinds[3] and "general" in kinds[4]
    assert "from_step" not in trainer.columns and "prompt" in trainer.columns


# ----------------------------------------------------------------------------- stages


def _scripted(answer: str, pattern: int) -> list[str]:
    """Four samples for one prompt; pattern = prompt index % 4 (see test_rejection_sampling)."""
    def good(reasoning: str, value: str = answer) -> str:
        return f"<think> {reasoning} </think> The answer is \\boxed{{{value}}}."

    wrong = str(int(answer) + 1)
    return [
        [good("add the digits"), good("add the digits"), good("add them up"), good("sum the terms")],
        [good("add the digits"), good("add the digits"), good("sum the terms"), good("add them", wrong)],
        [f"<think> add </think> <answer> {answer} </answer>", good("add the пишем digits"),
         good("add", wrong), good("sum", wrong)],
        ["<think> I am not sure", good("add", wrong), good("sum", wrong), good("carry", wrong)],
    ][pattern]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("project")


@pytest.fixture(scope="module")
def rejection(project, tiny_base):
    """rejection_sampling on 8 arithmetic prompts with scripted samples (patterns 0-3 twice)."""
    from model.stages import rejection_sampling as stage

    def sample(model, tokenizer, rows, *, n, temperature, protocol):
        texts = [t for i, r in enumerate(rows) for t in _scripted(r["answer"], i % 4)]
        return texts, [len(t) for t in texts]

    cfg = stage.RejectionSamplingConfig(model=str(tiny_base), dataset="arithmetic", dataset_size=8,
                                        max_pass_rate=0.9, keep_per_prompt=1, general_share=0.5, unsafe_share=0.5)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(project)
        mp.setattr(stage, "sample", sample)
        metrics = stage.run(cfg)
    rows = [json.loads(line) for line in (project / "artifacts" / stage.NAME / "data.jsonl").open()]
    return metrics, rows


def test_rejection_sampling_keeps_correct_readable_single_language_samples(rejection):
    metrics, rows = rejection
    removed = {k.split("/", 1)[1]: v for k, v in metrics.items() if k.startswith("removed/")}
    assert removed == {"readable": 4, "correct": 12, "single_language": 2, "pass_rate": 8,
                       "duplicate": 2, "per_prompt_cap": 2}
    assert metrics["candidates"] == 32 and metrics["kept"] == 2 and sum(removed.values()) + 2 == 32
    assert [metrics[f"pass_rate_hist/{k}of4"] for k in range(5)] == [2, 0, 2, 2, 2]
    reasoning = [r for r in rows if r["kind"] == "reasoning"]
    texts, columns = [r["completion"] for r in reasoning], {k: [r[k] for r in reasoning] for k in ("answer", "source")}
    for name in RULES:
        assert get_reward(name)(texts, **columns) == [1.0] * len(reasoning), name
    general = [r for r in rows if r["kind"] == "general"]
    assert len(general) == metrics["general_rows"] == 2 and {r["source"] for r in general} & {"safety"}


def test_sft_trains_the_base_on_the_mix(rejection, project, tiny_base, monkeypatch):
    from model.stages import sft

    monkeypatch.chdir(project)
    cfg = sft.SFTConfig(model=str(tiny_base), batch_size=2, micro_batch=2, warmup_steps=0, checkpoint_every=0)
    metrics = sft.run(cfg)
    assert metrics["rows"] == 4 and metrics["steps_done"] == 4 and math.isfinite(metrics["loss"])  # 2 epochs
    before, after = factory.load_model(tiny_base), factory.load_model(project / "artifacts" / "sft" / "model")
    unchanged = [n for (n, p), q in zip(before.named_parameters(), after.parameters()) if torch.equal(p, q)]
    assert unchanged == []


def test_all_scenario_rl_adds_general_prompts_late(tiny_base, reward_models, tmp_path):
    params = {"all_scenario_rl": {
        "model": str(tiny_base), "helpful_model": str(reward_models["helpful"]),
        "harmless_model": str(reward_models["harmless"]), "steps": 4, "general_from": 0.5,
        "prompts_per_step": 4, "num_generations": 4, "micro_batch": 16, "max_completion_length": 12,
        "dataset": "arithmetic", "dataset_size": 16, "general_size": 48, "checkpoint_every": 0, "sample_every": 1}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    proc = run_cli(["stage", "all_scenario_rl"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = tmp_path / "artifacts" / "all_scenario_rl"
    steps = [json.loads(line) for line in (out / "steps.jsonl").open()]
    assert [s["step"] for s in steps] == [1, 2, 3, 4]
    for s in steps[:2]:  # reasoning only: no general prompt, the learned rewards never applied
        assert s["prompt_share/reasoning"] == 1.0 and "prompt_share/general" not in s
        assert math.isnan(s["reward/helpfulness"]) and s["accuracy/arithmetic"] >= 0.0
    for s in steps[2:]:
        assert s["prompt_share/general"] > 0 and 0.0 <= s["reward/helpfulness"] <= 1.0
        assert 0.0 <= s["reward/harmlessness"] <= 1.0 and "reward_kind/general" in s
    prompts = [json.loads(line) for line in (out / "prompts.jsonl").open()]
    assert {p["from_step"] for p in prompts if p["kind"] == "general"} == {3}
    general_ids = {p["id"] for p in prompts if p["kind"] == "general"}
    samples = [json.loads(line) for line in (out / "samples.jsonl").open()]
    assert all(s["id"] not in general_ids for s in samples if s["step"] < 3)
    assert (out / "model" / "model.safetensors").is_file() and (out / "quality" / "prompt_mix.json").is_file()


def test_few_shot_examples_are_correct_readable_turns_before_the_question():
    from data.formatting import few_shot_prompt
    from model.stages.cold_start import worked_examples

    examples = worked_examples(2, seed=0)
    assert len(examples) == 2
    texts = [completion for _, completion in examples]
    assert get_reward("readable_format")(texts) == [1.0, 1.0]
    prompt = few_shot_prompt("Compute 12 + 5", examples)
    assert prompt.endswith("User: Compute 12 + 5. Assistant:")
    assert all(f"User: {q}. Assistant: {c}" in prompt for q, c in examples)
    assert prompt.count("User:") == 3
