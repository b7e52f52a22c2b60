"""Group Relative Policy Optimization (DeepSeek-R1 paper, eqs. 1-3) on a DeepSpeed engine.

For each prompt q, G completions o_1..o_G are sampled from the rollout policy
π_old and scored by rule rewards r_i. Then, for μ inner iterations,

    A_i   = (r_i - mean(r)) / std(r)                                     (eq. 3)
    ρ_i,t = π_θ(o_i,t | q, o_i,<t) / π_old(o_i,t | q, o_i,<t)
    D_KL  = π_ref/π_θ - log(π_ref/π_θ) - 1          (k3 estimator, per token, eq. 2)
    J     = mean_i [ mean_t min(ρ A_i, clip(ρ, 1-ε, 1+ε) A_i) - β D_KL ]  (eq. 1)

and the loss is -J. Knobs take TRL's ``GRPOConfig`` names: G is ``num_generations``, μ
``num_iterations``, ε ``epsilon`` (``epsilon_high`` for the upper bound), β ``beta``.

Loss variants (``loss_type``) and what each leaves out:
- ``grpo`` (the paper): mean over each sequence's tokens, then over sequences. Every
  sequence weighs the same, so a token of a long answer counts less than one of a short
  answer: the length bias Dr. GRPO points out (Liu et al. 2025, section 3.1).
- ``dr_grpo``: token sum divided by G x ``max_completion_length``, a constant, so no length
  bias; it leaves out the per-sequence average. Use with ``scale_rewards="none"`` for the
  full Dr. GRPO (no std division: no difficulty bias either).
- ``dapo``: token sum divided by the number of completion tokens in the whole batch (all
  ranks, all micro-batches): token-level, as DAPO (Yu et al. 2025, eq. 8). With
  ``epsilon_high`` > ``epsilon`` it is DAPO's clip-higher; dynamic sampling and the overlong
  penalty are left out.

``scale_rewards`` (TRL's knob): ``group`` divides advantages by the group's std (eq. 3),
``batch`` by the std of the whole step's rewards, ``none`` leaves them unscaled (Dr. GRPO).

Departures from the paper, on purpose:
- std is the unbiased sample std plus 1e-4 (TRL's choice), and a group whose
  rewards are all equal up to float round-off gets advantage exactly 0 (and counts in
  ``frac_zero_std_groups``), not a round-off error divided by 1e-4;
- π_old's log-probs are those the rollout engine sampled with (same weights,
  same temperature), not a second forward pass;
- the reference π_ref starts as the initial policy and is replaced by the
  current policy every ``ref_refresh_steps`` steps (the paper: every 400).

Prompt schedule: a row may carry ``from_step`` (default 1), the first step at which it
can be drawn; all-scenario RL uses it to add general prompts only in the last part of
training, as the paper does (its final 400 of 1,700 steps).

N ranks, one result (model/trainer.py): each step draws its ``prompts_per_step`` prompts once,
seeded by (seed, step), the same on every rank; rank r rolls out and trains on the r-th
contiguous 1/W of them, so a prompt's G completions stay on one rank. Completions are sampled
``generation_batch_size`` at a time, each generate call from a stream seeded by (seed, step,
the call's global index), so W ranks and one rank at the same ``generation_batch_size`` sample
the same completions. Rewards are gathered from all ranks before advantages (``scale_rewards=batch``
takes the std of the whole step); loss normalisers are global (sequences of all ranks for
``grpo`` and ``dr_grpo``, the all-reduced completion-token count for ``dapo``); logged metrics
are those of the whole step. Under ZeRO-3 the reference model is an optimizer-less ZeRO-3
engine (1/W of it per rank; otherwise a whole frozen copy per rank), refreshed from gathered
policy weights, and rollouts run on weights gathered once per step (the CUDA fast path reads
them whole).

One CPU rank:  r1flow stage r1_zero
Two CPU ranks: OMP_NUM_THREADS=1 torchrun --nproc_per_node 2 -m flows.cli stage r1_zero
N GPUs:        deepspeed --num_gpus N --no_local_rank --module flows.cli stage r1_zero
               (R1FLOW_DS_CONFIG=zero3 for ZeRO-3; set generation_batch_size to compare world sizes)
"""

