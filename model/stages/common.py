"""What the GRPO stages (r1_zero, reasoning_rl, ...) share: prompts in, policy out."""

from __future__ import annotations

import logging

from data.quality import write_checked_jsonl
from data.tasks import load_task
from infra.io import staged_dir
from infra.stage import stage_dir
from model import checkpoint, factory
from model.grpo import GRPOTrainer

log = logging.getLogger(__name__)


def grpo_stage(name: str, cfg, extra_columns: dict | None = None) -> dict:
    """Load and check the prompt set, train ``cfg.model`` with GRPO, save the policy.

    ``cfg`` is a GRPOArgs subclass with ``model``, ``dataset``, ``dataset_size``, ``mix``;
    ``extra_columns`` are added to every prompt row (e.g. the target ``language``).
    Returns the last step's metrics plus the mean reward of the first and last tenth of steps.
    """
    out = stage_dir(name)
    rows = [{**row, **(extra_columns or {})}
            for row in load_task(cfg.dataset, limit=cfg.dataset_size, seed=cfg.seed, mix=cfg.mix)]
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
