"""Stage ``all_scenario_rl``: the second RL stage, for helpfulness and harmlessness (paper 2.3.4).

GRPO (model/grpo.py) from the rejection-sampled SFT model on a mix of prompts:

- reasoning prompts (the synthetic train tasks) get the rule rewards: ``accuracy``,
  ``readable_format`` and ``language_consistency``;
- general prompts (data/general.py: facts, instructions, safe and unsafe requests) get the
  learned ``helpfulness`` reward on the final summary only (the text after ``</think>``) and
  the learned ``harmlessness`` reward on the whole response (model/rewards/learned.py, from
  the ``reward_model`` stage), plus ``language_consistency``.

One ``rewards`` dict serves both kinds because every reward returns None where it does not
apply (``accuracy`` on a general prompt, ``helpfulness`` on a reasoning one), and None counts
0 in the weighted sum. The general prompts join only after ``general_from`` of the steps, as
in the paper (general data in the final 400 of 1,700 steps): they carry ``from_step`` and the
trainer draws only eligible rows. Per step it logs ``reward/<name>`` (means over the rows
each reward applies to), ``reward_kind/<kind>``, ``prompt_share/<kind>`` and
``accuracy/<source>``. The output ``artifacts/all_scenario_rl/model`` is the final "R1".

Departures from the paper: the learned rewards are sigmoid-squashed into (0, 1) so that
their weights compare with the 0/1 rule rewards; the general prompts are synthetic; the
reasoning prompts keep the readable-format reward of reasoning RL instead of R1-Zero's
format reward (on general prompts it pays a think block plus any non-blank summary).

One CPU rank:  r1flow stage all_scenario_rl
N GPUs:        deepspeed --num_gpus N --no_local_rank --module flows.cli stage all_scenario_rl
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from data.general import general_prompts
from infra.config import knob
from infra.stage import stage_main
from model.rewards import use_reward_models
from model.stages.common import grpo_stage
from model.stages.r1_zero import R1ZeroConfig

NAME = "all_scenario_rl"
MODEL_KEYS = {"helpfulness": "helpful_model", "harmlessness": "harmless_model"}  # reward -> config key


@dataclass
class AllScenarioRLConfig(R1ZeroConfig):
    OUTPUT: ClassVar[str] = "readable"  # what readable_format checks: <think> … </think> then a summary
    model: str = knob("artifacts/sft/model", "Policy to start from: the SFT model on the rejection-sampled mix.")
    dataset_size: int = knob(2000, "Reasoning prompts drawn from the dataset.")
    general_size: int = knob(1000, "General prompts (data/general.py, train split) in the pool once they join.")
    unsafe_share: float = knob(0.3, "Share of the general prompts that are unsafe requests.")
    general_from: float = knob(0.75, "Fraction of the steps after which general prompts join (paper: 1300/1700).")
    rewards: dict = knob({"accuracy": 1.0, "readable_format": 0.5, "language_consistency": 0.5,
                          "helpfulness": 1.0, "harmlessness": 1.0},
                         "Reward name -> weight; None (not applicable) counts 0, so each prompt kind gets its own.")
    helpful_model: str = knob("artifacts/reward_model/helpful", "Reward model of the helpfulness reward.")
    harmless_model: str = knob("artifacts/reward_model/harmless", "Reward model of the harmlessness reward.")
    language: str = knob("en", "Target language of the reasoning (its script is rewarded).")
    temperature: float = knob(0.7, "Rollout sampling temperature (paper: 0.7 in this stage).")
    steps: int = knob(40, "Optimizer steps (~2 s each on one idle CPU thread with the tiny default; paper: 1,700).")

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 <= self.general_from <= 1.0:
            raise ValueError(f"general_from must be in [0, 1], got {self.general_from}")
        if self.general_size < 0:
            raise ValueError(f"general_size must be >= 0, got {self.general_size}")
        for reward, key in MODEL_KEYS.items():
            if self.rewards.get(reward) and not getattr(self, key):
                raise ValueError(f"reward {reward!r} is weighted but {key} is empty: set {key} or drop the reward")

    @property
    def general_from_step(self) -> int:
        """The first step at which general prompts may be drawn."""
        return round(self.general_from * self.steps) + 1


def prompt_rows(cfg: AllScenarioRLConfig) -> tuple[list[dict], int]:
    """The reasoning prompts (``kind`` reasoning; those overlapping an evaluation set removed)
    then the general ones (``kind`` general, ``from_step`` =
    :attr:`AllScenarioRLConfig.general_from_step`), and how many reasoning prompts were removed."""
    rows, removed = cfg.training_rows(cfg.dataset_size, cfg.seed, NAME)
    reasoning = [{**row, "kind": "reasoning"} for row in rows]
    general = [{**row, "kind": "general", "from_step": cfg.general_from_step}
               for row in general_prompts(cfg.general_size, seed=cfg.seed, split="train",
                                          unsafe_share=cfg.unsafe_share)] if cfg.general_size else []
    return reasoning + general, removed


def run(cfg: AllScenarioRLConfig) -> dict:
    """GRPO on the prompt mix with rule and learned rewards; returns the last step's metrics."""
    use_reward_models(**{reward: getattr(cfg, key) or None for reward, key in MODEL_KEYS.items()})
    rows, removed = prompt_rows(cfg)
    metrics = grpo_stage(NAME, cfg, extra_columns={"language": cfg.language}, rows=rows, suite="prompt_mix")
    return {**metrics, "general_from_step": cfg.general_from_step, "decontaminated": removed}


def main(argv: list[str] | None = None) -> dict:
    return stage_main(NAME, AllScenarioRLConfig, run, argv)
