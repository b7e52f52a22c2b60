"""The parent MLflow run of a pipeline run, the lineage tags of its stage runs and models,
and the registered versions of the models it ships.

Which models are registered: the evaluated models (``report.models`` in params.yaml, their
key is the registered name) written by the stages in :data:`REGISTERED_STAGES`, i.e. R1 (``r1``,
stage ``all_scenario_rl``) and the students (``s64_distill``, ``s64_rl``, ... from ``distill``
and ``rl_student``): what the paper releases. The base, R1-Zero, the intermediate RL model and
the reward models are logged models of their stage runs, not registry entries.

A stage restored from DVC's cache ran no MLflow run this time; its model is registered from
the model an earlier pipeline run logged from the same folder with the same DVC md5 (tag
``dvc.md5``), and skipped (with a log line) when there is none. Identical weights never make
a second version: a version whose ``dvc.md5`` matches is kept as it is.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import yaml
from prefect import task

from infra import lineage, tracking
from infra.logs import redact

log = logging.getLogger(__name__)

REGISTERED_STAGES = ("all_scenario_rl", "distill", "rl_student")


@task(task_run_name="mlflow-open")
def open_pipeline_run(run_name: str, flow_run_id: str | None, ui_url: str | None, overrides: dict,
                      uncommitted: list[str] | None = None) -> str:
    """Start the parent run every stage run of this pipeline run nests under. ``uncommitted``:
    files the launching checkout had changed (snapshotted on the run's branch): the run is
    tagged ``git.dirty`` true and ``r1flow.uncommitted`` names them."""
    tags = {"r1flow.run": run_name, "r1flow.branch": f"runs/{run_name}",
            "git.dirty": str(bool(uncommitted)).lower()}
    if uncommitted:
        tags["r1flow.uncommitted"] = ", ".join(uncommitted)[:5000]
    if flow_run_id:
        tags["prefect.flow_run_id"] = str(flow_run_id)
    if ui_url:
        tags["prefect.flow_run_url"] = ui_url
    if overrides:
        tags["r1flow.overrides"] = json.dumps(redact(overrides), sort_keys=True)  # keys masked too
    return tracking.start_pipeline_run(run_name, tags=tags)


@task(task_run_name="mlflow-close")
def close_pipeline_run(parent_run_id: str, workspace: str, stages: list[str], commit: str | None,
                       failed: bool = False) -> dict[str, str]:
    """Tag each stage run and each model it logged with the DVC md5s and the lineage commit,
    register the shipped models (module doc; only for a finished run with a commit), then end
    the parent run. Returns ``{stage: mlflow run id}`` of the stages that ran."""
    children, models = {}, {}
    ok = False
    try:
        for stage in stages:
            run_id = tracking.find_stage_run(parent_run_id, stage)
            if run_id is None:  # restored from DVC's run cache: nothing ran, nothing to tag
                continue
            tags = lineage.lineage_tags(workspace, stage)
            if commit:
                tags["r1flow.lineage_commit"] = commit
            tracking.set_tags(run_id, tags)
            children[stage] = run_id
            models.update(_tag_models(workspace, stage, run_id, commit))
        if commit:
            tracking.set_tags(parent_run_id, {"r1flow.lineage_commit": commit})
            if not failed:
                versions = register_models(workspace, stages, models, commit)
                tracking.set_tags(parent_run_id, {"r1flow.registered": json.dumps(versions, sort_keys=True)})
        ok = True
    finally:
        tracking.end_run(parent_run_id, "FINISHED" if ok and not failed else "FAILED")
    return children


def _tag_models(workspace: str, stage: str, run_id: str, commit: str | None) -> dict[str, str]:
    """Tag the models run ``run_id`` logged with their folder's DVC md5 (and ``commit``);
    returns ``{dvc.path: model id}``."""
    outs = lineage.stage_lock(workspace, stage)["outs"]
    found = tracking.stage_models(run_id)
    for path, model_id in found.items():
        tags = {"dvc.md5": outs[path]} if outs.get(path) else {}
        if commit:
            tags["r1flow.lineage_commit"] = commit
        if tags:
            tracking.tag_model(model_id, tags)
    return found


def register_models(workspace: str, stages: list[str], logged: dict[str, str], commit: str) -> dict[str, str]:
    """Register each shipped model (module doc) as a version of the registered model named
    by its ``report.models`` key, tagged with ``commit`` and its DVC md5; ``logged`` is
    ``{dvc.path: model id}`` of this run's models. Returns ``{name: version}``."""
    params = yaml.safe_load((Path(workspace) / "params.yaml").read_text()) or {}
    wanted = (params.get("report") or {}).get("models", {})
    outs = {path: (stage, md5) for stage in stages if stage.partition("@")[0] in REGISTERED_STAGES
            for path, md5 in lineage.stage_lock(workspace, stage)["outs"].items()}
    versions = {}
    for name, path in sorted(wanted.items()):
        if path not in outs:
            continue
        stage, md5 = outs[path]
        model_id = logged.get(path) or tracking.find_model(path, md5)
        if model_id is None:
            log.info("model %s (%s, restored from DVC's cache) has no logged MLflow model; not registered",
                     name, path)
            continue
        versions[name] = tracking.register_model(name, model_id, {
            "r1flow.lineage_commit": commit, "dvc.md5": md5, "dvc.path": path, "r1flow.stage": stage})
    return versions