from __future__ import annotations

import copy
import logging
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from infra import launch
from infra.config import knob
from infra.steplog import StepLog
from data.completions import parse_completion
from data.formatting import prompt_style, render_prompts
from data.language import scripts_in
from model import checkpoint, packing
from model.engine import make_engine
from model.rewards import get_reward
from model.rewards.code import code_outcome_counts, code_outcome_shares
from model.rollout import completion_logprobs, concat_rollouts, decode_completions, generate, left_pad, stop_token_ids
from model.trainer import (
    Trainer, copy_weights, full_state_dict, gather_lists, gathered_for_generation, grad_accum_steps, is_main,
    load_full_state, log_shard, max_over_ranks, needs_lockstep, rank_share, reference_engine, seeded_sampling,
    sum_over_ranks,
)

log = logging.getLogger(__name__)

LOSS_TYPES = ("grpo", "dr_grpo", "dapo")
SCALE_REWARDS = ("group", "batch", "none")
ZERO_STD_ATOL = 1e-6  # rewards closer than this (relative above 1) are equal: float32 round-off
DEFAULT_REFLECTION = ["wait", "re-check", "recheck", "let me verify", "let me check", "подожди"]


@dataclass
class GRPOArgs:
    """GRPO knobs, with the paper's values in the help where they differ."""

    steps: int = knob(100, "Optimizer steps; each samples a fresh batch of prompts.")
    prompts_per_step: int = knob(16, "Prompts per step, all ranks together (paper: 32).")
    num_generations: int = knob(8, "G, completions per prompt (paper: 16).")
    epsilon: float = knob(0.2, "ε, clip range of the ratio (paper: 10 for R1-Zero).")
    epsilon_high: float = knob(0.0, "Upper clip bound 1+ε_high (DAPO's clip-higher, e.g. 0.28); 0 = same as epsilon.")
    beta: float = knob(0.001, "β, weight of the k3 KL to the reference (paper: 0.001).")
    num_iterations: int = knob(1, "μ, policy updates per batch of rollouts (paper: 1).")
    ref_refresh_steps: int = knob(400, "Replace the reference by the policy every N steps (paper: 400); 0 = never.")
    loss_type: str = knob("grpo", "grpo (per-sequence mean, the paper) | dr_grpo | dapo (token-level).")
    scale_rewards: str | bool = knob("group", "Advantage scaling: group (divide by the group std, eq. 3) | batch | none (Dr. GRPO).")
    temperature: float = knob(1.0, "Rollout sampling temperature (paper: 1.0).")
    top_p: float = knob(1.0, "Rollout nucleus sampling.")
    max_completion_length: int = knob(96, "Longest completion in tokens.")
    rewards: dict = knob({"accuracy": 1.0, "format": 0.5}, "Reward name -> weight; the sum is r_i.")
    lr: float = knob(2e-4, "AdamW learning rate.")
    warmup_steps: int = knob(0, "Linear warmup steps.")
    weight_decay: float = knob(0.0, "AdamW weight decay.")
    max_grad_norm: float = knob(1.0, "Gradient clipping norm.")
    micro_batch: int = knob(64, "Sequences per forward/backward per rank.")
    generation_batch_size: int = knob(0, "Completions per generate call (a multiple of num_generations); each call "
                                         "samples from a stream seeded by (seed, step, its global index), so runs "
                                         "with equal values sample the same completions on any number of ranks. "
                                         "0 = all of a rank's completions in one call (fastest; samples then "
                                         "depend on the world size).")
    reflection_phrases: list = knob(DEFAULT_REFLECTION, "Phrases that count a completion as reflecting.")
    checkpoint_every: int = knob(25, "Save a resumable checkpoint every N steps (0 = never).")
    sample_every: int = knob(10, "Write a few sample completions every N steps (0 = never).")
    seed: int = knob(0, "Seed for prompt order and sampling.")

    def __post_init__(self):
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type {self.loss_type!r}: choose from {LOSS_TYPES}")
        if isinstance(self.scale_rewards, bool):  # TRL < 0.22 took a bool
            self.scale_rewards = "group" if self.scale_rewards else "none"
        if self.scale_rewards not in SCALE_REWARDS:
            raise ValueError(f"scale_rewards {self.scale_rewards!r}: choose from {SCALE_REWARDS}")
        if self.epsilon_high and self.epsilon_high < self.epsilon:
            raise ValueError(f"epsilon_high ({self.epsilon_high}) must be >= epsilon ({self.epsilon}), or 0 for the same")
        if self.num_generations < 2:
            raise ValueError(f"num_generations must be >= 2 for group-relative advantages, got {self.num_generations}")
        if self.generation_batch_size < 0 or self.generation_batch_size % self.num_generations:
            raise ValueError(f"generation_batch_size ({self.generation_batch_size}) must be a multiple of "
                             f"num_generations ({self.num_generations}), or 0")
        batch = self.prompts_per_step * self.num_generations
        if batch % self.micro_batch:
            raise ValueError(f"prompts_per_step x num_generations ({batch}) must be a multiple of micro_batch ({self.micro_batch})")
        for name in self.rewards:
            try:
                get_reward(name)
            except KeyError as err:
                raise ValueError(f"rewards: {err.args[0]}") from None


