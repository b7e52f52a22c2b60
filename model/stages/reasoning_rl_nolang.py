"""Stage ``reasoning_rl_nolang``: the paper's ablation of the language-consistency reward
(section 2.3.2: "we also conduct an ablation experiment ... without the language consistency
reward").

``reasoning_rl`` exactly, with the same start (``sft_cold``), steps, seed and every other knob
as ``reasoning_rl`` resolves it (its params.yaml section, what it inherits, its defaults), but
rewarded by ``reasoning_rl``'s rewards without ``language_consistency``. The report compares its mixing rate with ``reasoning_rl``'s: with the
cold-start filter common to both, the difference is the reward's own effect.

One CPU rank:  r1flow stage reasoning_rl_nolang
"""

from __future__ import annotations

from infra.config import variant_of
from infra.stage import stage_main
from model.stages.common import grpo_stage
from model.stages.reasoning_rl import ReasoningRLConfig

NAME = "reasoning_rl_nolang"

LANGUAGE_REWARD = "language_consistency"


def without_language_reward(rewards: dict) -> dict:
    """``rewards`` (name -> weight) without the language-consistency reward."""
    return {name: weight for name, weight in rewards.items() if name != LANGUAGE_REWARD}


ReasoningRLNoLangConfig = variant_of(ReasoningRLConfig, "reasoning_rl", "ReasoningRLNoLangConfig", __name__,
                                     rewards=without_language_reward)


def run(cfg) -> dict:
    """GRPO without the language reward; returns the last step's metrics and a summary."""
    return grpo_stage(NAME, cfg, extra_columns={"language": cfg.language})


def main(argv: list[str] | None = None) -> dict:
    return stage_main(NAME, ReasoningRLNoLangConfig, run, argv)
