"""Stage ``cold_start``: curate the cold-start long-CoT set (paper 2.3.1).

Candidates come from sampling the R1-Zero model on training prompts (k per prompt)
and from user-supplied JSONL files of ``prompt`` + ``completion`` (+ ``answer``).
They are rewritten into the readable format (``<think>`` reasoning ``</think>`` then
``The answer is \\boxed{…}.``) and filtered (data/filters.py): answer correct (the
shared ``accuracy`` reward), one language, reasoning length window, no repetition
loops, exact and n-gram near-duplicates removed, and decontaminated by n-gram overlap
against the prompts of every evaluation set. The rows each filter removed are logged.
Few-shot prompting a model as a third source is not built yet.

One CPU rank:  r1flow stage cold_start
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from data.filters import STEPS, curate
from data.loaders import load_rows
from data.quality import write_checked_jsonl
from data.tasks import load_task
from infra.config import knob
from infra.stage import stage_dir, stage_main
from model import factory
from model.evaluate import Protocol, sample
from model.rewards import get_reward

log = logging.getLogger(__name__)
NAME = "cold_start"


@dataclass
class ColdStartConfig:
    model: str = knob("artifacts/r1_zero/model", "Model whose samples are the candidates (R1-Zero); empty = none.")
    dataset: str = knob("synthetic", "Prompts to sample on (see data/tasks.py).")
    dataset_size: int = knob(1000, "Prompts sampled.")
    mix: dict = knob({"arithmetic": 0.75, "countdown": 0.25}, "Family shares when dataset is synthetic.")
    samples_per_prompt: int = knob(4, "Candidates sampled per prompt.")
    temperature: float = knob(0.7, "Sampling temperature of the candidates.")
    max_new_tokens: int = knob(96, "Longest candidate in tokens.")
    files: list = knob([], "JSONL files of extra candidates (prompt, completion, answer, source).")
    steps: list = knob(list(STEPS), "Curation steps, in order (data/filters.py STEPS).")
    language: str = knob("en", "The one language the reasoning must be written in.")
    min_chars: int = knob(20, "Shortest reasoning kept, in characters.")
    max_chars: int = knob(4000, "Longest reasoning kept, in characters.")
    eval_sets: list = knob(["arithmetic_test", "arithmetic_hard", "countdown_test", "countdown_hard",
                            "gsm8k", "math500", "aime24", "humaneval"],
                           "Evaluation sets to decontaminate against (n-gram overlap of prompts).")
    eval_limit: int = knob(2000, "Rows read per evaluation set (the real benchmarks are smaller: all rows).")
    seed: int = knob(0, "Seed for prompts and sampling.")

    def __post_init__(self):
        unknown = [s for s in self.steps if s not in STEPS]
        if unknown:
            raise ValueError(f"steps: unknown {unknown}; choose from {list(STEPS)}")
        if not self.model and not self.files:
            raise ValueError("no candidates: set model (to sample) or files (to read)")


def candidates(cfg: ColdStartConfig) -> list[dict]:
    """Sampled and file-supplied candidate rows (prompt, answer, completion, origin)."""
    rows: list[dict] = []
    if cfg.model:
        prompts = load_task(cfg.dataset, limit=cfg.dataset_size, seed=cfg.seed, mix=cfg.mix)
        tokenizer, model = factory.load_tokenizer(cfg.model), factory.load_model(cfg.model)
        protocol = Protocol(k=cfg.samples_per_prompt, temperature=cfg.temperature, top_p=1.0,
                            max_new_tokens=cfg.max_new_tokens, seed=cfg.seed)
        texts, _ = sample(model, tokenizer, prompts, n=cfg.samples_per_prompt,
                          temperature=cfg.temperature, protocol=protocol)
        for j, text in enumerate(texts):
            row = prompts[j // cfg.samples_per_prompt]
            rows.append({**row, "id": f"{row['id']}-s{j % cfg.samples_per_prompt}",
                         "completion": text, "origin": "r1_zero"})
    for path in cfg.files:
        rows += [{**row, "origin": str(path)} for row in load_rows(path)]
    return rows


def run(cfg: ColdStartConfig) -> dict:
    """Generate, rewrite, filter and check the cold-start set; returns counts per filter."""
    out = stage_dir(NAME)
    rows = candidates(cfg)
    eval_prompts = [r["prompt"] for name in cfg.eval_sets for r in load_task(name, limit=cfg.eval_limit)]
    kept, removed = curate(rows, steps=cfg.steps, judge=get_reward("accuracy"), eval_prompts=eval_prompts,
                           language=cfg.language, min_chars=cfg.min_chars, max_chars=cfg.max_chars)
    if not kept:
        raise ValueError(f"cold_start: no candidate survived curation (removed per step: {removed})")
    write_checked_jsonl(kept, out / "data.jsonl", "traces", report_dir=out / "quality")
    return {"candidates": len(rows), "kept": len(kept), "kept_share": len(kept) / len(rows),
            **{f"removed/{step}": count for step, count in removed.items()}}


def main(argv: list[str] | None = None) -> dict:
    return stage_main(NAME, ColdStartConfig, run, argv)
