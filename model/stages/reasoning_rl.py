"""Stage ``reasoning_rl``: reasoning-oriented RL after the cold start (paper 2.3.2).

GRPO from ``sft_cold`` with the rule rewards of R1-Zero plus the language-consistency
reward: the share of the reasoning's words (characters, for Chinese and Japanese; math
notation left out) written in the target language's script, added to the accuracy and format
rewards. The paper notes the language reward costs a little accuracy and buys readable,
single-language reasoning; the run logs the mixing rate (share of completions whose reasoning
mixes scripts) at every step.

One CPU rank:  r1flow stage reasoning_rl
N GPUs:        deepspeed --num_gpus N --no_local_rank --module flows.cli stage reasoning_rl
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from infra.config import knob
from infra.stage import stage_main
from model.stages.common import grpo_stage
from model.stages.r1_zero import R1ZeroConfig

NAME = "reasoning_rl"


@dataclass
class ReasoningRLConfig(R1ZeroConfig):
    OUTPUT: ClassVar[str] = "readable"  # what readable_format checks: <think> … </think> then \boxed{}
    model: str = knob("artifacts/sft_cold/model", "Policy to start from: the cold-start SFT model.")
    rewards: dict = knob({"accuracy": 1.0, "readable_format": 0.5, "language_consistency": 0.5},
                         "Reward name -> weight; the sum is r_i (the readable format taught by the cold start).")
    language: str = knob("en", "Target language of the reasoning (its script is rewarded).")


def run(cfg: ReasoningRLConfig) -> dict:
    """GRPO with the language-consistency reward; returns the last step's metrics and a summary."""
    return grpo_stage(NAME, cfg, extra_columns={"language": cfg.language})


def main(argv: list[str] | None = None) -> dict:
    return stage_main(NAME, ReasoningRLConfig, run, argv)
