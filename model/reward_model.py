"""Reward models: the base decoder with a scalar head, trained Bradley-Terry or pointwise.

A reward model is ``AutoModelForSequenceClassification`` built from the base model's config
with ``num_labels=1``: the decoder body keeps the base model's weights, the ``score`` head
(hidden -> 1, no bias) starts random (seeded). The reward of (prompt, response) is that
head's value at the sequence's last non-pad token, where the input is rendered exactly as the
SFT trainer renders a training example (:func:`model.sft.encode_rows`: the R1-Zero prompt,
``" " + response``, EOS; right-padded). A response that does not fit ``max_length`` loses its
tail, EOS kept.

Objectives (paper 2.3.4):

- ``bradley_terry`` (helpfulness): rows ``{prompt, chosen, rejected}``, loss
  ``-log sigmoid(r_chosen - r_rejected)`` averaged over pairs; chosen and rejected of a
  micro-batch go through one forward pass.
- ``pointwise`` (harmlessness): rows ``{prompt, response, label}``, binary cross-entropy on
  the reward as a logit, so ``sigmoid(r)`` is the probability that the response is safe.

Training runs on a DeepSpeed engine (one CPU rank when no launcher is used), resumes from
``<out_dir>/checkpoints/<name>`` like :mod:`model.sft`, and logs per-step metrics
``<name>_loss``, ``<name>_accuracy`` (on the step's batch), ``<name>_margin`` / ``<name>_reward``,
``<name>_lr``, ``<name>_grad_norm``, ``<name>_tokens_per_s`` through a StepLog. On N ranks the
global batch is sharded as in :mod:`model.sft` and the metrics are those of the whole batch.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from infra.config import knob
from infra.steplog import StepLog
from model import checkpoint, factory
from model.engine import make_engine
from model.sft import encode_rows, global_batch, rank_micro_batches
from model.trainer import Trainer, grad_accum_steps, log_shard, max_over_ranks, sum_over_ranks

log = logging.getLogger(__name__)
OBJECTIVES = ("bradley_terry", "pointwise")


@dataclass
class RewardArgs:
    """Optimisation knobs shared by the reward-model trainers."""

    batch_size: int = knob(32, "Pairs (Bradley-Terry) or labelled responses (pointwise) per optimizer step.")
    micro_batch: int = knob(32, "Pairs or responses per forward pass per rank.")
    lr: float = knob(1e-3, "Peak AdamW learning rate (tiny models tolerate large ones).")
    warmup_steps: int = knob(10, "Linear warmup steps, then cosine decay to 10%.")
    weight_decay: float = knob(0.0, "AdamW weight decay.")
    max_grad_norm: float = knob(1.0, "Gradient clipping norm.")
    max_length: int = knob(256, "Longest prompt + response in tokens; longer responses lose their tail.")
    eval_batch: int = knob(64, "Sequences per forward pass when scoring.")
    checkpoint_every: int = knob(50, "Save a resumable checkpoint every N steps (0 = never).")
    seed: int = knob(0, "Seed for the head's initialisation and the data order.")

    def __post_init__(self):
        if self.micro_batch <= 0 or self.batch_size % self.micro_batch:
            raise ValueError(f"batch_size ({self.batch_size}) must be a multiple of micro_batch ({self.micro_batch})")
        if self.lr <= 0 or self.eval_batch <= 0 or self.max_length < 8:
            raise ValueError("lr and eval_batch must be > 0 and max_length at least 8")


# ----------------------------------------------------------------------------- models


def from_base(name_or_path: str | Path, tokenizer, *, seed: int = 0):
    """A scalar-head model whose body is the base causal LM's (path or hub id); head seeded."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    # The base's pinned revision (its reference file), local folders with local_files_only.
    source, kwargs = factory.pretrained_source(name_or_path, "")
    config = AutoConfig.from_pretrained(source, **kwargs)
    config.num_labels = 1
    config.pad_token_id = tokenizer.pad_token_id  # pooling finds the last non-pad token by it
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(source, config=config, **kwargs)
    if model.dtype != torch.float32 and not torch.cuda.is_available():
        model = model.float()  # CPU training in fp32
    return model


def load(path: str | Path):
    """A saved reward model and its tokenizer (as written by ``factory.save_pretrained``)."""
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(path), factory.load_tokenizer(path)


# ----------------------------------------------------------------------------- batches and losses


