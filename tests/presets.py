"""The small preset: every stage of dvc.yaml at a size that runs in seconds on one CPU thread.

Models this small learn nothing a stage could filter for, so the preset also supplies a few
correct readable candidates (``CANDIDATES``, written by :func:`write_candidates`) to the
stages that keep only good samples; each still samples its model as well.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

CANDIDATES = "candidates.jsonl"
_TINY = {"vocab_size": 300, "hidden_size": 32, "num_layers": 2, "num_heads": 2, "num_kv_heads": 1,
         "intermediate_size": 64}
_SFT = {"max_steps": 2, "batch_size": 8, "micro_batch": 8, "warmup_steps": 1, "checkpoint_every": 0}
_GRPO = {"steps": 8, "prompts_per_step": 4, "num_generations": 4, "micro_batch": 16, "max_completion_length": 12,
         "dataset": "arithmetic", "dataset_size": 64, "checkpoint_every": 2, "sample_every": 4}
_SAMPLE = {"dataset": "arithmetic", "dataset_size": 8, "samples_per_prompt": 2, "max_new_tokens": 12,
           "files": [CANDIDATES]}

SMALL = {
    "base": {"corpus_size": 300, "max_steps": 6, "batch_size": 16, "micro_batch": 8, "warmup_steps": 2,
             "checkpoint_every": 0, **_TINY},
    "r1_zero": _GRPO,
    "cold_start": {**_SAMPLE, "few_shot_size": 4, "eval_sets": ["arithmetic_test", "gsm8k"], "eval_limit": 50},
    "sft_cold": _SFT,
    "reasoning_rl": {**_GRPO, "steps": 2, "checkpoint_every": 0},
    "reasoning_rl_nolang": {},  # reasoning_rl's knobs
    "rejection_sampling": _SAMPLE,
    "sft": _SFT,
    "reward_model": {"pairs": 200, "harmless_rows": 120, "helpful_steps": 2, "harmless_steps": 2,
                     "batch_size": 8, "micro_batch": 8, "checkpoint_every": 0},
    "all_scenario_rl": {**_GRPO, "steps": 4, "general_from": 0.5, "general_size": 8, "checkpoint_every": 0},
    "student": {"corpus_size": 300, "max_steps": 2, "batch_size": 16, "micro_batch": 8, "warmup_steps": 1,
                "checkpoint_every": 0, "vocab_size": 300,
                "sizes": {"s64": {"hidden_size": 16, "num_layers": 1, "num_heads": 2, "num_kv_heads": 1,
                                  "intermediate_size": 32},
                          "s96": {"hidden_size": 24, "num_layers": 2, "num_heads": 2, "num_kv_heads": 1,
                                  "intermediate_size": 48}}},
    "traces": _SAMPLE,
    "distill": _SFT,
    "rl_student": {**_GRPO, "steps": 2, "checkpoint_every": 0},
    # 30 problems a benchmark: the fewest the report pairs models on (model/stats.py MIN_PAIRS).
    "evaluate": {"benchmarks": ["arithmetic_test", "countdown_hard"], "benchmark_seed": 0, "limit": 30, "k": 2,
                 "max_new_tokens": 12},
    "report": {"models": {"base": "artifacts/base/model", "r1_zero": "artifacts/r1_zero/model",
                          "reasoning_rl": "artifacts/reasoning_rl/model",
                          "reasoning_rl_nolang": "artifacts/reasoning_rl_nolang/model",
                          "r1": "artifacts/all_scenario_rl/model",
                          "s64_distill": "artifacts/distill/s64/model", "s64_rl": "artifacts/rl_student/s64/model",
                          "s96_distill": "artifacts/distill/s96/model", "s96_rl": "artifacts/rl_student/s96/model"}},
}


def candidate_rows(n: int = 30) -> list[dict]:
    """Correct, readable, English worked additions of train problems (what a good model writes)."""
    from data.synthetic import Noise, make_rows, solve_arithmetic

    clean = Noise(slip=0.0, forget_carry=0.0, fix=0.0, unformatted=0.0)
    rows = []
    for row in make_rows("arithmetic", "train", n):
        a, b = (int(x) for x in row["prompt"].removeprefix("Compute ").split(" + "))
        reasoning, answer = solve_arithmetic([a, b], random.Random(0), clean)
        rows.append({**row, "completion": f"<think> {reasoning} </think> The answer is \\boxed{{{answer}}}."})
    return rows


def write_candidates(project: Path) -> Path:
    """``project/candidates.jsonl`` for the preset's ``files`` settings."""
    path = Path(project) / CANDIDATES
    path.write_text("".join(json.dumps(r) + "\n" for r in candidate_rows()))
    return path
