"""Stage ``rejection_sampling``: the SFT mix of reasoning traces and general data (paper 2.3.3).

When reasoning RL has converged, the paper samples several responses per training prompt
from its checkpoint and keeps only the good ones: correct (rule-checked, or judged by
DeepSeek-V3 for prompts without a rule), free of mixed languages, long paragraphs and code
blocks. Here, for each of ``dataset_size`` train prompts (``split`` train, those overlapping an
evaluation set removed and counted as ``decontaminated``), ``samples_per_prompt`` completions
are sampled from the reasoning-RL model (model/evaluate.py ``sample``) and pass, in order:

1. ``readable``: the ``readable_format`` reward is 1 (``<think>`` … ``</think>`` then
   ``The answer is \\boxed{…}.``);
2. ``correct``: the shared ``accuracy`` reward is 1;
3. ``single_language``: ``language_consistency`` is 1 for the target ``language``;
4. ``pass_rate``: the prompt's pass rate (share of its N samples that are correct) lies in
   (``min_pass_rate``, ``max_pass_rate``]; lowering ``max_pass_rate`` drops prompts the
   model always solves, which teach little;
5. ``duplicate``: the same completion for the same prompt is kept once;
6. ``per_prompt_cap``: at most ``keep_per_prompt`` samples per prompt.

Each filter's removed count is logged as ``removed/<filter>``, with the pass-rate
histogram over prompts. General (non-reasoning) rows from data/general.py (facts,
instructions, safety refusals, in the same ``<think> … </think> summary`` format) then make
up ``general_share`` of the final mix (paper: ~200k of ~800k), and every row gets ``kind``
``reasoning`` or ``general``. Output: ``artifacts/rejection_sampling/data.jsonl``, checked
against the ``sft_mix`` suite. Departures: the general rows are synthetic, not DeepSeek-V3's
SFT data; there is no generative judge, so only rule-checkable prompts are sampled.

One CPU rank:  r1flow stage rejection_sampling
One GPU:       r1flow stage rejection_sampling   (sampling only, no launcher: the model moves to the GPU)
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import ClassVar

from data.filters import correct, dedupe_exact, keep_if
from data.general import general_sft_rows
from data.loaders import load_rows
from data.quality import write_checked_jsonl
from data.tasks import TrainingData
from infra.config import knob
from infra.stage import stage_dir, stage_main
from model import factory
from model.evaluate import Protocol, sample
from model.factory import ModelArgs
from model.rewards import get_reward

log = logging.getLogger(__name__)
NAME = "rejection_sampling"
FILTERS = ("readable", "correct", "single_language", "pass_rate", "duplicate", "per_prompt_cap")


@dataclass
class SamplingArgs(TrainingData, ModelArgs):
    """What rejection sampling and the distillation traces share: sample a model on train
    prompts (plus optional files) and keep the good completions (:data:`FILTERS`)."""

    OUTPUT: ClassVar[str] = "readable"  # the sampled models were trained after the cold start

    model: str = knob("artifacts/reasoning_rl/model", "Model sampled: the converged reasoning-RL checkpoint.")
    dataset: str = knob("synthetic", "Train prompts sampled (see data/tasks.py).")
    dataset_size: int = knob(512, "Prompts sampled.")
    mix: dict = knob({"arithmetic": 0.75, "countdown": 0.25}, "Family shares when dataset is synthetic.")
    samples_per_prompt: int = knob(4, "N, completions sampled per prompt.")
    temperature: float = knob(0.7, "Sampling temperature: diverse yet mostly on-policy samples.")
    top_p: float = knob(0.95, "Nucleus sampling.")
    max_new_tokens: int = knob(96, "Longest sample in tokens (a cut sample fails the readable filter).")
    batch_size: int = knob(256, "Sequences generated per batch.")
    files: list = knob([], "JSONL files of extra candidates (prompt, completion, answer, source), filtered alike.")
    language: str = knob("en", "The one language the reasoning must be written in.")
    min_pass_rate: float = knob(0.0, "Keep prompts whose pass rate is above this (exclusive).")
    max_pass_rate: float = knob(1.0, "... and at most this; < 1 drops prompts the model always solves.")
    keep_per_prompt: int = knob(2, "Distinct samples kept per prompt at most.")
    seed: int = knob(0, "Seed for prompts and sampling.")

    def __post_init__(self):
        self.check_data()
        self.check_model_args()
        if not 0.0 <= self.min_pass_rate < self.max_pass_rate <= 1.0:
            raise ValueError(f"need 0 <= min_pass_rate < max_pass_rate <= 1, got "
                             f"({self.min_pass_rate}, {self.max_pass_rate}]")
        if min(self.dataset_size, self.samples_per_prompt, self.keep_per_prompt) < 1:
            raise ValueError("dataset_size, samples_per_prompt and keep_per_prompt must be >= 1")
        if not self.model and not self.files:
            raise ValueError("no candidates: set model (to sample) or files (to read)")


@dataclass
class RejectionSamplingConfig(SamplingArgs):
    general_share: float = knob(0.25, "Share of general (non-reasoning) rows in the mix (paper: ~200k of ~800k).")
    unsafe_share: float = knob(0.2, "Share of the general rows that refuse an unsafe request.")

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 <= self.general_share < 1.0:
            raise ValueError(f"general_share must be in [0, 1), got {self.general_share}")


def candidates(cfg) -> tuple[list[dict], int]:
    """Samples of ``cfg.model`` (when set) and the rows of ``cfg.files``, each with its
    ``prompt_id`` (a file row's prompt text); and how many prompts overlapping an evaluation
    set were removed (from the sampled prompts and the files)."""
    rows, removed = sampled(cfg) if cfg.model else ([], 0)
    files = [{**row, "prompt_id": row["prompt"]} for path in cfg.files for row in load_rows(path)]
    files, dropped = cfg.decontaminated(files, where=f"{cfg.files}")
    return rows + files, removed + dropped


def sampled(cfg) -> tuple[list[dict], int]:
    """``samples_per_prompt`` sampled completions per decontaminated train prompt, as rows
    (prompt columns, ``id`` = ``<prompt id>-s<j>``, ``prompt_id``, ``completion``), prompt by
    prompt; and how many prompts were removed as overlapping an evaluation set."""
    prompts, removed = cfg.training_rows(cfg.dataset_size, cfg.seed, "sampled prompts")
    tokenizer, model, _ = factory.load_pinned(cfg.model, cfg.revision)
    model = model.to(factory.inference_device())
    n = cfg.samples_per_prompt
    protocol = Protocol(k=n, temperature=cfg.temperature, top_p=cfg.top_p,
                        max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size, seed=cfg.seed,
                        prompt_format=cfg.prompt_format, output=cfg.OUTPUT)
    texts, _ = sample(model, tokenizer, prompts, n=n, temperature=cfg.temperature, protocol=protocol)
    return [{**prompts[j // n], "id": f"{prompts[j // n]['id']}-s{j % n}", "prompt_id": prompts[j // n]["id"],
             "completion": text} for j, text in enumerate(texts)], removed


def pass_rates(rows: list[dict]) -> dict[str, float]:
    """Per ``prompt_id``: the share of its samples the ``accuracy`` reward scores 1."""
    columns = {k: [r.get(k) for r in rows] for k in {k for r in rows for k in r} - {"completion"}}
    scores = get_reward("accuracy")([r["completion"] for r in rows], **columns)
    hits, totals = Counter(), Counter()
    for row, score in zip(rows, scores):
        totals[row["prompt_id"]] += 1
        hits[row["prompt_id"]] += score == 1.0
    return {key: hits[key] / totals[key] for key in totals}


def _cap(rows: list[dict], k: int) -> tuple[list[dict], int]:
    seen: Counter = Counter()
    kept = []
    for row in rows:
        seen[row["prompt_id"]] += 1
        if seen[row["prompt_id"]] <= k:
            kept.append(row)
    return kept, len(rows) - len(kept)


def select(rows: list[dict], rates: dict[str, float], cfg: SamplingArgs) -> tuple[list[dict], dict]:
    """Apply :data:`FILTERS` in order; returns the kept rows and ``{filter: rows removed}``."""
    language = get_reward("language_consistency")
    steps = {
        "readable": lambda rs: correct(rs, get_reward("readable_format")),
        "correct": lambda rs: correct(rs, get_reward("accuracy")),
        "single_language": lambda rs: correct(
            rs, lambda texts, **cols: language(texts, **{**cols, "language": cfg.language})),
        "pass_rate": lambda rs: keep_if(
            rs, lambda r: cfg.min_pass_rate < rates[r["prompt_id"]] <= cfg.max_pass_rate),
        "duplicate": dedupe_exact,
        "per_prompt_cap": lambda rs: _cap(rs, cfg.keep_per_prompt),
    }
    removed = {}
    for name in FILTERS:
        rows, removed[name] = steps[name](rows)
    return rows, removed


def histogram(rates: dict[str, float], n: int) -> dict[str, float]:
    """Prompts per pass rate ``k/n`` (``pass_rate_hist/<k>``), their mean and the extremes."""
    counts = Counter(round(rate * n) for rate in rates.values())
    return {**{f"pass_rate_hist/{k}of{n}": counts[k] for k in range(n + 1)},
            "pass_rate_mean": sum(rates.values()) / max(1, len(rates)),
            "prompts_never_solved": counts[0], "prompts_always_solved": counts[n]}


def run(cfg: RejectionSamplingConfig) -> dict:
    """Sample, filter, add general rows, check and write the mix; returns counts."""
    out = stage_dir(NAME)
    rows, decontaminated = candidates(cfg)
    rates = pass_rates(rows)
    kept, removed = select(rows, rates, cfg)
    if not kept:
        raise ValueError(f"{NAME}: no sample survived the filters (removed per filter: {removed})")
    reasoning = [{**{k: v for k, v in r.items() if k != "prompt_id"}, "kind": "reasoning"} for r in kept]
    n_general = round(len(reasoning) * cfg.general_share / (1.0 - cfg.general_share))
    general = [{**r, "kind": "general"} for r in
               general_sft_rows(n_general, seed=cfg.seed, unsafe_share=cfg.unsafe_share)] if n_general else []
    write_checked_jsonl(reasoning + general, out / "data.jsonl", "sft_mix", report_dir=out / "quality")
    log.info("%s: kept %d of %d samples (%s), added %d general rows", NAME, len(kept), len(rows), removed,
             len(general))
    return {"prompts": len(rates), "candidates": len(rows), "kept": len(kept), "kept_share": len(kept) / len(rows),
            "general_rows": len(general), "rows": len(reasoning) + len(general), "decontaminated": decontaminated,
            **{f"removed/{name}": count for name, count in removed.items()},
            **histogram(rates, cfg.samples_per_prompt)}


def main(argv: list[str] | None = None) -> dict:
    return stage_main(NAME, RejectionSamplingConfig, run, argv)
