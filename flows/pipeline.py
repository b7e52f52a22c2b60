"""Prefect flows: the whole R1 pipeline and a one-stage flow, both thin layers over DVC.

``r1_pipeline`` runs the stage DAG of dvc.yaml (independent branches concurrently) in a
fresh workspace of its own (tasks/workspace.py), under one parent MLflow run, then
commits the run's lineage to ``runs/<flow-run-name>`` and pushes its outputs to the DVC
remote. Its parameters override params.yaml for that run only; left empty, params.yaml
decides.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from infra import launch, schedule, tracking, warm
from infra.config import load_params, load_yaml
from infra.dag import stage_graph
from infra.logs import scrub_log_records
from infra.proc import stopping_commands
from tasks.stages import retries_for, run_stage, stage_env
from tasks.tracking import close_pipeline_run, open_pipeline_run
from tasks.workspace import create_workspace, publish

log = logging.getLogger(__name__)


# Which params.yaml keys each typed flow parameter sets.
GRPO_STAGES = ("r1_zero", "reasoning_rl", "all_scenario_rl", "rl_student")
SAMPLING_STAGES = ("r1_zero", "cold_start", "reasoning_rl", "rejection_sampling", "all_scenario_rl", "traces",
                   "rl_student")
SEEDED_STAGES = ("base", "r1_zero", "cold_start", "sft_cold", "reasoning_rl", "rejection_sampling", "sft",
                 "reward_model", "all_scenario_rl", "student", "traces", "distill", "rl_student", "evaluate")
PARAMETER_KEYS = {
    "base_model": [("base", "model")],
    "pretrain_steps": [("base", "max_steps")],
    "dataset": [(stage, "dataset") for stage in SAMPLING_STAGES],
    "num_generations": [(stage, "num_generations") for stage in GRPO_STAGES],
    "learning_rate": [(stage, "lr") for stage in GRPO_STAGES],
    "rl_steps": [("r1_zero", "steps")],
    "seed": [(stage, "seed") for stage in SEEDED_STAGES],
}


def load_recipe(path: str | Path) -> dict[str, dict]:
    """A recipe: a params overlay ``{stage: {key: value}}`` in YAML (recipes/), applied over
    params.yaml for one run. Keys are checked by each stage's config when it runs.

    Raises:
        ValueError: the file is missing, not a mapping of mappings, or names an unknown stage.
    """

    from flows.cli import STAGES

    path = Path(path)
    if not path.is_file():
        available = sorted(str(p) for p in Path("recipes").glob("*.yaml"))
        raise ValueError(f"recipe {path}: no such file (recipes here: {available})")
    recipe = load_yaml(path.read_text()) or {}
    if not isinstance(recipe, dict) or not all(isinstance(v, dict) for v in recipe.values()):
        raise ValueError(f"recipe {path}: expected `stage: {{key: value}}` sections, like params.yaml")
    unknown = sorted(set(recipe) - set(STAGES))
    if unknown:
        raise ValueError(f"recipe {path}: unknown stage section(s) {unknown}; stages: {list(STAGES)}")
    check_overrides(recipe, where=f"recipe {path}")
    return recipe


def check_overrides(overrides: dict[str, dict], where: str) -> None:
    """Check ``{stage: {key: value}}`` applied over params.yaml key by key, as the run's
    workspace applies it (tasks/workspace.py ``apply_overrides``). Raises ValueError naming
    ``where``, the stage and the key."""
    from flows.cli import STAGES

    unknown = sorted(set(overrides) - set(STAGES))
    if unknown:
        raise ValueError(f"{where}: unknown stage section(s) {unknown}; stages: {list(STAGES)}")
    params = load_params("params.yaml") if Path("params.yaml").is_file() else {}
    merged = {**params, **{stage: {**(params.get(stage) or {}), **values} for stage, values in overrides.items()}}
    check_params(merged, where=where)
    if Path("dvc.yaml").is_file():
        check_param_deps(merged, "dvc.yaml")


def check_param_deps(params: dict[str, dict], dvc_yaml: str | Path) -> None:
    """Every ``params:`` key of ``dvc_yaml``'s stages exists in ``params`` (DVC refuses to run
    a stage whose param is missing, after the stages before it ran).

    Raises:
        ValueError: naming the stage and the missing key.
    """
    stages = (load_yaml(Path(dvc_yaml).read_text()) or {}).get("stages", {})
    for name, spec in stages.items():
        for key in spec.get("do", spec).get("params", []):
            if not isinstance(key, str) or "${" in key:
                continue
            node: Any = params
            for part in key.split("."):
                if not isinstance(node, dict) or part not in node:
                    raise ValueError(f"params.yaml has no {key}, which stage {name} of {dvc_yaml} depends on; "
                                     f"add it (params.yaml in the repository has every key)")
                node = node[part]


def check_params(params: dict[str, dict], where: str = "params") -> None:
    """Build every stage's config from ``params`` (a whole params.yaml), so that an unknown key
    or a bad value fails before a run starts rather than when its stage is reached.

    Raises:
        ValueError: naming ``where``, the stage and the key (the config's own message).
    """
    import importlib

    from flows.cli import STAGES
    from infra.config import ConfigError, build_config, inherited

    for stage, module in STAGES.items():
        cls = _config_class(importlib.import_module(module))
        values = {**inherited(cls, params), **(params.get(stage) or {})}
        try:
            build_config(cls, values, where=f"{where} [{stage}]")
        except (ConfigError, ValueError, TypeError) as err:
            raise ValueError(str(err)) from None


def _config_class(module) -> type:
    """The config dataclass a stage module defines (its ``*Config``)."""
    import dataclasses

    found = [v for k, v in vars(module).items() if k.endswith("Config") and dataclasses.is_dataclass(v)
             and v.__module__ == module.__name__]
    if len(found) != 1:
        raise RuntimeError(f"{module.__name__}: expected one *Config dataclass, found {[c.__name__ for c in found]}")
    return found[0]


def _overrides(**values: Any) -> dict[str, dict]:
    """Flow parameters -> ``{stage: {key: value}}``, skipping those left empty."""
    out: dict[str, dict] = {}
    for name, value in values.items():
        if value is None:
            continue
        for stage, key in PARAMETER_KEYS[name]:
            out.setdefault(stage, {})[key] = value
    return out


def run_dag(workspace: str, parent_run_id: str | None, stages: list[str] | None) -> dict[str, dict]:
    """Run every wanted stage once its upstream stages are done; returns their metrics.

    Each stage is a Prefect task submitted with its upstream stages' futures as ``wait_for``,
    so the flow run's graph is the stage DAG. The run's :class:`infra.schedule.Scheduler`
    lets at most ``$R1FLOW_PARALLEL`` stages (default: the CPU cores) run at once, those
    heading the longest chain first, each with the same fixed number of CPU threads; each task is
    tagged ``r1flow-train``, ``r1flow-sample`` or ``r1flow-cpu``, so Prefect's tag concurrency
    limits can cap a kind of stage across all runs of a server. A stage
    downstream of a failure never starts (Prefect marks it NotReady), nor does any other stage
    after a failure; the running ones finish, then the first error is raised.
    """
    from prefect.futures import wait

    graph = stage_graph(Path(workspace) / "dvc.yaml")
    wanted = [s for s in graph if stages is None or s in stages or s.partition("@")[0] in stages]
    limit = int(os.environ.get("R1FLOW_PARALLEL") or launch.cpu_cores())
    scheduler = schedule.Scheduler(graph, wanted, limit=limit, cores=launch.cpu_cores())
    log.info("stages %s, %d at a time, %d CPU threads each", wanted, scheduler.limit, scheduler.threads)
    uri = tracking.tracking_uri()
    futures = {}
    settings = launch.launch_settings()
    # On a CPU host, stages fork from one warm parent instead of importing torch & co. each.
    parent = (contextlib.nullcontext() if scheduler.gpus.gpu_host else
              warm.warm_parent(stage_env(parent_run_id, uri, scheduler.threads)))
    with schedule.scheduling(workspace, scheduler), parent as warm_socket:
        for stage in wanted:  # topological order: every upstream future exists already
            upstream = [futures[u] for u in graph[stage] if u in futures]
            # Tagged by kind: `prefect concurrency-limit create r1flow-train 1` caps training
            # stages across every run on a shared Prefect server (docs/deploy.md).
            tags = {"r1flow-stage", f"r1flow-{settings.kind(stage)}"}
            futures[stage] = run_stage.with_options(retries=retries_for(stage), tags=tags).submit(
                stage, workspace, parent_run_id, uri, warm_socket=warm_socket, wait_for=upstream)
        wait(list(futures.values()))
    results, errors = {}, []
    for stage, future in futures.items():
        if future.state.is_completed():
            results[stage] = future.result()
        elif future.state.is_failed() or future.state.is_crashed():
            errors.append((stage, future.state))
    if errors:
        first = next((e for e in errors if e[0] == scheduler.failed), errors[0])
        first[1].result()  # raises the stage's own exception
    missing = [s for s in wanted if s not in results]
    if missing:
        raise RuntimeError(f"stages {missing} never ran (an upstream stage did not complete)")
    return results


@flow(name="r1-pipeline")
def r1_pipeline(
    base_model: str | None = None,
    dataset: str | None = None,
    num_generations: int | None = None,
    learning_rate: float | None = None,
    rl_steps: int | None = None,
    pretrain_steps: int | None = None,
    seed: int | None = None,
    recipe: str | None = None,
    params: dict[str, dict] | None = None,
    stages: list[str] | None = None,
) -> dict:
    """The R1 recipe, stage by stage, in a workspace of its own.

    Args:
        base_model: Hugging Face causal LM (hub id or path) to start from; empty = the tiny default.
        dataset: prompt set of every RL and sampling stage (its train split): synthetic, arithmetic,
            countdown, gsm8k, a file, a hub id. Evaluation sets (math500, aime24, humaneval) are refused.
        num_generations: G, completions per prompt in every GRPO stage.
        learning_rate: learning rate of every GRPO stage.
        rl_steps: GRPO steps of r1_zero.
        pretrain_steps: optimizer steps of the tiny base model.
        seed: seed of every stage.
        recipe: a params overlay of the project, e.g. recipes/qwen2.5-0.5b-gsm8k.yaml (a real model
            on GSM8K train); the parameters above and ``params`` win over it.
        params: any other params.yaml values, as {stage: {key: value}}.
        stages: run only these stages (names, or NAME@ITEM for one item of a foreach stage) and
            reuse the others from DVC's cache; empty = all.
    """
    scrub_log_records()  # what Prefect shows in the terminal and the UI
    logger = get_run_logger()
    # The flow-run name plus 8 characters of its id: unique even if two runs share a name.
    run_name = f"{flow_run.name}-{str(flow_run.id)[:8]}" if flow_run.id else "local"
    overrides = load_recipe(recipe) if recipe else {}
    for stage, values in _overrides(base_model=base_model, dataset=dataset, num_generations=num_generations,
                                    learning_rate=learning_rate, rl_steps=rl_steps,
                                    pretrain_steps=pretrain_steps, seed=seed).items():
        overrides.setdefault(stage, {}).update(values)
    for stage, values in (params or {}).items():
        overrides.setdefault(stage, {}).update(values)
    check_overrides(overrides, where="flow parameters")  # fails before a workspace is made
    created = create_workspace(run_name, overrides)
    workspace = created["path"]
    parent = open_pipeline_run(run_name, flow_run.id, flow_run.ui_url, overrides, created["uncommitted"])
    try:
        with stopping_commands():  # a run cancelled in the UI stops its stages' process trees
            metrics = run_dag(workspace, parent, stages)
    except BaseException:
        close_pipeline_run(parent, workspace, list(stage_graph(Path(workspace) / "dvc.yaml")), None, failed=True)
        raise
    commit = publish(workspace, run_name)
    children = close_pipeline_run(parent, workspace, list(metrics), commit)
    logger.info("run %s: workspace %s, lineage runs/%s @ %s", run_name, workspace, run_name, commit[:10])
    return {"run": run_name, "flow_run_id": str(flow_run.id), "workspace": workspace, "branch": f"runs/{run_name}", "commit": commit,
            "mlflow_run_id": parent, "stage_runs": children, "metrics": metrics}


@flow(name="r1-stage")
def stage_flow(stage: str, workspace: str, force: bool = False) -> dict:
    """Run (or re-run) one stage in an existing run workspace.

    Args:
        stage: the stage name (dvc.yaml / params.yaml section).
        workspace: the run's workspace folder (.r1flow/workspaces/<run>).
        force: run even if DVC considers the stage up to date.
    """
    scrub_log_records()
    with stopping_commands():
        return run_stage.with_options(retries=retries_for(stage))(stage, workspace, None, tracking.tracking_uri(),
                                                                  force=force)
