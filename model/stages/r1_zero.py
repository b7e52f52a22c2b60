"""Stage ``r1_zero``: pure RL from the base model with rule rewards (paper section 2.2).

GRPO (model/grpo.py) from ``base`` with the accuracy and format rewards only, no
supervised data: the R1-Zero experiment. On the embedded default the reward
curve rises within ~100 steps as the policy stops making the corpus's slips and
always closes its answer in tags. Per-step metrics go to
``artifacts/r1_zero/steps.jsonl``; the policy to ``artifacts/r1_zero/model``.

One CPU rank:  r1flow stage r1_zero
N GPUs:        deepspeed --num_gpus N --module flows.cli stage r1_zero
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from data.quality import write_checked_jsonl
from data.tasks import load_task
from infra.config import knob
from infra.io import staged_dir
from infra.stage import stage_dir, stage_main
from model import checkpoint, factory
from model.grpo import GRPOArgs, GRPOTrainer

log = logging.getLogger(__name__)
NAME = "r1_zero"


@dataclass
class R1ZeroConfig(GRPOArgs):
    model: str = knob("artifacts/base/model", "Policy to start from (path or hub id).")
    dataset: str = knob("synthetic", "Prompt set: synthetic, arithmetic, countdown, gsm8k, a file, a hub id.")
    dataset_size: int = knob(4000, "Prompts drawn from the dataset.")
    mix: dict = knob({"arithmetic": 0.75, "countdown": 0.25}, "Family shares when dataset is synthetic.")


def run(cfg: R1ZeroConfig) -> dict:
    """Train the policy with GRPO and save it; returns the last step's metrics and a summary."""
    out = stage_dir(NAME)
    rows = load_task(cfg.dataset, limit=cfg.dataset_size, seed=cfg.seed, mix=cfg.mix)
    write_checked_jsonl(rows, out / "prompts.jsonl", "prompts", report_dir=out / "quality")
    tokenizer = factory.load_tokenizer(cfg.model)
    model = factory.load_model(cfg.model)
    trainer = GRPOTrainer(model, tokenizer, rows, cfg, out)
    last = trainer.train()
    with staged_dir(out / "model") as tmp:
        factory.save_pretrained(trainer.engine.module, tokenizer, tmp)
    checkpoint.clear(out / "checkpoints")  # the model is saved: nothing left to resume
    history = trainer.steps.read()
    window = max(1, len(history) // 10)
    first = sum(r["reward"] for r in history[:window]) / window
    final = sum(r["reward"] for r in history[-window:]) / window
    return {**last, "reward_first": first, "reward_last": final, "steps_done": len(history)}


def main(argv: list[str] | None = None) -> dict:
    return stage_main(NAME, R1ZeroConfig, run, argv)
