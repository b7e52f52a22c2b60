"""Stage ``traces``: the final R1 model writes the reasoning traces students are distilled on (paper 2.4).

This is the rejection sampling of 2.3.3 (model/stages/rejection_sampling.py, whose
candidates and filters it reuses) applied to the final model instead of the reasoning-RL
checkpoint: the teacher (``all_scenario_rl``) samples k completions per training prompt at
temperature 0.7, and a trace is kept when it is in the readable format
(``readable_format`` is 1: ``<think> … </think> The answer is \\boxed{…}.``), correct (the
shared ``accuracy`` reward is 1) and in one language (``language_consistency`` is 1 for the
target language); exact duplicates are dropped and at most ``keep_per_prompt`` distinct
traces are kept per prompt, so that easy prompts do not crowd out hard ones. The kept rows
pass the ``traces`` Great Expectations suite before they are written to
``artifacts/traces/traces.jsonl``. Traces do not depend on the student, so they are
generated once here and every ``distill@<student>`` reads the same file.

Departures from the paper: DeepSeek-R1 curated ~800k samples (600k reasoning, 200k
general, the rejection-sampling mix of 2.3.3); here only reasoning prompts of the synthetic
tasks are used, a few thousand traces. JSONL files of released traces can be added with
``files`` (they pass the same filters).

One CPU rank:  r1flow stage traces
GPU:           r1flow stage traces   (sampling only: one GPU, no DeepSpeed launcher needed)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from data.quality import write_checked_jsonl
from infra.config import knob
from infra.stage import stage_dir, stage_main
from model.stages import rejection_sampling

log = logging.getLogger(__name__)
NAME = "traces"


@dataclass
class TracesConfig(rejection_sampling.SamplingArgs):
    model: str = knob("artifacts/all_scenario_rl/model", "Teacher: the final R1 model; empty = files only.")
    dataset_size: int = knob(600, "Prompts sampled (x 4 samples: ~13 s for a base-sized teacher on one CPU thread).")
    top_p: float = knob(1.0, "Nucleus sampling (1 = off: the temperature alone sets the diversity).")


def run(cfg: TracesConfig) -> dict:
    """Sample, filter and check the traces; returns counts per filter and the coverage."""
    out = stage_dir(NAME)
    rows, decontaminated = rejection_sampling.candidates(cfg)
    rates = rejection_sampling.pass_rates(rows)
    kept, removed = rejection_sampling.select(rows, rates, cfg)
    if not kept:
        raise ValueError(f"{NAME}: no candidate survived the filters (removed per filter: {removed}); "
                         f"does {cfg.model or 'the teacher'} write the readable format?")
    traces = [{k: v for k, v in row.items() if k != "prompt_id"} for row in kept]
    write_checked_jsonl(traces, out / "traces.jsonl", "traces", report_dir=out / "quality")
    log.info("%s: kept %d of %d candidates (removed %s)", NAME, len(kept), len(rows), removed)
    return {"candidates": len(rows), "kept": len(kept), "kept_share": len(kept) / len(rows),
            "prompts_covered": len({r["prompt_id"] for r in kept}) / len(rates), "decontaminated": decontaminated,
            **{f"removed/{name}": count for name, count in removed.items()},
            **rejection_sampling.histogram(rates, cfg.samples_per_prompt)}


def main(argv: list[str] | None = None) -> dict:
    return stage_main(NAME, TracesConfig, run, argv)
