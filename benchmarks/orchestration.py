"""Orchestration overhead per stage: Prefect task wall time against the stage's own time.

Runs the r1_pipeline flow once in this checkout (a run workspace under .r1flow/), then
reads every task run's wall time from the Prefect API and each stage's own timings from
artifacts/<stage>/run.json, and prints a table:

- task_s     wall time of the Prefect task run (what a user waits for);
- process_s  lifetime of the stage's Python process (imports, config, MLflow logging, work);
- compute_s  time inside the stage's run(cfg) (the work itself);
- overhead_s task_s - compute_s: everything orchestration adds (Prefect, DVC, the process
             start and imports, opening the MLflow run, writing records);
- of which dvc+prefect  task_s - process_s.

    python benchmarks/orchestration.py                  # default params.yaml (minutes)
    python benchmarks/orchestration.py --small          # tiny preset (about a minute)
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

SMALL = {
    "base": {"corpus_size": 300, "max_steps": 6, "batch_size": 16, "micro_batch": 8, "warmup_steps": 2,
             "vocab_size": 300, "hidden_size": 32, "num_layers": 2, "num_heads": 2, "num_kv_heads": 1,
             "intermediate_size": 64},
    "r1_zero": {"steps": 6, "prompts_per_step": 4, "num_generations": 4, "micro_batch": 16, "max_completion_length": 12,
                "dataset": "arithmetic", "dataset_size": 64},
    "evaluate": {"benchmarks": ["arithmetic_test"], "limit": 6, "k": 2, "max_new_tokens": 12},
}


def task_wall_times(flow_run_id: str) -> dict[str, float]:
    """Wall seconds of each task run of the flow run, by task-run name."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {r.name: (r.end_time - r.start_time).total_seconds() for r in runs if r.start_time and r.end_time}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="run the tiny preset instead of params.yaml")
    args = parser.parse_args()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from flows.pipeline import r1_pipeline

    seed = int.from_bytes(os.urandom(2), "little")  # a fresh seed: no stage is restored from DVC's cache
    params = {stage: {**values, "seed": seed} for stage, values in SMALL.items()} if args.small else \
        {stage: {"seed": seed} for stage in SMALL}
    result = r1_pipeline(params=params)
    walls = task_wall_times(result["flow_run_id"])
    rows = []
    for stage in result["metrics"]:
        record = json.loads((Path(result["workspace"]) / "artifacts" / stage / "run.json").read_text())
        task_s, process_s, compute_s = walls[stage], record["process_s"], record["compute_s"]
        rows.append((stage, task_s, process_s, compute_s, task_s - compute_s, task_s - process_s))
    print(f"\nrun {result['run']} ({'small preset' if args.small else 'params.yaml'}), seed {seed}")
    print("| stage | task_s | process_s | compute_s | overhead_s | of which dvc+prefect |")
    print("|---|---:|---:|---:|---:|---:|")
    for stage, *values in rows:
        print(f"| {stage} | " + " | ".join(f"{v:.1f}" for v in values) + " |")
    others = {k: v for k, v in walls.items() if k not in result["metrics"]}
    print("other tasks: " + ", ".join(f"{k} {v:.1f} s" for k, v in sorted(others.items())))


if __name__ == "__main__":
    main()
