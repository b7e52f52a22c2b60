"""Prefect flows: the whole R1 pipeline and a one-stage flow, both thin layers over DVC.

``r1_pipeline`` runs the stage DAG of dvc.yaml (independent branches concurrently) in a
fresh workspace of its own (tasks/workspace.py), under one parent MLflow run, then
commits the run's lineage to ``runs/<flow-run-name>`` and pushes its outputs to the DVC
remote. Its parameters override params.yaml for that run only; left empty, params.yaml
decides.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from infra import launch, tracking
from infra.config import load_params, load_yaml
from infra.dag import stage_graph
from infra.logs import scrub_log_records
from tasks.stages import run_stage, retries_for
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


def heights(graph: dict[str, list[str]]) -> dict[str, int]:
    """Stages on the longest chain from each stage to the end of the DAG, itself included:
    the higher, the sooner a stage should start (``graph`` in topological order)."""
    below = {s: [t for t, ups in graph.items() if s in ups] for s in graph}
    height: dict[str, int] = {}
    for stage in reversed(list(graph)):
        height[stage] = 1 + max((height[t] for t in below[stage]), default=0)
    return height


def allot(running: list[str], cores: int) -> dict[str, int]:
    """Threads per running stage (``running`` in priority order): an equal share of the cores,
    the remainder to the first ones, at least one each."""
    share, extra = divmod(cores, max(1, len(running)))
    return {stage: max(1, share + (i < extra)) for i, stage in enumerate(running)}


def _write_allotment(folder: Path, threads: dict[str, int]) -> None:
    for stage, n in threads.items():
        tmp = folder / f".{stage}.tmp"
        tmp.write_text(f"{n}\n")
        os.replace(tmp, folder / stage)  # a stage reads either the old number or the new one


def run_dag(workspace: str, parent_run_id: str, stages: list[str] | None) -> dict[str, dict]:
    """Run every wanted stage once its upstream stages are done; returns their metrics.

    At most ``$R1FLOW_PARALLEL`` stages (default: the CPU cores) run at once; among the ready
    ones, those heading the longest chain of stages start first. The cores are re-divided
    whenever a stage starts or ends (``allot``; each stage follows its share through
    ``$R1FLOW_THREADS_FILE``), so a stage left alone uses every core. After a failure no new
    stage starts; the running ones finish, then the first error is raised.
    """
    graph = stage_graph(Path(workspace) / "dvc.yaml")
    wanted = [s for s in graph if stages is None or s in stages or s.partition("@")[0] in stages]
    folder = Path(tempfile.mkdtemp(prefix="r1flow-threads-"))
    try:
        return _run(graph, wanted, workspace, parent_run_id, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _run(graph: dict[str, list[str]], wanted: list[str], workspace: str, parent_run_id: str,
         folder: Path) -> dict[str, dict]:
    from prefect.futures import wait

    height = heights(graph)
    cores = launch.cpu_cores()
    limit = max(1, int(os.environ.get("R1FLOW_PARALLEL", cores)))
    uri = tracking.tracking_uri()
    gpus = GpuSets(launch.launch_settings())
    pending, running, results, errors = list(wanted), {}, {}, []
    while running or (pending and not errors):
        ready = sorted((s for s in pending if all(u in results or u not in wanted for u in graph[s])),
                       key=lambda s: -height[s])
        starting = [] if errors else gpus.admit(ready, max(0, limit - len(running)))
        if starting:
            order = sorted([*running, *starting], key=lambda s: -height[s])
            _write_allotment(folder, allot(order, cores))
            for stage in starting:
                pending.remove(stage)
                running[stage] = run_stage.with_options(retries=retries_for(stage)).submit(
                    stage, workspace, parent_run_id, uri, threads_file=str(folder / stage), gpus=gpus.held.get(stage))
        if not running:
            raise RuntimeError(f"stages {pending} wait for stages that never ran")
        finished = wait(list(running.values()), timeout=1.0).done
        ended = [s for s, f in running.items() if f in finished]
        for stage in ended:
            gpus.release(stage)
            try:
                results[stage] = running.pop(stage).result()
            except Exception as err:  # noqa: BLE001 - re-raised once the running stages end
                errors.append(err)
        if ended and running:
            _write_allotment(folder, allot(sorted(running, key=lambda s: -height[s]), cores))
    if errors:
        raise errors[0]
    return {stage: results[stage] for stage in wanted}


class GpuSets:
    """Hands out the host's GPU sets (``infra.launch.gpu_sets``): a training or sampling stage
    starts only when a set is free and holds it until it ends, so GPU stages run one at a time
    per set while CPU-only stages start beside them. With a hostfile and no local GPUs, the
    nodes are one set. On a host without GPUs every stage is a CPU stage and nothing waits
    here."""

    def __init__(self, settings: launch.LaunchSettings, gpus: list[str] | None = None):
        self.settings = settings
        # A hostfile job spans the nodes: one training stage on them at a time.
        self.free = launch.gpu_sets(settings, gpus) or ([[]] if settings.hostfile else [])
        self.held: dict[str, list[str]] = {}
        self.gpu_host = bool(self.free)

    def admit(self, ready: list[str], slots: int) -> list[str]:
        """The stages of ``ready`` (in priority order) that start now, at most ``slots``; each
        GPU stage among them takes a free set."""
        starting = []
        for stage in ready:
            if len(starting) == slots:
                break
            if self._needs_gpu(stage):
                if not self.free:
                    continue
                self.held[stage] = self.free.pop(0)
            starting.append(stage)
        return starting

    def release(self, stage: str) -> None:
        """Give back the set ``stage`` held, if any."""
        if stage in self.held:
            self.free.append(self.held.pop(stage))

    def _needs_gpu(self, stage: str) -> bool:
        return self.gpu_host and self.settings.kind(stage) != "cpu"


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
    workspace = create_workspace(run_name, overrides)
    parent = open_pipeline_run(run_name, flow_run.id, flow_run.ui_url, overrides)
    try:
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
    return run_stage.with_options(retries=retries_for(stage))(stage, workspace, None, tracking.tracking_uri(),
                                                              force=force)
