"""The one task that runs a stage: ``dvc repro --single-item NAME`` in a run's workspace.

Prefect adds what DVC does not have (retries, logs in the UI, concurrency, the
parent MLflow run); the stage's command, deps and outs stay in dvc.yaml alone.
A stage whose deps and params are unchanged is restored from DVC's run cache
instead of running again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from prefect import get_run_logger, task
from prefect.states import Cancelled

from infra import schedule, warm
from infra.tracking import PARENT_ENV
from infra.launch import LAUNCH_FILE_ENV, launch_settings
from infra.proc import stream, tool_env



def stage_env(parent_run_id: str | None, tracking_uri: str, threads: int | None = None,
              gpus: list[str] | None = None, warm_socket: str | None = None) -> dict[str, str]:
    """Environment for a stage subprocess: project tools on PATH, the MLflow parent run, its
    CPU threads (``OMP_NUM_THREADS``, fixed for the stage's life: infra/schedule.py), on a
    GPU host the GPU set it may use, and the run's warm parent (infra/warm.py), if any."""
    # The launch file the runner read (absolute), so every stage of the run reads the same one,
    # not the copy committed in the run's workspace.
    extra = {"MLFLOW_TRACKING_URI": tracking_uri, "PYTHONUNBUFFERED": "1", LAUNCH_FILE_ENV: launch_settings().source}
    if gpus:
        extra["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
    if threads:
        extra["OMP_NUM_THREADS"] = str(threads)
    if parent_run_id:
        extra[PARENT_ENV] = parent_run_id
    if warm_socket:
        extra[warm.SOCKET_ENV] = warm_socket
    env = tool_env(extra)
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)  # each stage process sets up its own process group
    return env


@task(task_run_name="{stage}", retry_delay_seconds=5)
def run_stage(stage: str, workspace: str, parent_run_id: str | None, tracking_uri: str,
              force: bool = False, warm_socket: str | None = None) -> dict:
    """Reproduce ``stage`` (``NAME`` or ``NAME@ITEM``) in ``workspace``, streaming its output;
    returns its metrics.json. ``force`` runs it even when DVC considers it up to date. Inside a
    pipeline run it first waits for a slot of the run's scheduler (infra/schedule.py), which
    gives its CPU threads and GPU set; after another stage failed it ends Cancelled, unstarted.
    ``warm_socket``: the run's warm parent (infra/warm.py), which forks the stage's process."""
    logger = get_run_logger()
    # DVC holds its repo lock only around bookkeeping, so stages of one workspace run side by side.
    cmd = ["dvc", "--wait-for-lock", "repro", "--single-item", stage] + (["--force"] if force else [])
    try:
        with schedule.slot(workspace, stage) as (threads, gpus):
            stream(cmd, cwd=workspace, env=stage_env(parent_run_id, tracking_uri, threads, gpus, warm_socket),
                   on_line=logger.info)
    except schedule.NotStarted as why:  # shown as Cancelled in the UI, not as a failure of its own
        return Cancelled(message=str(why))
    metrics_path = Path(workspace) / "artifacts" / stage.replace("@", "/") / "metrics.json"
    return json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}


def retries_for(stage: str) -> int:
    """Training stages retry (and resume); the others fail fast."""
    retries = int(os.environ.get("R1FLOW_STAGE_RETRIES", "1"))
    return retries if launch_settings().kind(stage) == "train" else 0
