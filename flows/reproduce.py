"""``r1flow reproduce RUN``: re-run one stage from its versioned inputs and compare outputs.

Given the MLflow run id of a stage run, check out the commit that recorded its lineage
(``r1flow.lineage_commit``) into a fresh worktree, pull the outputs of its upstream
stages from the DVC remote, re-run the stage with the CPU threads it ran with
(``r1flow.threads``: its sums depend on them), and compare the content hash of every cached
output with the one dvc.lock recorded. Metrics and plots are measurements
(they include wall times) and are not compared.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from infra import lineage, tracking
from infra.dag import cached_outs, load_stages, stage_graph
from infra.proc import run, stream
from tasks.stages import stage_env
from tasks.workspace import configure_dvc, project_root

log = logging.getLogger(__name__)


def lookup(run_id: str) -> tuple[str, str, int | None]:
    """(stage, lineage commit, CPU threads or None) of a stage run; a clear error when the run
    lacks the first two."""
    tags = tracking.client().get_run(run_id).data.tags
    stage, commit = tags.get("r1flow.stage"), tags.get("r1flow.lineage_commit")
    if not stage or not commit:
        raise SystemExit(f"MLflow run {run_id} has no r1flow.stage / r1flow.lineage_commit tags: "
                         "only stage runs of a finished pipeline run can be reproduced")
    threads = tags.get("r1flow.threads")
    return stage, commit, int(threads) if threads and threads.isdigit() else None


def reproduce(run_id: str, source: str | Path = ".") -> dict[str, dict]:
    """Re-run the stage of ``run_id``; returns ``{output: {expected, actual, match}}``."""
    stage, commit, threads = lookup(run_id)
    root = project_root(source)
    workspace = root / ".r1flow" / "reproduce" / f"{run_id[:12]}-{int(time.time())}"
    workspace.parent.mkdir(parents=True, exist_ok=True)
    lineage.git("worktree", "add", "-q", "--detach", str(workspace), commit, cwd=root)
    configure_dvc(workspace, root)
    expected = lineage.stage_lock(workspace, stage)["outs"]
    upstream = stage_graph(workspace / "dvc.yaml")[stage]
    if upstream:
        run(["dvc", "pull", "-q", *upstream], cwd=workspace)
    env = stage_env(None, tracking.tracking_uri(), threads)  # the run's thread count: the same sums
    env["R1FLOW_REPRODUCES"] = run_id
    stream(["dvc", "repro", "--single-item", "--force", stage], cwd=workspace, env=env, on_line=log.info)
    actual = lineage.stage_lock(workspace, stage)["outs"]
    compared = cached_outs(load_stages(workspace / "dvc.yaml")[stage])
    report = {path: {"expected": expected.get(path), "actual": actual.get(path),
                     "match": expected.get(path) == actual.get(path)} for path in compared}
    log.info("reproduced %s of run %s in %s", stage, run_id, workspace)
    return report
