"""Stage ``student@<name>``: pretrain a smaller student model exactly like the base (paper 2.4).

DeepSeek-R1 distils into *pretrained* models smaller than its own base (Qwen2.5 and Llama
3 checkpoints of 1.5B-70B). The embedded stand-in is a tiny decoder of a smaller size
pretrained like ``base`` (model/stages/base.py: the same synthetic corpus, a tokenizer of
its own trained on that corpus, the same SFT pretraining), one per entry of ``sizes``. A
DVC ``foreach`` runs one stage per student; each writes ``artifacts/student/<name>/``.
Every student then forks twice: ``distill@<name>`` (SFT on the teacher's traces) and
``rl_student@<name>`` (GRPO alone, the paper's baseline of 4.1).

Departures from the paper: the students are pretrained here for fewer steps than the base
(``max_steps``) so that each costs about a minute on one CPU thread; with a real student,
name a Hugging Face model in its ``sizes`` entry (``{"model": "Qwen/Qwen2.5-Math-1.5B"}``)
and nothing is trained.

One CPU rank:  r1flow stage student@s64
N GPUs:        deepspeed --num_gpus N --no_local_rank --module flows.cli stage student@s64
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

from infra.config import knob
from infra.stage import stage_dir, stage_main
from model.stages.base import BaseConfig, pretrain

log = logging.getLogger(__name__)
NAME = "student"
# BaseConfig knobs a student may set for itself; everything else is shared with the base.
SIZE_KNOBS = ("model", "family", "hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size")


@dataclass
class StudentConfig(BaseConfig):
    item: str = knob("", "Student name, the foreach item of `r1flow stage student@<name>`: a key of sizes.")
    sizes: dict = knob({
        "s64": {"hidden_size": 64, "num_layers": 2, "num_heads": 2, "num_kv_heads": 1, "intermediate_size": 192},
        "s96": {"hidden_size": 96, "num_layers": 3, "num_heads": 4, "num_kv_heads": 2, "intermediate_size": 288},
    }, "Student name -> its size knobs (hidden_size, num_layers, num_heads, num_kv_heads, intermediate_size) "
       "or a Hugging Face model; both defaults are smaller than the base (128 wide, 4 layers).")
    max_steps: int = knob(100, "Pretraining steps per student (s96: ~0.37 s a step on one idle CPU thread).")

    def __post_init__(self):
        super().__post_init__()
        for name, size in self.sizes.items():
            if not isinstance(size, dict):
                raise ValueError(f"sizes.{name}: expected a mapping of size knobs, got {size!r}")
            unknown = set(size) - set(SIZE_KNOBS)
            if unknown:
                raise ValueError(f"sizes.{name}: unknown keys {sorted(unknown)}; allowed: {list(SIZE_KNOBS)}")
            hidden, heads, kv = (size.get(k, getattr(self, k)) for k in ("hidden_size", "num_heads", "num_kv_heads"))
            if hidden % heads or heads % kv:
                raise ValueError(f"sizes.{name}: hidden_size must divide by num_heads and num_heads by "
                                 f"num_kv_heads, got {hidden}/{heads}/{kv}")
        if self.item and self.item not in self.sizes:
            raise ValueError(f"unknown student {self.item!r}; known students (keys of sizes): {sorted(self.sizes)}")

    def for_item(self) -> StudentConfig:
        """This config with its student's size knobs applied (what ``run`` pretrains, and what
        ``--help`` shows); a missing or unknown item is a ValueError."""
        if self.item not in self.sizes:
            raise ValueError(f"student needs a known student name, got {self.item!r}: run "
                             f"`r1flow stage student@<name>` with name in {sorted(self.sizes)}")
        return dataclasses.replace(self, **self.sizes[self.item])


def run(cfg: StudentConfig) -> dict:
    """Pretrain (or reference) the student ``cfg.item``; returns pretraining metrics and its size."""
    student = cfg.for_item()
    metrics = pretrain(student, stage_dir(NAME, cfg.item))
    shape = {} if student.model else {k: getattr(student, k) for k in SIZE_KNOBS if k not in ("model", "family")}
    log.info("student %s: %s, %s parameters", cfg.item, shape, metrics.get("parameters"))
    return {**metrics, **shape}


def main(argv: list[str] | None = None) -> dict:
    return stage_main(NAME, StudentConfig, run, argv)
