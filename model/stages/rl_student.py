"""Stage ``rl_student@<student>``: the RL-only baseline for a small student (paper 4.1, Table 6).

The paper asks whether a small model can reach the distilled model's reasoning by
large-scale RL alone, and finds it cannot: Qwen-32B trained R1-Zero-style for 10k steps
stays below its distilled counterpart. Here the same pretrained student
(``student@<name>``) is trained with exactly R1-Zero's recipe (model/stages/r1_zero.py:
GRPO, accuracy + format rewards, the same prompts and knobs), and its result is set
against ``distill@<name>``. One DVC ``foreach`` stage per student; each writes
``artifacts/rl_student/<name>/``.

Departures from the paper: the RL budget is matched to the distillation's in CPU time
instead of being made large. Measured for s96 on one thread (same load): distill's 100 SFT
steps (6400 traces, forward + backward) took 54 s of training, 30 GRPO steps 99 s (each
samples 16 x 8 completions, scores them with the reference and updates once), so the
default 20 steps (2560 rollouts) cost ~1.2x the distillation.

One CPU rank:  r1flow stage rl_student@s64
N GPUs:        deepspeed --num_gpus N --no_local_rank --module flows.cli stage rl_student@s64
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from infra.config import knob
from infra.stage import stage_dir, stage_main
from model.stages.common import ItemModel, grpo_stage
from model.stages.r1_zero import R1ZeroConfig

log = logging.getLogger(__name__)
NAME = "rl_student"


@dataclass
class RLStudentConfig(R1ZeroConfig, ItemModel):
    item: str = knob("", "Student name, the foreach item of `r1flow stage rl_student@<name>`.")
    model: str = knob("artifacts/student/{item}/model", "Policy to start from; {item} is replaced by its name.")
    steps: int = knob(20, "GRPO steps (s96: ~1.2x the CPU time of distill's 100 SFT steps).")


def run(cfg: RLStudentConfig) -> dict:
    """GRPO from the student with R1-Zero's rewards; returns the last step's metrics and a summary."""
    policy = cfg.for_item()
    return grpo_stage(NAME, policy, out=stage_dir(NAME, cfg.item))


def main(argv: list[str] | None = None) -> dict:
    return stage_main(NAME, RLStudentConfig, run, argv)
