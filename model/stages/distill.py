"""Stage ``distill@<student>``: distil the final R1 model into a smaller student by SFT (paper 2.4).

Plain supervised fine-tuning of the pretrained student (``student@<name>``) on the
teacher's filtered reasoning traces (stage ``traces``), loss on the completion only, no
RL stage afterwards: the paper's finding is that this beats large-scale RL on the same
small model (4.1), which ``rl_student@<name>`` reproduces as the baseline at a comparable
compute budget. One DVC ``foreach`` stage per student; each writes
``artifacts/distill/<name>/``.

Departures from the paper: DeepSeek-R1 fine-tunes for 2 epochs over ~800k samples; here
``max_steps`` is sized for ~40 s per student on one CPU thread (a few epochs over the
traces).

One CPU rank:  r1flow stage distill@s64
N GPUs:        deepspeed --num_gpus N --no_local_rank --module flows.cli stage distill@s64
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from infra.config import knob
from infra.stage import stage_dir, stage_main
from model.stages.common import ItemModel, SFTStageArgs, sft_stage

log = logging.getLogger(__name__)
NAME = "distill"


@dataclass
class DistillConfig(SFTStageArgs, ItemModel):
    item: str = knob("", "Student name, the foreach item of `r1flow stage distill@<name>`.")
    model: str = knob("artifacts/student/{item}/model", "Student to fine-tune; {item} is replaced by its name.")
    data: str = knob("artifacts/traces/traces.jsonl", "Teacher traces: prompt + completion rows (stage traces).")
    max_steps: int = knob(100, "SFT steps (s96: ~0.37 s a step on one idle CPU thread; ~5 epochs over ~1.1k traces).")
    warmup_steps: int = knob(10, "Warmup steps (fewer than pretraining: the student is already trained).")
    lr: float = knob(1e-3, "Peak AdamW learning rate (a third of pretraining's: the student is already trained).")


def run(cfg: DistillConfig) -> dict:
    """Fine-tune the student on the traces and save it; returns the last step's metrics."""
    student = cfg.for_item()
    metrics = sft_stage(NAME, student, out=stage_dir(NAME, cfg.item))
    return {**metrics, "epochs_done": metrics["steps_done"] * cfg.batch_size / metrics["rows"]}


def main(argv: list[str] | None = None) -> dict:
    return stage_main(NAME, DistillConfig, run, argv)
