"""Stage ``sft``: supervised fine-tuning of the base on the rejection-sampled mix (paper 2.3.3).

The paper fine-tunes DeepSeek-V3-Base (not the RL checkpoint) for two epochs on ~800k
samples: ~600k reasoning traces rejection-sampled from the reasoning-RL model and ~200k
non-reasoning ones (writing, factual QA, self-cognition, translation). Here the base is
fine-tuned the same way (loss on completion tokens only, model/sft.py) on
``artifacts/rejection_sampling/data.jsonl``: correct, readable, single-language traces of
the reasoning-RL model plus general rows (facts, instructions, safety refusals) in the
same ``<think> … </think> summary`` format. Departure: a few hundred rows, not 800k, and
the non-reasoning rows are synthetic rather than DeepSeek-V3 outputs.

One CPU rank:  r1flow stage sft
N GPUs:        deepspeed --num_gpus N --no_local_rank --module flows.cli stage sft
"""

from __future__ import annotations

from dataclasses import dataclass

from infra.config import knob
from infra.stage import stage_main
from model.stages.common import SFTStageArgs, sft_stage

NAME = "sft"


@dataclass
class SFTConfig(SFTStageArgs):
    model: str = knob("artifacts/base/model", "Model to fine-tune (the base, not the RL checkpoint, as in the paper).")
    data: str = knob("artifacts/rejection_sampling/data.jsonl", "The rejection-sampled mix: prompt + completion.")
    epochs: float = knob(2.0, "Passes over the mix (paper: 2).")
    warmup_steps: int = knob(2, "Linear warmup steps: the default mix gives only ~18 steps in 2 epochs.")


def run(cfg: SFTConfig) -> dict:
    """Fine-tune ``cfg.model`` on the mix and save it; returns the last step's metrics."""
    return sft_stage(NAME, cfg)


def main(argv: list[str] | None = None) -> dict:
    return stage_main(NAME, SFTConfig, run, argv)
