"""Stage ``evaluate``: models on every benchmark, with the paper's protocol (section 3).

pass@1 is the mean correctness of k samples at temperature 0.6, top-p 0.95; cons@k the
majority vote of those k; greedy one argmax decode. The paper uses k = 64 (16 for some
benchmarks); the tiny default uses 4.

In the pipeline it is a foreach stage, ``evaluate@MODEL`` for each name of ``models``, so
early models are evaluated while later ones still train; it writes
``artifacts/evaluate/MODEL/metrics.json``. Without an item (``r1flow stage evaluate``)
every model is evaluated into ``artifacts/evaluate/metrics.json``. Either way the file is
shaped ``{model: {benchmark: {"pass@1", "cons@k", "greedy", "mean_length",
"reflection_rate", "mixing_rate", "format_rate", "readable_rate", "cons_at": {j: cons@j},
"budget_pass@1": {b: pass@1}, "n", "k"}}}``, with a Markdown table beside it in ``table.md`` and
every metric per problem in ``problems.json`` (``{model: {benchmark: {"id": [...], metric: [...]}}}``,
model/evaluate.py ``score_problems``): the report compares models problem by problem.

Test-time scaling: ``cons_at`` sweeps the vote size j = 1, 2, 4, ... k, and ``budget_pass@1``
the thinking budget (``budgets``, in tokens), both from the same k samples per problem; a sample
still thinking at a budget is forced to answer there (budget forcing, model/evaluate.py).

Benchmarks are read in ``split`` (test; a ``_hard`` suffix names the hard split). Each model is
prompted for the output format it was trained to write: the readable format (``<think>`` …
``</think>`` then ``\\boxed{}``) for the names in ``readable_models``, R1-Zero's Table-1 prompt
for the others; ``prompt_format`` chooses plain text or the model's chat template.

One CPU rank:  r1flow stage evaluate@r1_zero   (or r1flow stage evaluate)
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

from data.tasks import DEFAULT_BENCHMARKS, benchmark_rows
from infra.config import knob
from infra.progress import progress
from infra.io import write_json
from infra.stage import stage_dir, stage_main
from model import factory
from model.evaluate import Protocol, score_problems, summarize
from model.factory import ModelArgs
from model.grpo import DEFAULT_REFLECTION

log = logging.getLogger(__name__)
NAME = "evaluate"


@dataclass
class EvaluateConfig(ModelArgs):
    models: dict = knob({"base": "artifacts/base/model", "r1_zero": "artifacts/r1_zero/model"},
                        "Name -> model path or hub id; in the pipeline report.models (the foreach items of "
                        "evaluate@MODEL).", inherit="report.models")
    item: str = knob("", "Evaluate only this name of `models` (set by `evaluate@NAME`); empty = all.")
    benchmarks: list = knob(DEFAULT_BENCHMARKS, "Prompt sets (see data/tasks.py): synthetic splits, gsm8k, math500, "
                            "aime24, humaneval, files. Every training stage is decontaminated against them.")
    split: str = knob("test", "Split of each benchmark read (a synthetic name's _test/_hard suffix wins).")
    readable_models: list = knob(["reasoning_rl", "reasoning_rl_nolang", "r1", "s64_distill", "s96_distill"],
                                 "Names of `models` trained after the cold start: prompted for the readable "
                                 "format; the others get the R1-Zero prompt.")
    limit: int = knob(200, "Problems per benchmark.")
    k: int = knob(4, "Samples per problem for pass@1 and cons@k (paper: 64).")
    temperature: float = knob(0.6, "Sampling temperature (paper: 0.6).")
    top_p: float = knob(0.95, "Nucleus sampling (paper: 0.95).")
    max_new_tokens: int = knob(96, "Longest completion in tokens.")
    budgets: list = knob([], "Thinking budgets (tokens) of the test-time scaling sweep, each scored by budget "
                         "forcing: a sample still thinking there is cut, its thinking closed and the answer "
                         "asked for; empty = a quarter, half, three quarters and all of max_new_tokens.")
    batch_size: int = knob(256, "Sequences per generation batch.")
    reflection_phrases: list = knob(DEFAULT_REFLECTION, "Phrases that count a completion as reflecting.")
    seed: int = knob(0, "Seed for sampling (pass@1, cons@k); the problems stay those of benchmark_seed.")
    benchmark_seed: int = knob(0, "Seed of the synthetic benchmarks' problems (0: the published ones), apart from "
                               "seed so that runs of any seed are scored on the same problems; training stages are "
                               "decontaminated against the same ones.")

    def __post_init__(self):
        self.check_model_args()
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if not self.models or not self.benchmarks:
            raise ValueError("models and benchmarks must not be empty")
        self.budgets = sorted({int(b) for b in self.budgets} or
                              {max(1, self.max_new_tokens * q // 4) for q in (1, 2, 3, 4)})
        if self.budgets[0] < 1 or self.budgets[-1] > self.max_new_tokens:
            raise ValueError(f"budgets {self.budgets} must lie in 1..max_new_tokens ({self.max_new_tokens})")
        if self.item and self.item not in self.models:
            raise ValueError(f"item {self.item!r} is not one of models: {sorted(self.models)}")


def run(cfg: EvaluateConfig) -> dict:
    """Evaluate each model on each benchmark; returns {model: {benchmark: metrics}}."""
    out = stage_dir(NAME, cfg.item)
    models = {cfg.item: cfg.models[cfg.item]} if cfg.item else cfg.models
    protocol = Protocol(k=cfg.k, temperature=cfg.temperature, top_p=cfg.top_p,
                        max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size, seed=cfg.seed,
                        prompt_format=cfg.prompt_format, budgets=tuple(cfg.budgets))
    benchmarks = load_benchmarks(cfg)
    results: dict[str, dict] = {}
    problems: dict[str, dict] = {}
    for model_name, path in models.items():
        tokenizer, model, _ = factory.load_pinned(path, cfg.revision)
        model = model.to(factory.inference_device())
        output = "readable" if model_name in cfg.readable_models else "tags"
        protocol = dataclasses.replace(protocol, output=output)
        results[model_name], problems[model_name] = {}, {}
        for bench, rows in progress(benchmarks.items(), desc=f"evaluate {model_name}"):
            scores = score_problems(model, tokenizer, rows, protocol, cfg.reflection_phrases)
            problems[model_name][bench] = scores
            results[model_name][bench] = summarize(scores, cfg.k)
            log.info("%s on %s: %s", model_name, bench, results[model_name][bench])
    (out / "table.md").write_text(markdown_table(results))
    write_json(out / "problems.json", problems)
    return results


def load_benchmarks(cfg: EvaluateConfig) -> dict[str, list[dict]]:
    """``{benchmark: rows}`` that ``run`` scores: ``cfg.limit`` rows of each of ``cfg.benchmarks``
    in ``cfg.split``, synthetic problems drawn from ``cfg.benchmark_seed`` (never ``cfg.seed``)."""
    return {name: benchmark_rows(name, split=cfg.split, limit=cfg.limit, benchmark_seed=cfg.benchmark_seed)
            for name in cfg.benchmarks}


def markdown_table(results: dict) -> str:
    """Benchmarks as rows, models as columns, each cell 'pass@1 / cons@k / greedy' in %."""
    models = list(results)
    benches = list(dict.fromkeys(b for m in models for b in results[m]))
    lines = ["| benchmark | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
    for b in benches:
        cells = []
        for m in models:
            r = results[m].get(b)
            cells.append("-" if r is None else f"{100 * r['pass@1']:.1f} / {100 * r['cons@k']:.1f} / {100 * r['greedy']:.1f}")
        lines.append(f"| {b} | " + " | ".join(cells) + " |")
    k = next(iter(next(iter(results.values())).values()))["k"] if results else "k"
    return "\n".join(lines) + f"\n\nCells: pass@1 / cons@{k} / greedy accuracy, in %.\n"


def main(argv: list[str] | None = None) -> dict:
    return stage_main(NAME, EvaluateConfig, run, argv)