def encode(tokenizer, prompts: list[str], responses: list[str], max_length: int) -> list[list[int]]:
    """Token ids of each (prompt, response) as the SFT trainer renders them (module doc), at
    most ``max_length``, always ending in EOS: the head reads the reward at the last token, so
    a response cut to fit still ends on the token the head learned to read (unlike SFT, where a
    cut completion gets no EOS so the model does not learn to stop mid-thought)."""
    rows = [{"prompt": p, "completion": r} for p, r in zip(prompts, responses)]
    eos = tokenizer.eos_token_id
    return [p + c if c[-1:] == [eos] else p + c + [eos]
            for p, c in encode_rows(tokenizer, rows, max_length - 1)]


def collate(seqs: list[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids`` and ``attention_mask``, both (batch, longest)."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
    return {"input_ids": ids, "attention_mask": mask}


def batch_rewards(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """(batch,) float32 rewards: the head at each sequence's last non-pad token."""
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, 0].float()


def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """Mean ``-log sigmoid(r_chosen - r_rejected)`` over pairs."""
    return -torch.nn.functional.logsigmoid(r_chosen - r_rejected).mean()


def pointwise_loss(r: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy of ``labels`` (1 = good) with the rewards as logits."""
    return torch.nn.functional.binary_cross_entropy_with_logits(r, labels.float())


# ----------------------------------------------------------------------------- scoring


@torch.no_grad()
def score(model, tokenizer, prompts: list[str], responses: list[str], *,
          batch_size: int = 64, max_length: int = 256) -> list[float]:
    """The reward of each (prompt, response), in batches of ``batch_size``; the model is left in
    eval mode. Equal inputs score equally whatever the batch (padding is masked). Batches go
    to the model's device."""
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    model.eval()
    device = next(model.parameters()).device
    seqs = encode(tokenizer, prompts, responses, max_length)
    out: list[float] = []
    for i in range(0, len(seqs), batch_size):
        batch = collate(seqs[i: i + batch_size], tokenizer.pad_token_id)
        out.extend(batch_rewards(model, {k: v.to(device) for k, v in batch.items()}).tolist())
    return out


def pair_margins(model, tokenizer, rows: list[dict], **kw) -> list[float]:
    """``r_chosen - r_rejected`` for each pair row."""
    prompts = [r["prompt"] for r in rows]
    chosen = score(model, tokenizer, prompts, [r["chosen"] for r in rows], **kw)
    rejected = score(model, tokenizer, prompts, [r["rejected"] for r in rows], **kw)
    return [c - r for c, r in zip(chosen, rejected)]


def pair_accuracy(margins: list[float]) -> float:
    """Share of pairs ranked right (``r_chosen > r_rejected``; a tie counts as wrong)."""
    return sum(m > 0 for m in margins) / max(1, len(margins))


def pointwise_accuracy(scores: list[float], labels: list[int]) -> float:
    """Share of rows whose reward has the label's sign (``r > 0`` iff label 1)."""
    return sum((s > 0) == bool(y) for s, y in zip(scores, labels)) / max(1, len(scores))


def grouped_pair_accuracy(rows: list[dict], scores: list[float], key: str = "pair") -> float:
    """Over groups of rows sharing ``row[key]`` (rows without one are skipped) that hold both
    labels: the share where every label-1 row outscores every label-0 row."""
    groups: dict[str, list[tuple[float, int]]] = {}
    for row, s in zip(rows, scores):
        if row.get(key) is not None:
            groups.setdefault(row[key], []).append((s, row["label"]))
    wins = [min(s for s, y in g if y) > max(s for s, y in g if not y)
            for g in groups.values() if {y for _, y in g} == {0, 1}]
    return sum(wins) / max(1, len(wins))


# ----------------------------------------------------------------------------- trainer


class RewardTrainer(Trainer):
    """Trains a reward model with one objective; resumable from ``out_dir/checkpoints/<name>``.

    ``name`` prefixes the step metrics and names the checkpoint folder, so that two reward
    models of one stage keep separate histories. Batches are global and sharded over ranks as
    in :class:`model.sft.SFTTrainer`.
    """

    def __init__(self, model, tokenizer, args: RewardArgs, out_dir: str | Path, *, objective: str,
                 name: str, steps: StepLog | None = None):
        if objective not in OBJECTIVES:
            raise ValueError(f"objective {objective!r}: choose from {OBJECTIVES}")
        super().__init__(out_dir, steps or StepLog(Path(out_dir) / f"steps_{name}.jsonl"))
        self.model, self.tokenizer, self.args = model, tokenizer, args
        self.objective, self.name, self.desc = objective, name, name
        self.examples: list[tuple] = []

    def _examples(self, rows: list[dict]) -> list[tuple]:
        """(chosen ids, rejected ids) per pair, or (ids, label) per pointwise row."""
        a, prompts = self.args, [r["prompt"] for r in rows]
        if self.objective == "bradley_terry":
            chosen = encode(self.tokenizer, prompts, [r["chosen"] for r in rows], a.max_length)
            rejected = encode(self.tokenizer, prompts, [r["rejected"] for r in rows], a.max_length)
            return list(zip(chosen, rejected))
        ids = encode(self.tokenizer, prompts, [r["response"] for r in rows], a.max_length)
        return list(zip(ids, [int(r["label"]) for r in rows]))

    def _batches(self, examples: list[tuple], step: int) -> list[list[tuple]]:
        """This rank's micro-batches of optimizer step ``step`` (1-based)."""
        a = self.args
        order = global_batch(len(examples), a.batch_size, step, seed=f"{a.seed}/{self.name}")
        micros = rank_micro_batches(order, a.micro_batch)
        log_shard(self.name, step, [i for m in micros for i in m])
        return [[examples[i] for i in micro] for micro in micros]

    def loss(self, micro: list[tuple]) -> tuple[torch.Tensor, dict[str, float], int]:
        """Loss of one micro-batch on the engine, its batch statistics (sums over the
        micro-batch's pairs or rows) and its token count."""
        pad = self.tokenizer.pad_token_id
        if self.objective == "bradley_terry":
            batch = collate([c for c, _ in micro] + [r for _, r in micro], pad)
            r = batch_rewards(self.engine, batch)
            r_chosen, r_rejected = r[: len(micro)], r[len(micro):]  # rows 0..m-1 chosen, m..2m-1 rejected
            loss = bradley_terry_loss(r_chosen, r_rejected)
            margin = (r_chosen - r_rejected).detach()
            stats = {"accuracy": float((margin > 0).float().sum()), "margin": float(margin.sum())}
        else:
            batch = collate([ids for ids, _ in micro], pad)
            r = batch_rewards(self.engine, batch)
            labels = torch.tensor([y for _, y in micro])
            loss = pointwise_loss(r, labels)
            stats = {"accuracy": float(((r.detach() > 0).long() == labels).float().sum()),
                     "reward": float(r.detach().sum())}
        return loss, stats, int(batch["attention_mask"].sum())

    def train(self, rows: list[dict], total_steps: int) -> dict[str, float]:
        """Run to step ``total_steps`` (resuming if a checkpoint exists); returns the last metrics."""
        a = self.args
        self.examples = self._examples(rows)
        self.engine = make_engine(
            self.model, lr=a.lr, weight_decay=a.weight_decay, micro_batch=a.micro_batch,
            grad_accum=grad_accum_steps(a.batch_size, a.micro_batch), max_grad_norm=a.max_grad_norm,
            warmup_steps=a.warmup_steps, total_steps=total_steps,
        )
        fp = hashlib.sha256(f"{checkpoint.fingerprint(a)}/{self.name}/{self.objective}".encode()).hexdigest()
        # The last step is saved too: a stage that trains several models then skips this one.
        return self.run_loop(total_steps, ckpt_dir=self.out_dir / "checkpoints" / self.name, fingerprint=fp,
                             checkpoint_every=a.checkpoint_every, save_last=True)

    def progress(self, metrics: dict[str, float]) -> dict[str, str]:
        return {"loss": f"{metrics[f'{self.name}_loss']:.3f}"}

    def train_step(self, step: int) -> dict[str, float]:
        """One optimizer step over the global batch; loss is the mean over its micro-batches,
        accuracy, margin and reward the means over its pairs or rows."""
        t0 = time.perf_counter()
        self.engine.train()
        sums: dict[str, float] = {"loss": 0.0, "micro_batches": 0, "examples": 0, "tokens": 0}
        for micro in self._batches(self.examples, step):
            loss, batch_stats, n = self.loss(micro)
            self.engine.backward(self.router.add_to(loss))  # an MoE body's balancing loss (model/moe.py)
            self.engine.step()
            for key, value in {"loss": loss.item(), "micro_batches": 1, "examples": len(micro), "tokens": n,
                               **batch_stats}.items():
                sums[key] = sums.get(key, 0.0) + value
        total = sum_over_ranks(sums)
        stat_keys = ("accuracy", "margin") if self.objective == "bradley_terry" else ("accuracy", "reward")
        metrics = {"loss": total["loss"] / total["micro_batches"],
                   **{k: total[k] / total["examples"] for k in stat_keys},
                   "lr": self.engine.get_lr()[0],
                   "grad_norm": float(self.engine.get_global_grad_norm() or 0.0),
                   "tokens_per_s": total["tokens"] / max_over_ranks(time.perf_counter() - t0),
                   **self.router.step_metrics()}
        return {f"{self.name}_{k}": v for k, v in metrics.items()}
