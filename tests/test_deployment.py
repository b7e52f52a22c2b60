"""The team deployment of infra/compose.yaml, natively, without Docker.

The same topology as the compose file, each server started for real on 127.0.0.1: PostgreSQL
(Debian's binaries, run as an unprivileged user) holding the databases of
infra/postgres/init.sql; a Prefect server on its ``prefect`` database (asyncpg); an MLflow
server on its ``mlflow`` database (psycopg2) with artifacts on an S3 server (moto here, MinIO
in compose), which is also the DVC remote; and the deployments served with four flow-run
slots, as the compose workers run them. Four small pipeline runs are created at once through
the REST call the UI's Run button makes. Each must complete with a lineage of its own (a
``runs/<name>`` branch, an MLflow parent run, a lineage commit), and no log may report a lock
error. Every server and postgres is stopped by pid at the end, pass or fail.

The compose file itself cannot run here (no Docker): the tests at the end check that it
describes this topology (services, databases, ports, the workers' variables, the work pools of
infra/prefect/prefect.yaml).
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from presets import SMALL
from servers import (running_mlflow, running_moto, running_postgres, running_prefect, server_env, start_server,
                     stop_server)
from test_orchestration import _request, make_project

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "infra" / "compose.yaml"
PREFECT_YAML = ROOT / "infra" / "prefect" / "prefect.yaml"
INIT_SQL = ROOT / "infra" / "postgres" / "init.sql"
# A short branch of the DAG: a whole pipeline four times over is too slow for 2 cores.
STAGES = ["base", "r1_zero", "evaluate@base"]
SEEDS = (11, 12, 13, 14)
SLOTS = len(SEEDS)  # flow runs a worker (here: `r1flow serve --limit`) runs at once
# What a worker needs to reach the servers: compose gives both workers these, serve gets them here.
WORKER_ENV = ("PREFECT_API_URL", "MLFLOW_TRACKING_URI", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
              "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "R1FLOW_DVC_REMOTE")
# sqlite's, PostgreSQL's, DVC's and git's ways of saying that two runs fought over a lock.
LOCK_ERRORS = re.compile(r"database is locked|deadlock|could not obtain lock|lock timeout|LockNotAvailable"
                         r"|Unable to acquire lock|index\.lock", re.IGNORECASE)
TERMINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    """PostgreSQL, S3, MLflow and Prefect on 127.0.0.1 and `r1flow serve --limit 4` in a fresh
    project: the compose topology. Yields where each is and its log."""
    folder = tmp_path_factory.mktemp("team")
    with contextlib.ExitStack() as stack:  # unwinds in reverse: serve, servers, then postgres
        pg = stack.enter_context(running_postgres())
        pg.execute(INIT_SQL.read_text())
        s3 = stack.enter_context(running_moto(folder))
        (folder / "mlflow").mkdir()
        mlflow = stack.enter_context(running_mlflow(folder / "mlflow", f"s3://{s3.bucket}/mlflow", s3.endpoint_url,
                                                    backend=pg.url("mlflow")))
        (folder / "prefect").mkdir()
        api = stack.enter_context(running_prefect(folder / "prefect", pg.url("prefect", "postgresql+asyncpg")))
        project = make_project(tmp_path_factory.mktemp("project"), SMALL)
        env = server_env({**s3, "PREFECT_API_URL": api, "MLFLOW_TRACKING_URI": mlflow,
                          "R1FLOW_DVC_REMOTE": f"s3://{s3.bucket}/dvc", "OMP_NUM_THREADS": "1",
                          "PREFECT_HOME": str(folder / "serve_home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})
        url = f"{api}/deployments/name/r1-pipeline/r1-pipeline"
        serve = start_server("r1flow serve", [sys.executable, "-m", "flows.cli", "serve", "--limit", str(SLOTS)],
                             env, project / "serve.log", url, timeout=120)
        stack.callback(stop_server, serve)
        yield {"pg": pg, "s3": s3, "mlflow": mlflow, "api": api, "project": project, "env": env,
               "deployment": _request("GET", url)["id"],
               "logs": [project / "serve.log", folder / "mlflow" / "server.log", folder / "prefect" / "server.log",
                        folder / "moto.log", pg.log]}


@pytest.fixture(scope="module")
def runs(team):
    """Four runs created at once through the deployment API, one seed each; their final flow runs."""
    api, dep = team["api"], team["deployment"]

    def create(seed: int) -> str:
        body = {"parameters": {"seed": seed, "rl_steps": 2, "stages": STAGES}}
        return _request("POST", f"{api}/deployments/{dep}/create_flow_run", body)["id"]

    with ThreadPoolExecutor(len(SEEDS)) as pool:
        ids = list(pool.map(create, SEEDS))
    deadline, states = time.time() + 600, {}
    while time.time() < deadline:
        states = {i: _request("GET", f"{api}/flow_runs/{i}")["state"]["type"] for i in ids}
        if all(s in TERMINAL for s in states.values()):
            break
        time.sleep(2)
    tail = (team["project"] / "serve.log").read_text(errors="replace")[-8000:]
    assert all(s == "COMPLETED" for s in states.values()), f"{states}\n{tail}"
    return [_request("GET", f"{api}/flow_runs/{i}") for i in ids]


def _parent(team, flow_run_id: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(team["mlflow"])
    exps = [e.experiment_id for e in client.search_experiments()]
    (parent,) = client.search_runs(exps, f"tags.`prefect.flow_run_id` = '{flow_run_id}'")
    return parent


def _git(project: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=project, capture_output=True, text=True, check=True).stdout.strip()


def test_four_runs_at_once_each_have_their_own_lineage(team, runs):
    project = team["project"]
    parents = [_parent(team, run["id"]) for run in runs]
    assert all(p.info.status == "FINISHED" for p in parents)
    branches = [p.data.tags["r1flow.branch"] for p in parents]
    commits = [p.data.tags["r1flow.lineage_commit"] for p in parents]
    assert len(set(branches)) == len(set(commits)) == len({p.info.run_id for p in parents}) == len(SEEDS)
    models = []
    for run, branch, commit in zip(runs, branches, commits):
        assert _git(project, "rev-parse", branch) == commit  # the branch ends at the run's lineage commit
        params = yaml.safe_load(_git(project, "show", f"{branch}:params.yaml"))
        assert params["base"]["seed"] == params["r1_zero"]["seed"] == run["parameters"]["seed"]
        lock = yaml.safe_load(_git(project, "show", f"{branch}:dvc.lock"))
        assert set(STAGES) <= set(lock["stages"])
        models.append(lock["stages"]["r1_zero"]["outs"][0]["md5"])
    assert len(set(models)) == len(SEEDS)  # four seeds, four models: nothing shared by accident


def test_no_log_reports_a_lock_error(team, runs):
    found = {}
    for path in team["logs"]:
        hits = [line for line in path.read_text(errors="replace").splitlines() if LOCK_ERRORS.search(line)]
        if hits:
            found[path.name] = hits[:5]
    assert not found, found


def test_both_servers_keep_their_state_in_postgres(team, runs):
    pg, ids = team["pg"], [run["id"] for run in runs]
    quoted = ", ".join(f"'{i}'" for i in ids)
    (completed,), = pg.execute(f"SELECT count(*) FROM flow_run WHERE id IN ({quoted}) AND state_type = 'COMPLETED'",
                               "prefect")
    assert completed == len(ids)
    (parents,), = pg.execute("SELECT count(DISTINCT run_uuid) FROM tags WHERE key = 'prefect.flow_run_id' "
                             f"AND value IN ({quoted})", "mlflow")
    assert parents == len(ids)
