"""Supervised fine-tuning on a DeepSpeed engine, loss on completion tokens only.

Rows are ``{"prompt": question, "completion": text}``; the prompt is rendered by
data/formatting.py ``render_prompts`` (the stage's prompt format and output format) and masked
out of the loss; a completion that fits is followed by EOS, a cut one is not (the model must
not learn to stop mid-thought). ``base`` pretraining uses this trainer on the
synthetic corpus; later stages use it for cold-start, rejection-sampled SFT and
distillation.

N ranks, one result (model/trainer.py): each optimizer step takes a global batch of
``batch_size`` rows from one seeded permutation per epoch (the same on every rank), cut into
micro-batches of ``micro_batch`` rows; rank r takes the r-th contiguous share of them and
accumulates ``batch_size / (micro_batch x world size)`` micro-batches, so W ranks compute the
update one rank computes. The logged loss is the mean over all the step's micro-batches; rank
0 alone writes the model (ZeRO-3 weights consolidated first) and ``steps.jsonl``.

One CPU rank:  r1flow stage base
Two CPU ranks: OMP_NUM_THREADS=1 torchrun --nproc_per_node 2 -m flows.cli stage base
N GPUs:        deepspeed --num_gpus N --no_local_rank --module flows.cli stage base
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from data.formatting import prompt_style, render_prompts
from infra.config import knob
from infra.steplog import StepLog
from model import checkpoint, packing
from model.engine import make_engine
from model.trainer import Trainer, grad_accum_steps, log_shard, max_over_ranks, rank_share, sum_over_ranks

log = logging.getLogger(__name__)
IGNORE = -100


@dataclass
class SFTArgs:
    """Optimisation knobs shared by every SFT-style stage."""

    epochs: float = knob(1.0, "Passes over the data (ignored when max_steps > 0).")
    max_steps: int = knob(0, "Optimizer steps; 0 = derived from epochs.")
    batch_size: int = knob(64, "Sequences per optimizer step (all ranks together).")
    micro_batch: int = knob(64, "Sequences per forward pass per rank.")
    lr: float = knob(3e-3, "Peak AdamW learning rate (tiny models tolerate large ones).")
    warmup_steps: int = knob(20, "Linear warmup steps, then cosine decay to 10%.")
    weight_decay: float = knob(0.0, "AdamW weight decay.")
    max_grad_norm: float = knob(1.0, "Gradient clipping norm.")
    max_length: int = knob(256, "Longest prompt + completion in tokens; longer completions are cut.")
    packing: bool = knob(True, "Pack whole examples into shared rows (TRL's packing: best-fit decreasing, "
                               "padding-free by position ids) instead of padding each one: the same loss on fewer "
                               "columns (model/packing.py; MoE and flash-attention models are padded).")
    checkpoint_every: int = knob(200, "Save a resumable checkpoint every N steps (0 = never).")
    seed: int = knob(0, "Seed for data order and initialisation.")

    def __post_init__(self):
        if self.micro_batch <= 0 or self.batch_size % self.micro_batch:
            raise ValueError(f"batch_size ({self.batch_size}) must be a multiple of micro_batch ({self.micro_batch})")
        if self.epochs <= 0 and self.max_steps <= 0:
            raise ValueError("set epochs > 0 or max_steps > 0")


def encode_rows(tokenizer, rows: list[dict], max_length: int, *, prompt_format: str = "r1_zero",
                output: str = "tags") -> list[tuple[list[int], list[int]]]:
    """(prompt ids, completion ids) per row, prompt + completion at most ``max_length`` tokens.

    The prompt is rendered by ``render_prompts`` (``prompt_format``, ``output``: see
    data/formatting.py). A completion that fits ends with EOS; one cut to fit gets no EOS, so
    the model never learns to stop mid-thought. At least one completion token is kept.
    """
    prompts = render_prompts(tokenizer, [r["prompt"] for r in rows], prompt_format=prompt_format, output=output)
    completions = tokenizer([" " + r["completion"].strip() for r in rows], add_special_tokens=False)["input_ids"]
    out = []
    for p, c in zip(prompts, completions):
        room = max(1, max_length - len(p))
        out.append((p, c + [tokenizer.eos_token_id] if len(c) < room else c[:room]))
    return out


def collate(examples: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch; labels are -100 on prompt and padding so only completions count."""
    width = max(len(p) + len(c) for p, c in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full_like(ids, IGNORE)
    mask = torch.zeros_like(ids)
    for i, (p, c) in enumerate(examples):
        n = len(p) + len(c)
        ids[i, :n] = torch.tensor(p + c)
        labels[i, len(p):n] = torch.tensor(c)
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def pack(examples: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Packed batch of whole examples (model/packing.py: TRL's packing, best-fit decreasing,
    padding-free): ``input_ids``, ``labels`` (-100 on prompts and padding) and
    ``position_ids``, (R, width), no ``attention_mask``; :func:`completion_loss` gives the
    padded batch's loss up to float rounding. On the base corpus a training step of the
    128-wide base takes about 0.6 s instead of 1.1 on one CPU thread (benchmarks/cpu_steps.py).
    """
    ids, positions, place = packing.pack([p + c for p, c in examples], pad_id)
    labels = torch.full_like(ids, IGNORE)
    for (p, c), (row, col) in zip(examples, place):
        labels[row, col + len(p):col + len(p) + len(c)] = torch.tensor(c)
    return {"input_ids": ids, "labels": labels, "position_ids": positions}


def completion_loss(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Mean next-token cross-entropy over completion tokens of a :func:`collate` (padded) or
    :func:`pack` (packed) batch; also returns their count."""
    if "position_ids" in batch:
        logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
    else:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    # logits[:, t] predicts token t+1: shift labels left by one.
    targets = batch["labels"][:, 1:]
    loss = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=IGNORE
    )
    return loss, int((targets != IGNORE).sum())


class SFTTrainer(Trainer):
    """Trains ``model`` on rows; resumable from ``out_dir/checkpoints``.

    Each optimizer step takes a global batch of ``batch_size`` rows from one seeded permutation
    per epoch (the same on every rank), cut into micro-batches of ``micro_batch``; rank r takes
    the r-th contiguous share of them (:func:`global_batch`), so W ranks accumulate
    ``batch_size / (micro_batch x W)`` micro-batches each and together see the batch one rank sees.
    """

    desc = "sft"

    def __init__(self, model, tokenizer, args: SFTArgs, out_dir: str | Path, steps: StepLog | None = None):
        super().__init__(out_dir, steps or StepLog(Path(out_dir) / "steps.jsonl"))
        self.tokenizer, self.args, self.model = tokenizer, args, model
        self.examples: list = []

    def total_steps(self, n_rows: int) -> int:
        """Optimizer steps for ``n_rows`` examples under the configured epochs/max_steps."""
        a = self.args
        return a.max_steps if a.max_steps > 0 else max(1, math.ceil(a.epochs * n_rows / a.batch_size))

    def _batches(self, examples, step: int) -> list[list]:
        """This rank's micro-batches of optimizer step ``step`` (1-based)."""
        a = self.args
        micros = rank_micro_batches(global_batch(len(examples), a.batch_size, step, seed=a.seed), a.micro_batch)
        log_shard(self.desc, step, [i for m in micros for i in m])
        return [[examples[i] for i in micro] for micro in micros]

    def train(self, rows: list[dict]) -> dict[str, float]:
        """Run to the last step (resuming if a checkpoint exists); returns final metrics."""
        a = self.args
        self.examples = encode_rows(self.tokenizer, rows, a.max_length, **prompt_style(a))
        total = self.total_steps(len(self.examples))
        self.engine = make_engine(
            self.model, lr=a.lr, weight_decay=a.weight_decay, micro_batch=a.micro_batch,
            grad_accum=grad_accum_steps(a.batch_size, a.micro_batch), max_grad_norm=a.max_grad_norm,
            warmup_steps=a.warmup_steps, total_steps=total,
        )
        return self.run_loop(total, ckpt_dir=self.out_dir / "checkpoints", fingerprint=checkpoint.fingerprint(a),
                             checkpoint_every=a.checkpoint_every)

    def progress(self, metrics: dict[str, float]) -> dict[str, str]:
        return {"loss": f"{metrics['loss']:.3f}"}

    def train_step(self, step: int) -> dict[str, float]:
        """One optimizer step over the global batch; loss is the mean over all its micro-batches."""
        t0 = time.perf_counter()
        self.engine.train()
        loss_sum, micros, tokens = 0.0, 0, 0
        batcher = pack if self.args.packing and packing.supported(self.engine) else collate
        for micro in self._batches(self.examples, step):
            batch = {k: v.to(self.engine.device) for k, v in batcher(micro, self.tokenizer.pad_token_id).items()}
            loss, _ = completion_loss(self.engine, batch)
            self.engine.backward(self.router.add_to(loss))
            self.engine.step()
            loss_sum, micros = loss_sum + loss.item(), micros + 1
            tokens += sum(len(p) + len(c) for p, c in micro)
        total = sum_over_ranks({"loss": loss_sum, "micro_batches": micros, "tokens": tokens})
        return {
            "loss": total["loss"] / total["micro_batches"],
            "lr": self.engine.get_lr()[0],
            "grad_norm": float(self.engine.get_global_grad_norm() or 0.0),
            "tokens_per_s": total["tokens"] / max_over_ranks(time.perf_counter() - t0),
            **self.router.step_metrics(),
        }


def global_batch(n: int, batch_size: int, step: int, *, seed: int | str) -> list[int]:
    """Indices (of ``n`` examples) in the global batch of optimizer step ``step`` (1-based).

    Consecutive steps walk one seeded permutation per epoch (``random.Random(f"{seed}/{epoch}")``),
    so every rank computes the same list and a batch may straddle two epochs.
    """
    start, order = (step - 1) * batch_size, []
    while len(order) < batch_size:
        epoch, offset = divmod(start + len(order), n)
        perm = list(range(n))
        random.Random(f"{seed}/{epoch}").shuffle(perm)
        order.extend(perm[offset: offset + batch_size - len(order)])
    return order


def rank_micro_batches(order: list, micro_batch: int) -> list[list]:
    """This rank's micro-batches of a global batch ``order``: the batch is cut into
    micro-batches of ``micro_batch`` and rank r takes the r-th contiguous share of them.
    Raises ValueError when they do not split evenly (see :func:`model.trainer.grad_accum_steps`)."""
    grad_accum_steps(len(order), micro_batch)
    mine = order[rank_share(len(order), "rows")]
    return [mine[i: i + micro_batch] for i in range(0, len(mine), micro_batch)]
