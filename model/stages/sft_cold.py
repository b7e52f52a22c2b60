"""Stage ``sft_cold``: supervised fine-tuning of the base on the cold-start data (paper 2.3.1).

The base model learns the readable format and single-language reasoning from the
curated cold-start set before any reasoning RL, which is what makes DeepSeek-R1's RL
start from a model that already writes readable chains of thought.

One CPU rank:  r1flow stage sft_cold
N GPUs:        deepspeed --num_gpus N --module flows.cli stage sft_cold
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from data.loaders import read_rows_jsonl
from infra.config import knob
from infra.io import staged_dir
from infra.stage import stage_dir, stage_main
from infra.steplog import StepLog
from model import checkpoint, factory
from model.sft import SFTArgs, SFTTrainer

log = logging.getLogger(__name__)
NAME = "sft_cold"


@dataclass
class SFTColdConfig(SFTArgs):
    model: str = knob("artifacts/base/model", "Model to fine-tune (the base, as in the paper).")
    data: str = knob("artifacts/cold_start/data.jsonl", "Cold-start rows: prompt + completion.")


def run(cfg: SFTColdConfig) -> dict:
    """Fine-tune ``cfg.model`` on ``cfg.data`` and save it; returns the last step's metrics."""
    out = stage_dir(NAME)
    rows = read_rows_jsonl(cfg.data)
    if not rows:
        raise ValueError(f"{cfg.data}: no cold-start rows to train on")
    tokenizer = factory.load_tokenizer(cfg.model)
    model = factory.load_model(cfg.model)
    trainer = SFTTrainer(model, tokenizer, cfg, out, steps=StepLog(out / "steps.jsonl"))
    metrics = trainer.train(rows)
    with staged_dir(out / "model") as tmp:
        factory.save_pretrained(trainer.engine.module, tokenizer, tmp)
    checkpoint.clear(out / "checkpoints")
    return {**metrics, "rows": len(rows), "steps_done": trainer.total_steps(len(rows))}


def main(argv: list[str] | None = None) -> dict:
    return stage_main(NAME, SFTColdConfig, run, argv)
