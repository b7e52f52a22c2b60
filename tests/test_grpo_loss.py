"""GRPO's equations 1-3 checked against an independent float64 computation."""

from __future__ import annotations

import math

import pytest
import torch

from model.grpo import group_advantages, grpo_loss, mixing_rate, reflection_rate


def _batch(seed=0, B=6, C=5):
    g = torch.Generator().manual_seed(seed)
    new = -torch.rand(B, C, generator=g) * 3
    old = new + (torch.rand(B, C, generator=g) - 0.5) * 0.8  # ratios well beyond 1 ± 0.2
    ref = new + (torch.rand(B, C, generator=g) - 0.5)
    mask = torch.ones(B, C)
    mask[0, 3:] = 0
    mask[4, 1:] = 0
    rewards = torch.tensor([1.0, 0.0, 0.5, 1.0, 1.0, 0.0])
    return new, old, ref, mask, rewards


def _reference_loss(new, old, ref, mask, adv, eps, beta):
    """Eq. 1 written out per sequence and token in float64, no tensor tricks."""
    total = 0.0
    for i in range(new.shape[0]):
        terms = []
        for t in range(new.shape[1]):
            if mask[i, t] == 0:
                continue
            ratio = math.exp(float(new[i, t]) - float(old[i, t]))
            a = float(adv[i])
            surrogate = min(ratio * a, min(max(ratio, 1 - eps), 1 + eps) * a)
            d = float(ref[i, t]) - float(new[i, t])
            kl = math.exp(d) - d - 1
            terms.append(surrogate - beta * kl)
        total += sum(terms) / len(terms)
    return -total / new.shape[0]


def test_group_advantages_match_eq3():
    rewards = torch.tensor([1.0, 0.0, 0.5, 1.0, 1.0, 0.0], dtype=torch.float64)
    adv = group_advantages(rewards, num_generations=3)
    for g in range(2):
        group = [float(x) for x in rewards[3 * g: 3 * g + 3]]
        mean = sum(group) / 3
        std = math.sqrt(sum((x - mean) ** 2 for x in group) / 2)  # unbiased
        for j in range(3):
            assert adv[3 * g + j].item() == pytest.approx((group[j] - mean) / (std + 1e-4), abs=1e-12)


def test_equal_rewards_give_zero_advantage():
    assert torch.all(group_advantages(torch.ones(8), num_generations=4) == 0)


@pytest.mark.parametrize("eps,beta", [(0.2, 0.04), (0.1, 0.0), (10.0, 0.001)])
def test_loss_equals_float64_equations(eps, beta):
    new, old, ref, mask, rewards = _batch()
    adv = group_advantages(rewards, num_generations=3)
    loss, _ = grpo_loss(new, old, ref, adv, mask, epsilon=eps, beta=beta)
    expected = _reference_loss(new.double(), old.double(), ref.double(), mask, adv.double(), eps, beta)
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_micro_batches_add_up_to_the_whole_batch():
    new, old, ref, mask, rewards = _batch(seed=3)
    adv = group_advantages(rewards, num_generations=3)
    for loss_type in ("grpo", "dr_grpo", "dapo"):
        whole, _ = grpo_loss(new, old, ref, adv, mask, epsilon=0.2, beta=0.04, loss_type=loss_type,
                             max_completion_length=5)
        norm = {"grpo": 6, "dr_grpo": 30, "dapo": float(mask.sum())}[loss_type]
        parts = sum(
            grpo_loss(new[s], old[s], ref[s], adv[s], mask[s], epsilon=0.2, beta=0.04, loss_type=loss_type,
                      max_completion_length=5, normalizer=norm)[0]
            for s in (slice(0, 2), slice(2, 4), slice(4, 6))
        )
        assert parts.item() == pytest.approx(whole.item(), abs=1e-6), loss_type


def test_token_level_variants_weight_long_sequences_more():
    new, old, ref, mask, rewards = _batch()
    adv = group_advantages(rewards, num_generations=3)
    grpo, _ = grpo_loss(new, old, None, adv, mask, epsilon=0.2, beta=0.0, loss_type="grpo")
    dapo, _ = grpo_loss(new, old, None, adv, mask, epsilon=0.2, beta=0.0, loss_type="dapo")
    per_token = -torch.min((new - old).exp() * adv[:, None],
                           (new - old).exp().clamp(0.8, 1.2) * adv[:, None])
    assert dapo.item() == pytest.approx(float((per_token * mask).sum() / mask.sum()), abs=1e-6)
    assert grpo.item() != pytest.approx(dapo.item(), abs=1e-4)


