"""Stage ``reasoning_rl_nolang``: the paper's ablation of the language-consistency reward
(section 2.3.2: "we also conduct an ablation experiment ... without the language consistency
reward").

``reasoning_rl`` exactly, with the same start (``sft_cold``), steps, seed and every other knob
taken from the ``reasoning_rl`` section of params.yaml, but rewarded by accuracy and the
readable format alone. The report compares its mixing rate with ``reasoning_rl``'s: with the
cold-start filter common to both, the difference is the reward's own effect.

One CPU rank:  r1flow stage reasoning_rl_nolang
"""

from __future__ import annotations

from infra.config import knob, variant_of
from infra.stage import stage_main
from model.stages.common import grpo_stage
from model.stages.reasoning_rl import ReasoningRLConfig

NAME = "reasoning_rl_nolang"

ReasoningRLNoLangConfig = variant_of(
    ReasoningRLConfig, "reasoning_rl", "ReasoningRLNoLangConfig", __name__,
    rewards=knob({"accuracy": 1.0, "readable_format": 0.5},
                 "Reward name -> weight: reasoning_rl's without language_consistency (the ablation)."))


def run(cfg) -> dict:
    """GRPO without the language reward; returns the last step's metrics and a summary."""
    return grpo_stage(NAME, cfg, extra_columns={"language": cfg.language})


def main(argv: list[str] | None = None) -> dict:
    return stage_main(NAME, ReasoningRLNoLangConfig, run, argv)
