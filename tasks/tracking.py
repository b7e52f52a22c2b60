"""The parent MLflow run of a pipeline run, and the lineage tags of its stage runs."""

from __future__ import annotations

import json
import logging

from prefect import task

from infra import lineage, tracking
from infra.logs import redact

log = logging.getLogger(__name__)


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
    """Tag each stage run with the DVC md5 of its inputs and outputs and the lineage commit,
    then end the parent run. Returns ``{stage: mlflow run id}`` of the stages that ran."""
    children = {}
    for stage in stages:
        run_id = tracking.find_stage_run(parent_run_id, stage)
        if run_id is None:  # restored from DVC's run cache: nothing ran, nothing to tag
            continue
        tags = lineage.lineage_tags(workspace, stage)
        if commit:
            tags["r1flow.lineage_commit"] = commit
        tracking.set_tags(run_id, tags)
        children[stage] = run_id
    if commit:
        tracking.set_tags(parent_run_id, {"r1flow.lineage_commit": commit})
    tracking.end_run(parent_run_id, "FAILED" if failed else "FINISHED")
    return children
