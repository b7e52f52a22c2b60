"""Stage ``r1_zero``: pure RL from the base model with rule rewards (paper section 2.2).

GRPO (model/grpo.py) from ``base`` with the accuracy and format rewards only, no
supervised data: the R1-Zero experiment. On the embedded default the reward
curve rises within ~100 steps as the policy stops making the corpus's slips and
always closes its answer in tags. Per-step metrics go to
``artifacts/r1_zero/steps.jsonl``; the policy to ``artifacts/r1_zero/model``.

One CPU rank:  r1flow stage r1_zero
N GPUs:        deepspeed --num_gpus N --no_local_rank --module flows.cli stage r1_zero
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar

from data.tasks import TrainingData
from infra.config import knob
from infra.stage import stage_main
from model.factory import ModelArgs
from model.grpo import GRPOArgs
from model.stages.common import grpo_stage

log = logging.getLogger(__name__)
NAME = "r1_zero"


@dataclass
class R1ZeroConfig(GRPOArgs, TrainingData, ModelArgs):
    OUTPUT: ClassVar[str] = "tags"  # the paper's Table-1 prompt and format reward

    model: str = knob("artifacts/base/model", "Policy to start from (path or hub id).")
    dataset: str = knob("synthetic", "Prompt set: synthetic, arithmetic, countdown, gsm8k, a file, a hub id (read in `split`).")
    dataset_size: int = knob(4000, "Prompts drawn from the dataset.")
    mix: dict = knob({"arithmetic": 0.75, "countdown": 0.25}, "Family shares when dataset is synthetic.")

    def __post_init__(self):
        super().__post_init__()
        self.check_data()
        self.check_model_args()


def run(cfg: R1ZeroConfig) -> dict:
    """Train the policy with GRPO and save it; returns the last step's metrics and a summary."""
    return grpo_stage(NAME, cfg)


def main(argv: list[str] | None = None) -> dict:
    return stage_main(NAME, R1ZeroConfig, run, argv)
