"""Stage ``sft_cold``: supervised fine-tuning of the base on the cold-start data (paper 2.3.1).

The base model learns the readable format and single-language reasoning from the
curated cold-start set before any reasoning RL, which is what makes DeepSeek-R1's RL
start from a model that already writes readable chains of thought.

One CPU rank:  r1flow stage sft_cold
N GPUs:        deepspeed --num_gpus N --no_local_rank --module flows.cli stage sft_cold
"""

from __future__ import annotations

from dataclasses import dataclass

from infra.config import knob
from infra.stage import stage_main
from model.stages.common import SFTStageArgs, sft_stage

NAME = "sft_cold"


@dataclass
class SFTColdConfig(SFTStageArgs):
    model: str = knob("artifacts/base/model", "Model to fine-tune (the base, as in the paper).")
    data: str = knob("artifacts/cold_start/data.jsonl", "Cold-start rows: prompt + completion.")


def run(cfg: SFTColdConfig) -> dict:
    """Fine-tune ``cfg.model`` on ``cfg.data`` and save it; returns the last step's metrics."""
    return sft_stage(NAME, cfg)


def main(argv: list[str] | None = None) -> dict:
    return stage_main(NAME, SFTColdConfig, run, argv)