def test_beta0_mu1_gradient_is_reinforce_with_group_baseline():
    """At μ = 1 the policy equals π_old (ratio 1, no clipping): the gradient must be
    REINFORCE with the group-mean baseline, scaled by 1/std, averaged per sequence."""
    torch.manual_seed(0)
    B, C, V, G = 6, 4, 7, 3
    logits = torch.randn(B, C, V, requires_grad=True)
    tokens = torch.randint(0, V, (B, C))
    mask = torch.ones(B, C)
    mask[1, 2:] = 0
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 0.5])

    logp = torch.log_softmax(logits, -1).gather(-1, tokens[..., None]).squeeze(-1)
    adv = group_advantages(rewards, G)
    loss, _ = grpo_loss(logp, logp.detach(), None, adv, mask, epsilon=0.2, beta=0.0)
    (grad_grpo,) = torch.autograd.grad(loss, logits)

    logp2 = torch.log_softmax(logits, -1).gather(-1, tokens[..., None]).squeeze(-1)
    r = rewards.view(-1, G)
    scale = ((r - r.mean(1, keepdim=True)) / (r.std(1, keepdim=True) + 1e-4)).view(-1)
    reinforce = -((scale[:, None] * logp2 * mask).sum(1) / mask.sum(1)).mean()
    (grad_reinforce,) = torch.autograd.grad(reinforce, logits)
    assert torch.allclose(grad_grpo, grad_reinforce, atol=1e-7)
    assert grad_grpo.abs().sum() > 0


def test_clip_stops_the_gradient_outside_the_trust_region():
    new = torch.tensor([[0.5]], requires_grad=True)  # ratio e^0.5 = 1.65 > 1.2
    loss, stats = grpo_loss(new, torch.zeros(1, 1), None, torch.tensor([1.0]), torch.ones(1, 1),
                            epsilon=0.2, beta=0.0)
    loss.backward()
    assert new.grad.item() == 0.0
    assert stats["clipped"].item() == 1.0


def test_reflection_rate_counts_whole_words():
    texts = ["wait , 4 + 8 = 12", "Let me verify this", "awaited result", "nothing here"]
    assert reflection_rate(texts, ["wait", "let me verify"]) == 0.5


def test_mixing_rate_counts_reasoning_in_two_scripts():
    texts = ["<think> 3 + 4 = 7 , write 7 . so 7 </think> <answer> 7 </answer>",
             "<think> 3 + 4 = 7 , пишем 7 . итак 7 </think> <answer> 7 </answer>",
             "<think> 3 + 4 = 7 , write 7 . итак 7 </think> <answer> 7 </answer>",
             "<think> 3 + 4 = 7 , пишем 7 . so 7 </think> the answer is 7"]
    assert mixing_rate(texts) == 0.5


def test_mixing_rate_reads_the_same_reasoning():
    assert mixing_rate(["<think>hello world</think> привет"]) == 0.0  # summary-ignored
    assert mixing_rate(["hello привет"]) == 1.0  # untagged-whole
    assert mixing_rate(["<think>所以 $x+y$ 成立</think>"]) == 0.0  # math-ignored


def test_scale_rewards_none_and_batch():
    rewards = torch.tensor([1.0, 0.0, 0.5, 1.0, 1.0, 0.0], dtype=torch.float64)
    centred = rewards.view(2, 3) - rewards.view(2, 3).mean(dim=1, keepdim=True)
    assert torch.allclose(group_advantages(rewards, 3, scale_rewards="none"), centred.view(-1))
    batch = group_advantages(rewards, 3, scale_rewards="batch")
    assert torch.allclose(batch, centred.view(-1) / (rewards.std() + 1e-4))
    assert not torch.allclose(batch, group_advantages(rewards, 3))  # groups have other stds
    with pytest.raises(ValueError, match="scale_rewards"):
        group_advantages(rewards, 3, scale_rewards="per_token")


def test_epsilon_high_raises_only_the_upper_clip():
    # One token, ratio 1.25: clipped by ε = 0.2 when the advantage is positive, not by ε_high = 0.28.
    new, old = torch.tensor([[math.log(1.25)]]), torch.zeros(1, 1)
    mask = torch.ones(1, 1)
    pos, neg = torch.tensor([1.0]), torch.tensor([-1.0])
    _, sym = grpo_loss(new, old, None, pos, mask, epsilon=0.2, beta=0.0)
    _, high = grpo_loss(new, old, None, pos, mask, epsilon=0.2, epsilon_high=0.28, beta=0.0)
    assert sym["clipped"].item() == 1 and high["clipped"].item() == 0
    loss_high, _ = grpo_loss(new, old, None, pos, mask, epsilon=0.2, epsilon_high=0.28, beta=0.0)
    assert loss_high.item() == pytest.approx(-1.25)
    # The lower bound is untouched: ratio 0.75 with a negative advantage is clipped at 1 - ε either way.
    low = torch.tensor([[math.log(0.75)]])
    loss_low, st = grpo_loss(low, old, None, neg, mask, epsilon=0.2, epsilon_high=0.28, beta=0.0)
    assert st["clipped"].item() == 1 and loss_low.item() == pytest.approx(0.8)


def test_grpo_args_accept_trl_names_and_check_them():
    from model.grpo import GRPOArgs

    args = GRPOArgs(num_generations=4, num_iterations=2, max_completion_length=32, scale_rewards=False)
    assert args.scale_rewards == "none"  # TRL's old bool form
    from infra.config import build_config, parse_overrides

    assert build_config(GRPOArgs, parse_overrides(["scale_rewards=false"])).scale_rewards == "none"  # --set form
    with pytest.raises(ValueError, match="epsilon_high"):
        GRPOArgs(epsilon=0.2, epsilon_high=0.1)
    with pytest.raises(ValueError, match="scale_rewards"):
        GRPOArgs(scale_rewards="tokens")
