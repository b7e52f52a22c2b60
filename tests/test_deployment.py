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
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from presets import SMALL
from servers import (PREFECT_DATABASE_ENV, running_mlflow, running_moto, running_postgres, running_prefect,
                     server_env, start_server, stop_server)
from test_orchestration import TERMINAL, _request, make_project

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "infra" / "compose.yaml"
PREFECT_YAML = ROOT / "infra" / "prefect" / "prefect.yaml"
INIT_SQL = ROOT / "infra" / "postgres" / "init.sql"
ENV_EXAMPLE = ROOT / "infra" / "deploy.env.example"
# The first stage, pretraining (it logs a model, step metrics and DVC outputs like every stage):
# a whole pipeline four times over is too slow for 2 cores (test_orchestration and
# test_full_pipeline run the rest).
STAGES = ["base"]
SEEDS = (11, 12, 13, 14)
SLOTS = len(SEEDS)  # flow runs a worker (here: `r1flow serve --limit`) runs at once
# What a worker needs to reach the servers: compose gives both workers these, serve gets them here.
WORKER_ENV = ("PREFECT_API_URL", "MLFLOW_TRACKING_URI", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
              "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "R1FLOW_DVC_REMOTE")
# sqlite's, PostgreSQL's, DVC's and git's ways of saying that two runs fought over a lock.
LOCK_ERRORS = re.compile(r"database is locked|deadlock|could not obtain lock|lock timeout|LockNotAvailable"
                         r"|Unable to acquire lock|index\.lock", re.IGNORECASE)


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    """PostgreSQL, S3, MLflow and Prefect on 127.0.0.1 and `r1flow serve --limit 4` in a fresh
    project: the compose topology. Yields where each is and its log."""
    folder = tmp_path_factory.mktemp("team")
    (folder / "mlflow").mkdir()
    (folder / "prefect").mkdir()
    # The pool closes (joining its threads) before the stack unwinds: serve, servers, then postgres.
    with contextlib.ExitStack() as stack, ThreadPoolExecutor(3) as pool:
        pg = stack.enter_context(running_postgres())
        pg.execute(INIT_SQL.read_text())
        s3 = stack.enter_context(running_moto(folder))
        # The two servers migrate their databases as they start: side by side, about 10 s sooner.
        started = [pool.submit(stack.enter_context, server) for server in (
            running_mlflow(folder / "mlflow", f"s3://{s3.bucket}/mlflow", s3.endpoint_url, backend=pg.url("mlflow")),
            running_prefect(folder / "prefect", pg.url("prefect", "postgresql+asyncpg")))]
        project = pool.submit(make_project, tmp_path_factory.mktemp("project"), SMALL)
        mlflow, api = (future.result() for future in started)
        project = project.result()
        env = server_env({**s3, "PREFECT_API_URL": api, "MLFLOW_TRACKING_URI": mlflow,
                          "R1FLOW_DVC_REMOTE": f"s3://{s3.bucket}/dvc", "OMP_NUM_THREADS": "1",
                          "PREFECT_HOME": str(folder / "serve_home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})
        assert set(WORKER_ENV) <= set(env)  # what compose gives its workers
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
        body = {"parameters": {"seed": seed, "stages": STAGES}}
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
        assert params["base"]["seed"] == run["parameters"]["seed"]
        lock = yaml.safe_load(_git(project, "show", f"{branch}:dvc.lock"))
        assert set(STAGES) <= set(lock["stages"])
        models.append(lock["stages"]["base"]["outs"][0]["md5"])
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


# The compose file, checked without Docker against the topology above.

def _example_env() -> dict[str, str]:
    lines = [line for line in ENV_EXAMPLE.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def _interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}``, with ``env`` as the .env file."""
    def value(match: re.Match) -> str:
        name, op, arg = match.group(1), match.group(2) or "", match.group(3) or ""
        if name in env:
            return env[name]
        assert op.endswith("-"), f"${{{name}}} is required but infra/deploy.env.example does not set it"
        return arg

    return re.sub(r"\$\{(\w+)(:?[-?])?([^}]*)\}", value, text)


@pytest.fixture(scope="module")
def compose() -> dict:
    """infra/compose.yaml as Compose reads it with infra/deploy.env.example as its .env."""
    return yaml.safe_load(_interpolate(COMPOSE.read_text(), _example_env()))


def _command(service: dict) -> list[str]:
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else command


def _option(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def test_compose_has_the_services_of_the_native_topology(compose):
    services = compose["services"]
    assert set(services) == {"postgres", "minio", "s3-init", "prefect-server", "mlflow", "cpu-worker", "gpu-worker"}
    for name, service in services.items():
        for dependency, how in service.get("depends_on", {}).items():
            assert dependency in services, (name, dependency)
            if how["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], (name, dependency)
    build = services["prefect-server"]["build"]
    dockerfile = (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve()
    assert dockerfile == ROOT / "infra" / "Dockerfile"
    packages = yaml.safe_load("[" + re.search(r"include = \[(.*)\]", (ROOT / "pyproject.toml").read_text())[1] + "]")
    for package in packages:  # the image installs every package of pyproject.toml
        assert f"COPY {package.rstrip('*')} " in dockerfile.read_text(), package


def test_both_servers_use_a_database_that_init_sql_creates(compose):
    services = compose["services"]
    created = set(re.findall(r"CREATE DATABASE (\w+)", INIT_SQL.read_text()))
    assert "./postgres/init.sql:/docker-entrypoint-initdb.d/10-r1flow.sql:ro" in services["postgres"]["volumes"]
    urls = {"postgresql+asyncpg": services["prefect-server"]["environment"][PREFECT_DATABASE_ENV],
            "postgresql+psycopg2": services["mlflow"]["environment"]["MLFLOW_BACKEND_STORE_URI"]}
    used = set()
    for scheme, url in urls.items():  # the drivers the native servers ran with (servers.Postgres.url)
        parts = urlparse(url)
        assert (parts.scheme, parts.hostname, parts.port, parts.username) == (scheme, "postgres", 5432, "r1flow")
        assert parts.password == _example_env()["POSTGRES_PASSWORD"]
        used.add(parts.path.lstrip("/"))
    assert used == created == {"prefect", "mlflow"}


def test_clients_reach_each_server_where_it_listens(compose):
    services = compose["services"]
    prefect, mlflow = _command(services["prefect-server"]), _command(services["mlflow"])
    listen = {"prefect-server": _option(prefect, "--port"), "mlflow": _option(mlflow, "--port"),
              "minio": "9000"}  # MinIO's S3 API port
    for name, port in listen.items():
        assert f"{port}:{port}" in services[name]["ports"], name
    env = services["cpu-worker"]["environment"]
    assert env["PREFECT_API_URL"] == f"http://prefect-server:{listen['prefect-server']}/api"
    assert env["MLFLOW_TRACKING_URI"] == f"http://mlflow:{listen['mlflow']}"
    assert env["AWS_ENDPOINT_URL"] == services["mlflow"]["environment"]["MLFLOW_S3_ENDPOINT_URL"] \
        == f"http://minio:{listen['minio']}"
    # One bucket, as in the native test: s3://<bucket>/mlflow for MLflow, s3://<bucket>/dvc for DVC.
    artifacts = urlparse(services["mlflow"]["environment"]["MLFLOW_ARTIFACTS_DESTINATION"])
    remote = urlparse(env["R1FLOW_DVC_REMOTE"])
    assert (artifacts.scheme, artifacts.netloc, artifacts.path) == ("s3", remote.netloc, "/mlflow")
    assert (remote.scheme, remote.path) == ("s3", "/dvc")
    assert env["AWS_ACCESS_KEY_ID"] == services["minio"]["environment"]["MINIO_ROOT_USER"]
    assert env["AWS_SECRET_ACCESS_KEY"] == services["minio"]["environment"]["MINIO_ROOT_PASSWORD"]


def test_workers_serve_the_work_pools_of_prefect_yaml(compose):
    services = compose["services"]
    pools = {pool["name"] for pool in yaml.safe_load(PREFECT_YAML.read_text())["definitions"]["work_pools"].values()}
    workers = {name: _command(services[name]) for name in ("cpu-worker", "gpu-worker")}
    assert {_option(cmd, "--pool") for cmd in workers.values()} == pools == {"r1flow-cpu", "r1flow-gpu"}
    for name, cmd in workers.items():
        assert cmd[:3] == ["prefect", "worker", "start"] and _option(cmd, "--type") == "process"
        assert set(WORKER_ENV) <= set(services[name]["environment"]), name
        assert services[name]["working_dir"] == "/opt/r1flow" and services[name]["volumes"] == ["..:/opt/r1flow"]
    assert int(_option(workers["cpu-worker"], "--limit")) == SLOTS  # the runs at once tested above
    (devices,) = services["gpu-worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices["driver"] == "nvidia" and "gpu" in devices["capabilities"]
    assert "deploy" not in services["cpu-worker"]