def zero_std_groups(rewards: torch.Tensor, num_generations: int) -> torch.Tensor:
    """(groups,) bool: the groups whose rewards are all equal up to float round-off.

    A weighted sum of rewards (0.9 * accuracy + 0.1 * language, in float32) can differ in its
    last bits between identical completions; such a group carries no learning signal. Equal
    means a spread (max - min) of at most :data:`ZERO_STD_ATOL`, relative for rewards above 1.
    """
    r = rewards.detach().double().view(-1, num_generations)
    spread = r.max(dim=1).values - r.min(dim=1).values
    return spread <= ZERO_STD_ATOL * r.abs().max(dim=1).values.clamp(min=1.0)


def group_advantages(rewards: torch.Tensor, num_generations: int, eps: float = 1e-4,
                     scale_rewards: str = "group") -> torch.Tensor:
    """(r - group mean) / (std + eps); rewards (B,) ordered group by group, B = groups x G.

    ``scale_rewards``: ``group`` takes the std of each group (eq. 3), ``batch`` the std of
    all B rewards, ``none`` divides by nothing (Dr. GRPO). Computed in float64; a group of
    equal rewards (:func:`zero_std_groups`) gets advantage exactly 0 under every scaling.
    Returns (B,) in the rewards' float dtype. Raises ValueError for another ``scale_rewards``.
    """
    if scale_rewards not in SCALE_REWARDS:
        raise ValueError(f"scale_rewards {scale_rewards!r}: choose from {SCALE_REWARDS}")
    r = rewards.detach().double().view(-1, num_generations)
    centred = r - r.mean(dim=1, keepdim=True)
    centred[zero_std_groups(rewards, num_generations)] = 0.0
    if scale_rewards == "group":
        centred = centred / (r.std(dim=1, keepdim=True) + eps)
    elif scale_rewards == "batch":
        centred = centred / (r.std() + eps)
    return centred.view(-1).to(rewards.dtype if rewards.is_floating_point() else torch.float32)


