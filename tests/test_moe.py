"""The Mixture-of-Experts base (``base.architecture: moe``): the router's load-balancing loss is
in every trainer's loss, expert load is logged per step, and base -> r1_zero -> evaluate runs
on CPU as a user runs it."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from conftest import run_cli
from test_stages import _ok, _project


def _tiny_moe(family: str, coef: float = 0.5):
    from model import factory

    tokenizer = factory.train_tokenizer(["Compute 1 + 2 <think> 1 + 2 = 3 </think> <answer> 3 </answer>"] * 20,
                                        vocab_size=120)
    model = factory.build_tiny_model(tokenizer, family=family, architecture="moe", hidden_size=16, num_layers=2,
                                     num_heads=2, num_kv_heads=1, intermediate_size=16, num_experts=4,
                                     num_experts_per_tok=2, router_aux_loss_coef=coef)
    return tokenizer, model


@pytest.mark.parametrize("family, model_type", [("llama", "mixtral"), ("qwen2", "qwen2_moe")])
def test_the_balancing_loss_is_added_and_trains_the_router(family, model_type):
    from model.moe import RouterLoss

    _, model = _tiny_moe(family)
    assert model.config.model_type == model_type
    router = RouterLoss(model)
    model.train()
    ids = torch.randint(3, 100, (3, 7))
    mask = torch.ones_like(ids)
    mask[0, :3] = 0  # left padding: not routed tokens
    out = model(input_ids=ids, attention_mask=mask)
    # The causal LM's own balancing loss on the same router logits (what it adds given labels).
    expected = sys.modules[type(model).__module__].load_balancing_loss_func(out.router_logits, 4, 2, mask)
    base_loss = out.logits.float().pow(2).mean()
    loss = router.add_to(base_loss)
    assert loss.item() == pytest.approx(base_loss.item() + 0.5 * expected.item(), rel=1e-6)
    loss.backward()
    gates = [p for n, p in model.named_parameters() if n.endswith("gate.weight") and p.shape[0] == 4]
    assert gates and all(g.grad is not None and g.grad.abs().sum() > 0 for g in gates)
    metrics = router.step_metrics()
    shares = [metrics[f"expert_load/e{i}"] for i in range(4)]
    assert sum(shares) == pytest.approx(1.0) and metrics["aux_loss"] > 0
    assert 1.0 <= metrics["expert_load_max"] <= 4.0
    assert router.step_metrics() == {}  # reset after each step
    with torch.no_grad():  # rollouts and reference passes are not trained on
        model(input_ids=ids, attention_mask=mask)
    assert router.add_to(base_loss) is base_loss
    router.remove()  # training over: the model forwards as it did before the hooks
    model(input_ids=ids, attention_mask=mask)
    assert router.add_to(base_loss) is base_loss and router.step_metrics() == {}


def test_the_reward_models_head_gets_the_balancing_loss_too(tmp_path):
    """A sequence-classification head drops the router logits; the hook on the decoder body
    still sees them."""
    from model.moe import RouterLoss
    from model.reward_model import from_base

    tokenizer, model = _tiny_moe("llama")
    model.save_pretrained(tmp_path / "moe")
    tokenizer.save_pretrained(tmp_path / "moe")
    reward_model = from_base(tmp_path / "moe", tokenizer)
    router = RouterLoss(reward_model)
    reward_model.train()
    ids = torch.randint(3, 100, (2, 6))
    score = reward_model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.sum()
    loss = router.add_to(score)
    assert loss.item() > score.item()  # a positive balancing loss, weighted 0.5
    loss.backward()
    gates = [p for n, p in reward_model.named_parameters() if n.endswith("gate.weight") and p.shape[0] == 4]
    assert gates and all(g.grad is not None and g.grad.abs().sum() > 0 for g in gates)
    assert router.step_metrics()["aux_loss"] > 0


def test_a_dense_model_is_left_alone(tiny_base):
    from model import factory
    from model.moe import RouterLoss, is_moe

    _, model, _ = factory.load_pinned(str(tiny_base))
    router = RouterLoss(model)
    loss = torch.tensor(1.0)
    assert not is_moe(model) and router.add_to(loss) is loss and router.step_metrics() == {}


def test_moe_base_trains_then_r1_zero_then_evaluate(tmp_path):
    project = _project(tmp_path, base={"architecture": "moe", "num_experts": 4, "num_experts_per_tok": 2},
                       evaluate={"benchmarks": ["arithmetic_test"]})
    for stage in ("base", "r1_zero"):
        _ok(run_cli(["stage", stage], project))
        config = json.loads((project / "artifacts" / stage / "model" / "config.json").read_text())
        assert config["model_type"] == "mixtral" and config["num_local_experts"] == 4
        steps = [json.loads(line) for line in (project / "artifacts" / stage / "steps.jsonl").read_text().splitlines()]
        for step in steps:  # every step logs the balancing loss and each expert's share of the load
            assert step["aux_loss"] > 0
            assert sum(step[f"expert_load/e{i}"] for i in range(4)) == pytest.approx(1.0)
    _ok(run_cli(["stage", "evaluate", "--set", "models={moe_r1_zero: artifacts/r1_zero/model}"], project))
    results = json.loads((project / "artifacts" / "evaluate" / "metrics.json").read_text())
    assert 0.0 <= results["moe_r1_zero"]["arithmetic_test"]["pass@1"] <= 1.0


def test_an_unknown_architecture_is_refused_by_name(tmp_path):
    project = _project(tmp_path, base={"architecture": "sparse"})
    proc = run_cli(["stage", "base"], project)
    assert proc.returncode != 0 and "architecture must be one of ('dense', 'moe')" in proc.stderr
