"""SFT and GRPO trainers on DeepSpeed (one CPU rank): every parameter learns, runs are pinned."""

from __future__ import annotations

import pytest
import torch

from data.synthetic import make_rows
from model import factory
from model.grpo import GRPOArgs, GRPOTrainer
from model.rewards import REWARDS, register
from model.sft import SFTArgs, SFTTrainer, collate, encode_rows


@pytest.fixture(scope="module", autouse=True)
def length_reward():
    """A reward that always varies within a group, so advantages are never all zero."""
    if "_test_length" not in REWARDS:
        register("_test_length")(lambda completions, **_: [len(c) / 100 for c in completions])
    yield


def _load(path):
    torch.manual_seed(0)
    return factory.load_model(path), factory.load_tokenizer(path)


def _changed(before: dict, model) -> list[str]:
    return [n for n, p in model.named_parameters() if p.requires_grad and torch.equal(before[n], p.detach())]


def test_collate_masks_prompt_and_padding(tiny_base):
    _, tok = _load(tiny_base)
    rows = [{"prompt": "Compute 1 + 2", "completion": "<think> x </think> <answer> 3 </answer>"},
            {"prompt": "Compute 10 + 20", "completion": "<answer> 30 </answer>"}]
    examples = encode_rows(tok, rows, max_length=256)
    batch = collate(examples, tok.pad_token_id)
    for (p, c), labels, mask in zip(examples, batch["labels"], batch["attention_mask"]):
        assert (labels[: len(p)] == -100).all()
        assert labels[len(p): len(p) + len(c)].tolist() == c and c[-1] == tok.eos_token_id
        assert (labels[len(p) + len(c):] == -100).all() and mask.sum() == len(p) + len(c)


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_a_packed_batch_has_the_padded_batchs_loss_and_gradients(family):
    """model/sft.py ``pack``: whole examples share rows, each attending only to itself (the
    position ids restart), so the loss and every gradient are those of the padded batch."""
    from data.formatting import r1_zero_prompt
    from data.synthetic import Noise, base_corpus
    from model import factory
    from model.sft import completion_loss, pack

    rows = base_corpus(40, mix={"arithmetic": 0.5, "countdown": 0.5}, noise=Noise(direct=0.5), seed=1)
    tok = factory.train_tokenizer((r1_zero_prompt(r["prompt"]) + " " + r["completion"] for r in rows),
                                  vocab_size=400)
    model = factory.build_tiny_model(tok, family=family, hidden_size=32, num_layers=2, num_heads=2, num_kv_heads=1,
                                     intermediate_size=64, seed=0)
    examples = encode_rows(tok, rows, 512)
    examples[3] = (examples[3][0], examples[3][1] * 4)  # one long example, as the corpus' long tail has
    packed = pack(examples, tok.pad_token_id)
    assert len(packed["input_ids"]) < len(examples)  # mixed lengths share rows
    assert int((packed["labels"] != -100).sum()) == sum(len(c) for _, c in examples)

    def loss_and_grads(batch):
        model.zero_grad()
        loss, n = completion_loss(model, batch)
        loss.backward()
        return loss.item(), n, [p.grad.clone() for p in model.parameters()]

    padded_loss, padded_n, padded_grads = loss_and_grads(collate(examples, tok.pad_token_id))
    packed_loss, packed_n, packed_grads = loss_and_grads(packed)
    assert packed_n == padded_n and packed_loss == pytest.approx(padded_loss, rel=1e-5)
    for a, b in zip(packed_grads, padded_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_sft_step_updates_every_parameter(tiny_base, tmp_path):
    model, tok = _load(tiny_base)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    rows = [{"prompt": r["prompt"], "completion": f"<answer> {r['answer']} </answer>"}
            for r in make_rows("arithmetic", "train", 8)]
    args = SFTArgs(max_steps=1, batch_size=8, micro_batch=4, warmup_steps=0, checkpoint_every=0)
    metrics = SFTTrainer(model, tok, args, tmp_path).train(rows)
    assert torch.isfinite(torch.tensor(metrics["loss"]))
    assert _changed(before, model) == []


def _grpo_args(**kw) -> GRPOArgs:
    base = dict(steps=1, prompts_per_step=4, num_generations=4, micro_batch=8, max_completion_length=12,
                rewards={"_test_length": 1.0, "format": 0.5}, beta=0.04, lr=1e-3,
                checkpoint_every=0, sample_every=0, seed=0)
    return GRPOArgs(**{**base, **kw})


def test_grpo_step_updates_every_parameter(tiny_base, tmp_path):
    model, tok = _load(tiny_base)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    rows = make_rows("arithmetic", "train", 16)
    metrics = GRPOTrainer(model, tok, rows, _grpo_args(), tmp_path).train()
    for key in ("reward", "accuracy", "format_rate", "response_length", "reflection_rate", "kl",
                "clip_fraction", "entropy", "grad_norm", "tokens_per_s"):
        assert key in metrics
    assert torch.isfinite(torch.tensor(metrics["loss"])) and metrics["grad_norm"] > 0
    # At the first inner iteration the policy is the rollout policy: the ratio is 1.
    assert metrics["ratio_dev"] < 1e-4
    assert _changed(before, model) == []


def _trajectory(tiny_base, tmp_path, **kw) -> list[tuple[float, float, float]]:
    model, tok = _load(tiny_base)
    rows = make_rows("arithmetic", "train", 32)
    trainer = GRPOTrainer(model, tok, rows, _grpo_args(steps=5, **kw), tmp_path)
    trainer.train()
    return [(r["reward"], r["kl"], r["grad_norm"]) for r in trainer.steps.read()]


# (reward, kl, grad_norm) per step, pinned from a CPU run (torch 2.13.0, seed 0; re-pinned when prompt
# draws and sampling streams stopped depending on the rank: model/grpo.py, and when the synthetic
# tasks got a validation split, which took 5% of the train problems: with VALIDATION_SHARE = 0 the
# previous values come back). Rewards depend on every sampled token, so any change to sampling,
# the loss or the update shows up here.
GOLDEN = [
    (0.15562500060, 0.0, 0.54752963781),
    (0.14875000715, 0.00017686965673, 0.56576371193),
    (0.16124999523, 0.00049504320672, 0.50902098417),
    (0.14562499523, 0.00085829509484, 0.74066430330),
    (0.15375000238, 0.00132818275926, 0.56285834312),
]


def _same(a, b):
    (r1, k1, g1), (r2, k2, g2) = a, b
    return r1 == pytest.approx(r2, abs=1e-6) and k1 == pytest.approx(k2, rel=1e-3, abs=1e-7) \
        and g1 == pytest.approx(g2, rel=1e-3)


def test_grpo_five_step_trajectory_is_pinned_and_batching_invariant(tiny_base, tmp_path):
    run = _trajectory(tiny_base, tmp_path / "a")
    accumulated = _trajectory(tiny_base, tmp_path / "b", micro_batch=4)  # 4 x 4 instead of 2 x 8
    assert len(run) == 5 and run[-1][1] > 0  # the policy moved away from the reference
    for a, b in zip(run, accumulated):
        assert _same(a, b), (a, b)
    assert GOLDEN is not None, f"pin GOLDEN = {run!r}"
    for a, b in zip(run, GOLDEN):
        assert _same(a, b), (a, b)