def grpo_loss(
    new_logps: torch.Tensor,
    old_logps: torch.Tensor,
    ref_logps: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    epsilon: float,
    beta: float,
    epsilon_high: float | None = None,
    loss_type: str = "grpo",
    max_completion_length: int | None = None,
    normalizer: float | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The GRPO loss (-J of eq. 1) over one (micro-)batch.

    Log-prob tensors are (B, C) per completion token, mask (B, C) is 1 on real
    completion tokens, advantages (B,). ``normalizer`` is the denominator over
    the *whole* batch when this is one micro-batch of it (sequences for grpo,
    sequences x max length for dr_grpo, tokens for dapo); None = this batch's own.
    The ratio is clipped to [1 - epsilon, 1 + epsilon_high] (``epsilon_high`` None or 0 =
    ``epsilon``). Returns the loss and detached per-token stats (kl, clipped) for logging.
    """
    high = epsilon_high or epsilon
    mask = mask.to(new_logps.dtype)
    ratio = torch.exp(new_logps - old_logps)
    adv = advantages[:, None]
    surrogate = torch.min(ratio * adv, ratio.clamp(1 - epsilon, 1 + high) * adv)
    per_token = -surrogate
    kl = torch.zeros_like(per_token)
    if beta and ref_logps is not None:
        delta = ref_logps - new_logps
        kl = torch.exp(delta) - delta - 1  # k3: unbiased, always >= 0
        per_token = per_token + beta * kl
    if loss_type == "grpo":
        total = ((per_token * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)).sum()
        denom = normalizer if normalizer is not None else new_logps.shape[0]
    elif loss_type == "dr_grpo":
        total = (per_token * mask).sum()
        length = max_completion_length or new_logps.shape[1]
        denom = normalizer if normalizer is not None else new_logps.shape[0] * length
    elif loss_type == "dapo":
        total = (per_token * mask).sum()
        denom = normalizer if normalizer is not None else mask.sum().clamp(min=1)
    else:
        raise ValueError(f"loss_type {loss_type!r}: choose from {LOSS_TYPES}")
    clipped = ((ratio < 1 - epsilon) & (adv < 0)) | ((ratio > 1 + high) & (adv > 0))
    stats = {"kl": kl.detach(), "clipped": clipped.detach().to(mask.dtype), "ratio": ratio.detach()}
    return total / denom, stats


def reflection_rate(texts: list[str], phrases: list[str]) -> float:
    """Share of texts that contain any of ``phrases`` as whole words (case-insensitive)."""
    if not texts:
        return 0.0
    pattern = re.compile(r"\b(" + "|".join(re.escape(p) for p in phrases) + r")\b", re.IGNORECASE)
    return sum(bool(pattern.search(t)) for t in texts) / len(texts)


def mixing_rate(texts: list[str]) -> float:
    """Share of completions whose reasoning (as the language reward reads it) mixes scripts."""
    if not texts:
        return 0.0
    mixed = [len(scripts_in(parse_completion(t).reasoning_or_text)) > 1 for t in texts]
    return sum(mixed) / len(texts)


def score(texts: list[str], columns: dict[str, list], weights: dict[str, float]):
    """Weighted reward sum per completion (None counts 0) and each reward's raw values."""
    total = torch.zeros(len(texts))
    per_reward: dict[str, list] = {}
    for name, weight in weights.items():
        values = get_reward(name)(texts, **columns)
        per_reward[name] = values
        total += weight * torch.tensor([0.0 if v is None else float(v) for v in values])
    return total, per_reward


def _by_group(prefix: str, values: list | None, keys: list | None) -> dict[str, float]:
    """``<prefix>/<key>``: the mean of ``values`` over the rows of each key in the batch
    (e.g. ``accuracy/arithmetic``); keys whose values are all None (the reward does not
    apply to them, as accuracy to a general prompt) are left out."""
    if not values or not keys:
        return {}
    groups: dict[str, list] = {}
    for value, key in zip(values, keys):
        groups.setdefault(f"{prefix}/{key}", []).append(value)
    return {key: _mean(vals) for key, vals in groups.items() if any(v is not None for v in vals)}


def _shares(prefix: str, keys: list | None) -> dict[str, float]:
    """``<prefix>/<key>``: the share of the batch's rows of each key (e.g. prompt kinds)."""
    if not keys:
        return {}
    return {f"{prefix}/{key}": sum(k == key for k in keys) / len(keys) for key in sorted(set(keys), key=str)}


def _mean(values) -> float:
    values = [v for v in values if v is not None]
    return float(sum(values) / len(values)) if values else float("nan")


class GRPOTrainer(Trainer):
    """GRPO over ``rows`` (the row schema: prompt + answer/tests + source ...).

    Resumable: checkpoints (engine, optimizer, reference) live in ``out_dir/checkpoints``
    and prompts and sampling are seeded by step, so a resumed run continues the same
    trajectory. Every column but ``id`` and ``from_step`` (the prompt included) is passed
    to the rewards; a row is drawn only from its ``from_step`` on (module doc). On W ranks
    each rank rolls out and trains on its own 1/W of the step's prompts (module doc).
    """

    desc = "grpo"
    side_logs = ("samples.jsonl",)

    def __init__(self, model, tokenizer, rows: list[dict], args: GRPOArgs, out_dir: str | Path,
                 steps: StepLog | None = None):
        if not rows:
            raise ValueError("GRPO needs at least one prompt row")
        super().__init__(out_dir, steps or StepLog(Path(out_dir) / "steps.jsonl"))
        self.tokenizer, self.rows, self.args, self.model = tokenizer, rows, args, model
        # A whole copy until train() places it like the policy (model.trainer.reference_engine).
        self.ref = copy.deepcopy(model) if args.beta else None
        self.prompt_ids = render_prompts(tokenizer, [r["prompt"] for r in rows], **prompt_style(args))
        self.stop_ids = stop_token_ids(model, tokenizer)
        self.columns = sorted({k for r in rows for k in r} - {"id", "from_step"})
        self.from_step = [int(r.get("from_step") or 1) for r in rows]

    # -- setup / loop --------------------------------------------------------------------

    def _chunk_prompts(self) -> int:
        """Prompts per generate call on this rank; raises ValueError naming the knobs when a
        rank's share of the prompts does not split into whole calls."""
        a = self.args
        local = rank_share(a.prompts_per_step, "prompts (prompts_per_step)")
        share = local.stop - local.start
        chunk = a.generation_batch_size // a.num_generations if a.generation_batch_size else share
        if share % chunk:
            raise ValueError(f"each of {launch.world_size()} ranks rolls out {share} prompts, not a multiple of "
                             f"generation_batch_size / num_generations ({chunk}); change generation_batch_size")
        return chunk

    def train(self) -> dict[str, float]:
        """Run to ``args.steps`` (resuming from the last checkpoint); returns the last step's metrics."""
        a = self.args
        self._chunk_prompts()  # fail on a bad split before building anything
        self.engine = make_engine(
            self.model, lr=a.lr, weight_decay=a.weight_decay, micro_batch=a.micro_batch,
            grad_accum=grad_accum_steps(a.prompts_per_step * a.num_generations, a.micro_batch),
            max_grad_norm=a.max_grad_norm, warmup_steps=a.warmup_steps,
        )
        if self.ref is not None:
            self.ref = reference_engine(self.ref, self.engine, a.micro_batch)
        return self.run_loop(a.steps, ckpt_dir=self.out_dir / "checkpoints", fingerprint=checkpoint.fingerprint(a),
                             checkpoint_every=a.checkpoint_every, extra_names=("reference",))

    def checkpoint_extra(self) -> dict[str, dict]:
        return {} if self.ref is None else {"reference": full_state_dict(self.ref)}

    def restore_extra(self, extra: dict[str, dict]) -> None:
        if self.ref is not None and "reference" in extra:
            load_full_state(self.ref, extra["reference"])

    def after_step(self, step: int, metrics: dict[str, float]) -> None:
        a = self.args
        if self.ref is not None and a.ref_refresh_steps and step % a.ref_refresh_steps == 0:
            copy_weights(self.engine.module, self.ref)

    def progress(self, metrics: dict[str, float]) -> dict[str, str]:
        return {"reward": f"{metrics['reward']:.3f}", "acc": f"{metrics['accuracy']:.2f}"}

    # -- one step ---------------------------------------------------------------------------

    def eligible(self, step: int) -> list[int] | range:
        """Indices of the rows that may be drawn at ``step`` (those whose ``from_step`` <= step)."""
        if max(self.from_step) <= 1:
            return range(len(self.rows))
        return [i for i, first in enumerate(self.from_step) if first <= step]

    def _sample_prompts(self, step: int) -> list[int]:
        """The step's ``prompts_per_step`` row indices, all ranks together: one draw seeded by
        (seed, step), the same on every rank. Raises ValueError when fewer rows are eligible."""
        pool = self.eligible(step)
        if len(pool) < self.args.prompts_per_step:
            raise ValueError(f"step {step}: {len(pool)} prompt rows are eligible, fewer than prompts_per_step "
                             f"({self.args.prompts_per_step}); add rows or lower prompts_per_step")
        return random.Random(f"{self.args.seed}/{step}").sample(pool, k=self.args.prompts_per_step)

    def rollout(self, step: int):
        """Sample G completions for this rank's share of the step's prompts, one generate call
        per chunk of prompts (module doc); returns (rollout, texts, row index per completion)."""
        a, G = self.args, self.args.num_generations
        prompts = self._sample_prompts(step)
        share, chunk = rank_share(len(prompts), "prompts"), self._chunk_prompts()
        log_shard(self.desc, step, prompts[share])
        parts = []
        with gathered_for_generation(self.engine) as model:
            for start in range(share.start, share.stop, chunk):
                chosen = [i for i in prompts[start: start + chunk] for _ in range(G)]  # group by group
                ids, mask = left_pad([self.prompt_ids[i] for i in chosen], self.tokenizer.pad_token_id)
                device = self.engine.device
                with seeded_sampling(device, (a.seed, step, start // chunk)) as generator:
                    parts.append(generate(
                        model, ids.to(device), mask.to(device), max_new_tokens=a.max_completion_length,
                        eos_token_id=self.stop_ids, pad_token_id=self.tokenizer.pad_token_id,
                        temperature=a.temperature, top_p=a.top_p, generator=generator,
                        lockstep=needs_lockstep(self.engine)))
        rollout = concat_rollouts(parts, self.tokenizer.pad_token_id)
        chosen = [i for i in prompts[share] for _ in range(G)]
        return rollout, decode_completions(self.tokenizer, rollout, self.stop_ids), chosen

    def train_step(self, step: int) -> dict[str, float]:
        """One GRPO step: rollouts, rewards, advantages, μ policy updates; returns the metrics of
        the whole step (all ranks)."""
        a = self.args
        t0 = time.perf_counter()
        rollout, texts, chosen = self.rollout(step)
        t_rollout = time.perf_counter() - t0
        columns = {k: [self.rows[i].get(k) for i in chosen] for k in self.columns}
        t_reward = time.perf_counter()
        rewards, per_reward = score(texts, columns, a.rewards)
        t_reward = time.perf_counter() - t_reward
        mask = rollout.completion_mask
        batch = _gather_step(chosen, texts, rewards, per_reward, mask.sum(dim=1), rollout.finished)
        advantages = group_advantages(torch.tensor(batch["reward"]), a.num_generations, scale_rewards=a.scale_rewards)
        local = advantages[rank_share(len(advantages), "completions")].to(self.engine.device)
        stats = self._optimize(rollout, local)
        if "code" in a.rewards:  # why programs scored 0: timeouts, memory, crashes, ... (all ranks)
            stats.update(code_outcome_shares(sum_over_ranks(code_outcome_counts())))
        times = {"rollout_s": max_over_ranks(t_rollout), "reward_s": max_over_ranks(t_reward),
                 "step_s": max_over_ranks(time.perf_counter() - t0)}
        metrics = {**self._batch_metrics(batch), **stats, **self.router.step_metrics(), "lr": self.engine.get_lr()[0], **times,
                   "tokens_per_s": sum(batch["length"]) / times["rollout_s"]}
        if is_main() and a.sample_every and (step % a.sample_every == 0 or step == 1):
            self._write_samples(step, batch["row"], batch["text"], batch["reward"])
        return metrics

    def _batch_metrics(self, batch: dict[str, list]) -> dict[str, float]:
        """Reward, accuracy, length and behaviour rates over the whole step's completions."""
        a, texts = self.args, batch["text"]
        rewards = torch.tensor(batch["reward"])
        groups = rewards.view(-1, a.num_generations)
        per_reward = batch["per_reward"]
        columns = {k: [self.rows[i].get(k) for i in batch["row"]] for k in ("source", "kind") if k in self.columns}
        return {
            "reward": float(rewards.mean()),
            "reward_std": float(groups.std(dim=1).mean()),
            "frac_zero_std_groups": float(zero_std_groups(rewards, a.num_generations).double().mean()),
            **{f"reward/{name}": _mean(values) for name, values in per_reward.items()},
            "accuracy": _mean(per_reward["accuracy"]) if "accuracy" in per_reward else float("nan"),
            **_by_group("accuracy", per_reward.get("accuracy"), columns.get("source")),
            **_by_group("reward_kind", rewards.tolist(), columns.get("kind")),
            **_shares("prompt_share", columns.get("kind")),
            "format_rate": _mean(get_reward("format")(texts)),
            "response_length": sum(batch["length"]) / len(texts),
            "reflection_rate": reflection_rate(texts, a.reflection_phrases),
            "mixing_rate": mixing_rate(texts),
            "truncated_rate": 1.0 - sum(batch["finished"]) / len(texts),
        }

    def _optimize(self, rollout, advantages: torch.Tensor) -> dict[str, float]:
        """μ passes over this rank's sequences in micro-batches, one optimizer step per pass;
        loss normalisers and logged statistics are those of the whole step (all ranks).

        Micro-batches take the sequences in order of completion length, each cut to its own
        longest completion: the step's loss is a sum over sequences, so which micro-batch a
        sequence is in does not change it, and short completions stop paying for the columns
        of the longest one in the step. The passes pack each micro-batch's sequences without
        their padding when the model allows it (model/packing.py ``supported``; model/rollout.py
        ``completion_logprobs`` with ``pack=True``)."""
        a, engine, world = self.args, self.engine, launch.world_size()
        start, mask = rollout.prompt_ids.shape[1], rollout.completion_mask
        B = mask.shape[0] * world  # sequences in the step, all ranks
        lengths = mask.sum(dim=1)
        order = torch.sort(lengths, stable=True).indices
        micro = []  # (rows, completion columns kept) per micro-batch
        for i in range(0, len(order), a.micro_batch):
            rows = order[i:i + a.micro_batch]
            micro.append((rows, max(1, int(lengths[rows].max()))))

        def part(rows, width):  # one micro-batch: sequences, attention mask, completion mask, old logprobs
            return (rollout.sequences[rows, :start + width], rollout.attention_mask[rows, :start + width],
                    mask[rows, :width], rollout.logprobs[rows, :width])

        pack = packing.supported(engine)
        ref = []
        if self.ref is not None:
            with torch.no_grad():
                for rows, width in micro:
                    seqs, attn, _, _ = part(rows, width)
                    ref.append(completion_logprobs(self.ref, seqs, attn, start, a.temperature, pack=pack))
        tokens = sum_over_ranks({"tokens": float(mask.sum())})["tokens"]
        normalizer = {"grpo": B, "dr_grpo": B * a.max_completion_length, "dapo": max(tokens, 1.0)}[a.loss_type]
        engine.train()
        sums = {"kl": 0.0, "clipped": 0.0, "entropy": 0.0, "ratio_dev": 0.0, "loss": 0.0}
        grad_norm = 0.0
        for it in range(a.num_iterations):
            for k, (rows, width) in enumerate(micro):
                seqs, attn, m, old = part(rows, width)
                new, entropy = completion_logprobs(engine, seqs, attn, start, a.temperature, with_entropy=True,
                                                   pack=pack)
                loss, st = grpo_loss(new, old, ref[k] if ref else None, advantages[rows], m,
                                     epsilon=a.epsilon, epsilon_high=a.epsilon_high, beta=a.beta, loss_type=a.loss_type,
                                     max_completion_length=a.max_completion_length, normalizer=normalizer)
                # DeepSpeed divides by gradient_accumulation_steps (= len(micro)) and averages over
                # ranks; undo both so the micro-batch losses of all ranks add up to the step's loss.
                # An MoE router's balancing loss is added after the rescaling: once per step on average.
                engine.backward(self.router.add_to(loss * len(micro) * world))
                engine.step()
                if it == 0:
                    m = m.float()
                    sums["kl"] += float((st["kl"] * m).sum())
                    sums["clipped"] += float((st["clipped"] * m).sum())
                    sums["entropy"] += float((entropy * m).sum())
                    sums["ratio_dev"] += float(((st["ratio"] - 1).abs() * m).sum())
                    sums["loss"] += float(loss.detach())
            grad_norm = float(engine.get_global_grad_norm() or 0.0)
        sums = sum_over_ranks(sums)
        tokens = max(tokens, 1.0)
        return {"kl": sums["kl"] / tokens, "clip_fraction": sums["clipped"] / tokens,
                "entropy": sums["entropy"] / tokens, "ratio_dev": sums["ratio_dev"] / tokens,
                "loss": sums["loss"], "grad_norm": grad_norm}

    def _write_samples(self, step: int, chosen: list[int], texts: list[str], rewards: list[float]) -> None:
        """Append the first completion of a few groups to samples.jsonl (for MLflow tables)."""
        import json

        G = self.args.num_generations
        with (self.out_dir / "samples.jsonl").open("a") as f:
            for i in range(0, min(len(texts), 4 * G), G):
                row = self.rows[chosen[i]]
                f.write(json.dumps({"step": step, "id": row.get("id"), "prompt": row["prompt"],
                                    "completion": texts[i], "reward": float(rewards[i])}) + "\n")


def _gather_step(chosen: list[int], texts: list[str], rewards: torch.Tensor, per_reward: dict[str, list],
                 lengths: torch.Tensor, finished: torch.Tensor) -> dict[str, list]:
    """The step's completions from every rank, in global order (rank 0's first), as columns:
    ``row`` (prompt row index), ``text``, ``reward`` (weighted sum), ``per_reward`` (name ->
    raw values, None where a reward does not apply), ``length`` (completion tokens),
    ``finished`` (EOS produced)."""
    local = [{"row": r, "text": t, "reward": float(w), "length": int(n), "finished": bool(f),
              "per_reward": {name: values[i] for name, values in per_reward.items()}}
             for i, (r, t, w, n, f) in enumerate(zip(chosen, texts, rewards.tolist(), lengths.tolist(),
                                                     finished.tolist()))]
    rows = gather_lists(local)
    batch = {key: [x[key] for x in rows] for key in ("row", "text", "reward", "length", "finished")}
    batch["per_reward"] = {name: [x["per_reward"][name] for x in rows] for name in per_reward}
    return batch
