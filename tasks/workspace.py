"""Run workspaces: one git worktree per pipeline run, sharing the project's DVC cache.

Two runs started at once from the Prefect UI each get their own worktree under
``.r1flow/workspaces/<run>`` on branch ``runs/<run>``, so they never write the same
file; content-addressed outputs land in the one shared DVC cache. The branch holds the
code and params the run used (uncommitted changes of the launching checkout and the run's
overrides as commits of their own); at the end dvc.lock is committed on it and the
outputs are pushed to the DVC remote.

The DVC remote is, in order: ``$R1FLOW_DVC_REMOTE`` (any DVC URL, e.g.
``s3://bucket/prefix``; S3 endpoints come from ``$AWS_ENDPOINT_URL_S3`` or
``$AWS_ENDPOINT_URL``, credentials from the standard AWS variables), the default
remote configured in the repository (``dvc remote add -d``), or the local folder
``.dvc-storage`` in the project.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import yaml
from prefect import task

from infra import s3
from infra.config import load_yaml
from infra.lineage import git
from infra.proc import CommandError, run

log = logging.getLogger(__name__)

REMOTE_ENV = "R1FLOW_DVC_REMOTE"
REMOTE_NAME = "r1flow"


def project_root(start: str | Path = ".") -> Path:
    """The top of the git checkout that holds dvc.yaml."""
    return Path(git("rev-parse", "--show-toplevel", cwd=start))


def remote_url(root: Path) -> str | None:
    """The remote to configure for a workspace, or None to keep the repository's default."""
    if os.environ.get(REMOTE_ENV):
        return os.environ[REMOTE_ENV]
    try:
        if run(["dvc", "remote", "default"], cwd=root).strip():
            return None
    except CommandError:
        pass
    return str(root / ".dvc-storage")


def configure_dvc(workspace: Path, root: Path) -> None:
    """Share the project's DVC cache and set this workspace's remote (config.local only)."""
    run(["dvc", "cache", "dir", "--local", str(root / ".dvc" / "cache")], cwd=workspace)
    url = remote_url(root)
    if url is None:
        return
    run(["dvc", "remote", "add", "--local", "--default", "--force", REMOTE_NAME, url], cwd=workspace)
    if url.startswith("s3://"):
        s3.ensure_bucket(url)
        if s3.endpoint_url():
            run(["dvc", "remote", "modify", "--local", REMOTE_NAME, "endpointurl", s3.endpoint_url()],
                cwd=workspace)


def apply_overrides(params_path: Path, overrides: dict[str, dict]) -> None:
    """Merge ``{stage: {key: value}}`` into params.yaml (this run's copy only)."""
    params = load_yaml(params_path.read_text()) or {}
    for stage, values in overrides.items():
        params.setdefault(stage, {}).update(values)
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))


@task(task_run_name="workspace")
def create_workspace(run_name: str, overrides: dict[str, dict], source: str = ".") -> dict:
    """A fresh worktree on branch ``runs/<run_name>``; returns ``{"path": folder,
    "uncommitted": [files]}``.

    The branch starts at the launching checkout's HEAD. Changes to tracked files not yet
    committed there (an edited params.yaml, a patched module) are snapshotted into one commit
    on the run's branch, so the run uses exactly what the checkout holds and its lineage can
    be checked out again; ``uncommitted`` names them (the pipeline tags its MLflow run dirty).
    Untracked files are not part of a run. The run's overrides are committed next, so every
    stage runs on a clean commit.
    """
    root = project_root(source)
    workspace = root / ".r1flow" / "workspaces" / run_name
    if workspace.exists():
        raise FileExistsError(f"workspace {workspace} already exists: run names must be unique")
    workspace.parent.mkdir(parents=True, exist_ok=True)
    git("worktree", "add", "-q", "-b", f"runs/{run_name}", str(workspace), "HEAD", cwd=root)
    uncommitted = git("diff", "HEAD", "--name-only", cwd=source).split()
    if uncommitted:
        patch = run(["git", "diff", "HEAD", "--binary"], cwd=source)
        run(["git", "apply", "--whitespace=nowarn", "-"], cwd=workspace, input=patch)
        git("add", "-A", cwd=workspace)
        git("commit", "-q", "-m", f"r1flow run {run_name}: uncommitted changes of the launching checkout", cwd=workspace)
        log.warning("run %s includes uncommitted changes to %s (snapshotted on runs/%s)", run_name,
                    ", ".join(uncommitted), run_name)
    if overrides:
        apply_overrides(workspace / "params.yaml", overrides)
        git("commit", "-q", "-m", f"r1flow run {run_name}: parameter overrides", "params.yaml", cwd=workspace)
    configure_dvc(workspace, root)
    log.info("run %s works in %s", run_name, workspace)
    return {"path": str(workspace), "uncommitted": uncommitted}


@task(task_run_name="publish", retries=2, retry_delay_seconds=5)
def publish(workspace: str, run_name: str) -> str:
    """Commit dvc.lock on ``runs/<run_name>`` and push outputs; returns the commit."""
    git("add", "dvc.lock", cwd=workspace)
    git("commit", "-q", "--allow-empty", "-m", f"r1flow run {run_name}: dvc.lock", cwd=workspace)
    # Not -q: it silences the error lines too ("failed to transfer '<md5>' - Could not connect
    # to the endpoint URL: ..."), which are all a CommandError would have to say. A dead S3
    # endpoint fails the push in about 15 s (botocore's 5 attempts; tests/test_s3_faults.py).
    run(["dvc", "push"], cwd=workspace)
    commit = git("rev-parse", "HEAD", cwd=workspace)
    log.info("run %s published as %s on runs/%s", run_name, commit[:10], run_name)
    return commit
