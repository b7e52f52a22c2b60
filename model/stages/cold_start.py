"""Stage ``cold_start``: curate the cold-start long-CoT set (paper 2.3.1).

Candidates come from three sources, as in the paper: sampling the R1-Zero model on
training prompts (k per prompt); few-shot prompting a model (the base by default) with
worked examples in the readable format shown as earlier turns of the conversation; and
user-supplied JSONL files of ``prompt`` + ``completion`` (+ ``answer``).
They are rewritten into the readable format (``<think>`` reasoning ``</think>`` then
``The answer is \\boxed{…}.``) and filtered (data/filters.py): answer correct (the
shared ``accuracy`` reward), one language, reasoning length window, no repetition
loops, exact and n-gram near-duplicates removed, and decontaminated by n-gram overlap
against the prompts of every evaluation set (``eval_sets``: evaluate.benchmarks of params.yaml
unless set). The rows each filter removed, and the rows kept from each source, are logged.
Prompts are the ``train`` split of ``dataset``. The R1-Zero model is prompted as it was trained
(the Table-1 prompt, ``tags``); the few-shot model with the readable prompt its examples follow.

One CPU rank:  r1flow stage cold_start
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from dataclasses import dataclass

from data.filters import STEPS, curate
from data.loaders import load_rows
from data.quality import write_checked_jsonl
from data.tasks import TrainingData, load_task
from infra.config import knob
from infra.stage import stage_dir, stage_main
from model import factory
from model.evaluate import Protocol, sample
from model.factory import ModelArgs
from model.rewards import get_reward

log = logging.getLogger(__name__)
NAME = "cold_start"


@dataclass
class ColdStartConfig(TrainingData, ModelArgs):
    model: str = knob("artifacts/r1_zero/model", "Model whose samples are the candidates (R1-Zero); empty = none.")
    dataset: str = knob("synthetic", "Prompts to sample on (see data/tasks.py).")
    dataset_size: int = knob(1000, "Prompts sampled.")
    mix: dict = knob({"arithmetic": 0.75, "countdown": 0.25}, "Family shares when dataset is synthetic.")
    samples_per_prompt: int = knob(4, "Candidates sampled per prompt.")
    temperature: float = knob(0.7, "Sampling temperature of the candidates.")
    max_new_tokens: int = knob(96, "Longest candidate in tokens.")
    few_shot_model: str = knob("artifacts/base/model", "Model prompted few-shot with readable examples; empty = none.")
    few_shot: int = knob(2, "Worked readable examples shown before each question (few-shot prompting).")
    few_shot_size: int = knob(200, "Prompts answered by few-shot prompting (samples_per_prompt each).")
    files: list = knob([], "JSONL files of extra candidates (prompt, completion, answer, source).")
    steps: list = knob(list(STEPS), "Curation steps, in order (data/filters.py STEPS).")
    language: str = knob("en", "The one language the reasoning must be written in.")
    min_chars: int = knob(20, "Shortest reasoning kept, in characters.")
    max_chars: int = knob(4000, "Longest reasoning kept, in characters.")
    seed: int = knob(0, "Seed for prompts and sampling.")

    def __post_init__(self):
        self.check_data()
        self.check_model_args()
        unknown = [s for s in self.steps if s not in STEPS]
        if unknown:
            raise ValueError(f"steps: unknown {unknown}; choose from {list(STEPS)}")
        if not self.model and not self.files and not (self.few_shot_model and self.few_shot_size):
            raise ValueError("no candidates: set model (to sample), few_shot_model (to prompt) or files (to read)")


def candidates(cfg: ColdStartConfig) -> list[dict]:
    """Sampled, few-shot and file-supplied candidate rows (prompt, answer, completion, origin)."""
    rows: list[dict] = []
    if cfg.model:
        prompts = _prompts(cfg, cfg.dataset_size, cfg.seed)
        rows += _sampled(cfg, cfg.model, prompts, "r1_zero", output="tags")
    if cfg.few_shot_model and cfg.few_shot_size:
        prompts = _prompts(cfg, cfg.few_shot_size, cfg.seed + 1)
        examples = worked_examples(cfg.few_shot, seed=cfg.seed)
        rows += _sampled(cfg, cfg.few_shot_model, prompts, "few_shot", output="readable", examples=examples)
    for path in cfg.files:
        rows += [{**row, "origin": str(path)} for row in load_rows(path)]
    return rows


def _prompts(cfg: ColdStartConfig, limit: int, seed: int) -> list[dict]:
    return load_task(cfg.dataset, split=cfg.split, limit=limit, seed=seed, mix=cfg.mix,
                     revision=cfg.dataset_revision)


def worked_examples(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` (question, readable completion) pairs: the synthetic solver without slips, one
    per task family in turn, rewritten into the readable format."""
    from data.filters import to_readable
    from data.synthetic import FAMILIES, Noise, problems, worked_solution

    clean = Noise(slip=0.0, forget_carry=0.0, fix=0.0, unformatted=0.0)
    rng = random.Random(f"few-shot/{seed}")
    streams = {family: problems(family, "train", seed + 7) for family in FAMILIES}
    examples = []
    for i in range(n):
        family = FAMILIES[i % len(FAMILIES)]
        problem = next(streams[family])
        examples.append((problem["prompt"], to_readable(worked_solution(problem, family, rng, clean))))
    return examples


def _sampled(cfg: ColdStartConfig, model_path: str, prompts: list[dict], origin: str, *, output: str,
             **kw) -> list[dict]:
    tokenizer, model, _ = factory.load_pinned(model_path, cfg.revision)
    model = model.to(factory.inference_device())
    n = cfg.samples_per_prompt
    protocol = Protocol(k=n, temperature=cfg.temperature, top_p=1.0, max_new_tokens=cfg.max_new_tokens, seed=cfg.seed,
                        prompt_format=cfg.prompt_format, output=output)
    texts, _ = sample(model, tokenizer, prompts, n=n, temperature=cfg.temperature, protocol=protocol, **kw)
    return [{**prompts[j // n], "id": f"{prompts[j // n]['id']}-{origin}{j % n}", "completion": text, "origin": origin}
            for j, text in enumerate(texts)]


def run(cfg: ColdStartConfig) -> dict:
    """Generate, rewrite, filter and check the cold-start set; returns counts per filter."""
    out = stage_dir(NAME)
    rows = candidates(cfg)
    kept, removed = curate(rows, steps=cfg.steps, judge=get_reward("accuracy"),
                           eval_prompts=cfg.eval_prompts(),
                           language=cfg.language, min_chars=cfg.min_chars, max_chars=cfg.max_chars)
    if not kept:
        raise ValueError(f"cold_start: no candidate survived curation (removed per step: {removed})")
    write_checked_jsonl(kept, out / "data.jsonl", "traces", report_dir=out / "quality")
    origins = Counter(r["origin"] for r in kept)
    return {"candidates": len(rows), "kept": len(kept), "kept_share": len(kept) / len(rows),
            **{f"removed/{step}": count for step, count in removed.items()},
            **{f"kept_from/{origin}": origins[origin] for origin in sorted({r["origin"] for r in rows})}}


def main(argv: list[str] | None = None) -> dict:
    return stage_main(NAME, ColdStartConfig, run, argv)
