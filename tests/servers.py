"""Real servers on 127.0.0.1 for tests: a moto S3 server, an MLflow tracking server, a Prefect
server and PostgreSQL (Debian's binaries; the database of the team deployment, docs/deploy.md).

Import the fixtures into a test module (pytest puts tests/ on sys.path)::

    from servers import moto_s3, mlflow_server  # noqa: F401  (pytest fixtures)

Both are session-scoped subprocesses in their own process groups, so nothing they start
outlives the session and moto's state is not shared with any in-process ``mock_aws``.
A module that needs servers of its own (say, to cut the way to them) starts them with
:func:`running_moto`, :func:`running_mlflow`, :func:`running_prefect` and :func:`running_postgres`.
Nothing listens or connects anywhere but 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

import pytest

from infra.launch import free_port

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
# Inherited variables that would point a server at something other than what we give it.
_SCRUB_PREFIXES = ("AWS_", "MLFLOW_", "BOTO_")
# The Prefect server's database setting (PREFECT_API_DATABASE_CONNECTION_URL is its older alias).
PREFECT_DATABASE_ENV = "PREFECT_SERVER_DATABASE_CONNECTION_URL"
STARTUP_S: dict[str, float] = {}  # measured start-up time per server, for reports


class S3Env(dict):
    """Environment variables that point an S3 client at the moto server (pass them to a
    subprocess or ``monkeypatch.setenv``), with ``.bucket`` (created, empty at start) and
    ``.endpoint_url``."""

    def __init__(self, endpoint_url: str, bucket: str):
        super().__init__(AWS_ENDPOINT_URL=endpoint_url, **FAKE_CREDENTIALS)
        self.endpoint_url = endpoint_url
        self.bucket = bucket

    def client(self):
        """A boto3 S3 client on the moto server."""
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url,
                            aws_access_key_id=self["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=self["AWS_SECRET_ACCESS_KEY"],
                            region_name=self["AWS_DEFAULT_REGION"])


def server_env(extra: dict[str, str]) -> dict[str, str]:
    """This process's environment without AWS/MLflow settings, plus ``extra``; loopback only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB_PREFIXES)}
    env.update(NO_PROXY=f"{HOST},localhost", no_proxy=f"{HOST},localhost",
               AWS_EC2_METADATA_DISABLED="true", PYTHONUNBUFFERED="1", **extra)
    return env


def _http_status(url: str) -> int | None:
    """HTTP status of GET ``url`` (no proxies), or None when nothing answers."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code
    except (urllib.error.URLError, OSError):
        return None


def start_server(name: str, cmd: list[str], env: dict, log_path: Path, ready_url: str,
                 timeout: float, ok=lambda status: status == 200,
                 ready: Callable[[], bool] | None = None, **popen) -> subprocess.Popen:
    """Start ``cmd`` in its own process group, logging to ``log_path``, and wait until
    ``ready_url`` answers ``ok`` (or, for a server that speaks no HTTP, until ``ready()``);
    fails the test with the server's log otherwise. ``popen``: more Popen arguments (``user``)."""
    started = time.monotonic()
    is_ready = ready or (lambda: (status := _http_status(ready_url)) is not None and ok(status))
    with log_path.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=popen.pop("cwd", log_path.parent),
                                start_new_session=True, **popen)
    while time.monotonic() - started < timeout:
        if is_ready():
            STARTUP_S[name] = round(time.monotonic() - started, 1)
            log.info("%s ready in %.1f s at %s", name, STARTUP_S[name], ready_url)
            return proc
        if proc.poll() is not None:
            break
        time.sleep(0.25)
    stop_server(proc)
    tail = log_path.read_text(errors="replace")[-6000:]
    pytest.fail(f"{name} not ready after {time.monotonic() - started:.0f} s "
                f"(exit code {proc.returncode}); log {log_path}:\n{tail}", pytrace=False)


def stop_server(proc: subprocess.Popen, grace_s: float = 10.0, sig: int = signal.SIGTERM) -> None:
    """Send ``sig`` to the server's whole process group, SIGKILL whatever is left after ``grace_s``."""
    pgid = proc.pid  # start_new_session: the group id is the leader's pid
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        proc.poll()
        try:
            os.killpg(pgid, 0)  # anyone left in the group?
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        log.warning("server group %d still alive after %.0f s: SIGKILL", pgid, grace_s)
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=10)


@contextlib.contextmanager
def running_moto(folder: Path) -> Iterator[S3Env]:
    """A moto S3 server on 127.0.0.1 (its log in ``folder``) with one new, empty bucket."""
    port = free_port()
    endpoint = f"http://{HOST}:{port}"
    proc = start_server("moto", [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)],
                        server_env({}), folder / "moto.log", f"{endpoint}/moto-api/data.json", timeout=60)
    try:
        s3 = S3Env(endpoint, f"r1flow-test-{uuid.uuid4().hex[:8]}")
        s3.client().create_bucket(Bucket=s3.bucket)
        yield s3
    finally:
        stop_server(proc)


@contextlib.contextmanager
def running_mlflow(folder: Path, artifacts: str | None = None, s3_endpoint: str | None = None,
                   extra_env: dict[str, str] | None = None, backend: str | None = None) -> Iterator[str]:
    """``mlflow server`` on 127.0.0.1 (log in ``folder``): yields its tracking URI. It proxies
    artifacts to ``artifacts`` (``s3://bucket/prefix``) on ``s3_endpoint`` when given, and its
    backend store is ``backend`` (``postgresql+psycopg2://...``, or an existing run's
    ``sqlite:///...`` to browse it), else a sqlite file in ``folder``."""
    port = free_port()
    cmd = [sys.executable, "-m", "mlflow", "server",
           "--backend-store-uri", backend or f"sqlite:///{folder / 'mlflow.db'}",
           *(["--artifacts-destination", artifacts] if artifacts else []),
           "--host", HOST, "--port", str(port), "--workers", "1"]
    # No job runner: its huey consumers (about ten processes) serve MLflow's GenAI jobs, which
    # r1flow does not use, and cost each server start seconds of CPU.
    s3 = {**FAKE_CREDENTIALS, "MLFLOW_S3_ENDPOINT_URL": s3_endpoint} if s3_endpoint else {}
    env = server_env({**s3, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **(extra_env or {})})
    uri = f"http://{HOST}:{port}"
    proc = start_server("mlflow", cmd, env, folder / "server.log", f"{uri}/health", timeout=90)
    try:
        yield uri
    finally:
        stop_server(proc)


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory):
    """A moto S3 server on 127.0.0.1 with one bucket: yields an :class:`S3Env`."""
    with running_moto(tmp_path_factory.mktemp("moto")) as s3:
        yield s3


@pytest.fixture(scope="session")
def mlflow_server(moto_s3, tmp_path_factory):
    """``mlflow server`` (sqlite backend, artifacts proxied to ``s3://<bucket>/mlflow`` on
    moto) on 127.0.0.1: yields its tracking URI. Clients need no AWS credentials."""
    with running_mlflow(tmp_path_factory.mktemp("mlflow_server"), f"s3://{moto_s3.bucket}/mlflow",
                        moto_s3.endpoint_url) as uri:
        yield uri


@contextlib.contextmanager
def running_prefect(home: Path, database: str | None = None) -> Iterator[str]:
    """``prefect server start`` (UI included) on 127.0.0.1 with ``home`` as PREFECT_HOME (its log
    there): yields its API URL. Its database is ``database`` (``postgresql+asyncpg://...``), else
    Prefect's default, a sqlite file in ``home``."""
    port = free_port()
    extra = {PREFECT_DATABASE_ENV: database} if database else {}
    api = f"http://{HOST}:{port}/api"
    # The UI's pages call the API at PREFECT_SERVER_UI_API_URL (default: port 4200).
    env = server_env({"PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                      "PREFECT_API_URL": "", "PREFECT_SERVER_UI_API_URL": api, **extra})
    cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", HOST, "--port", str(port)]
    proc = start_server("prefect", cmd, env, home / "server.log", f"{api}/health", timeout=120)
    try:
        yield api
    finally:
        stop_server(proc)


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """``prefect server start`` (UI included, sqlite) on 127.0.0.1 with its own PREFECT_HOME:
    yields its API URL."""
    with running_prefect(tmp_path_factory.mktemp("prefect_home")) as api:
        yield api


class Postgres(NamedTuple):
    """A running PostgreSQL server: superuser ``user`` (no password, loopback only)."""

    host: str
    port: int
    user: str
    log: Path

    def url(self, database: str, scheme: str = "postgresql+psycopg2") -> str:
        """SQLAlchemy URL of ``database``: ``postgresql+psycopg2`` (MLflow) or
        ``postgresql+asyncpg`` (Prefect). Name the driver: SQLAlchemy 2.1's plain
        ``postgresql://`` means psycopg 3, which MLflow's job lock manager does not support."""
        return f"{scheme}://{self.user}@{self.host}:{self.port}/{database}"

    def execute(self, sql: str, database: str = "postgres") -> list[tuple]:
        """Run each ``;``-separated statement of ``sql`` outside a transaction (CREATE DATABASE
        needs that, as psql does it); the rows of the last one."""
        import psycopg2

        conn = psycopg2.connect(host=self.host, port=self.port, user=self.user, dbname=database)
        try:
            conn.autocommit = True
            rows: list[tuple] = []
            with conn.cursor() as cur:
                for statement in filter(str.strip, _sql_statements(sql)):
                    cur.execute(statement)
                    rows = cur.fetchall() if cur.description else []
            return rows
        finally:
            conn.close()


def _sql_statements(sql: str) -> list[str]:
    """``sql`` split at ``;``, ``--`` comments dropped (enough for plain DDL files)."""
    lines = [line.split("--", 1)[0] for line in sql.splitlines()]
    return "\n".join(lines).split(";")


def postgres_bin() -> Path:
    """The folder of Debian's PostgreSQL binaries (the newest major). Missing: installed with
    apt-get under CI=true, else the calling test is skipped."""
    def found() -> list[Path]:
        return sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parts[-3]))

    if not found() and os.environ.get("CI") == "true":
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "postgresql"], check=True, env=env)
    if not found():
        pytest.skip("PostgreSQL is not installed: `apt-get install postgresql` "
                    "(under CI=true the test installs it)")
    return found()[-1].parent


def _unprivileged_user() -> dict:
    """Popen arguments that drop root (postgres refuses to run as root): Debian's ``postgres``
    user, else ``nobody``; nothing when not root."""
    if os.geteuid() != 0:
        return {}
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
    pytest.skip("running as root and neither a `postgres` nor a `nobody` user exists")


@contextlib.contextmanager
def running_postgres() -> Iterator[Postgres]:
    """A throwaway PostgreSQL cluster on 127.0.0.1 (trust authentication, fsync off), run as an
    unprivileged user in a temporary folder that user owns; stopped by pid and removed after."""
    bin_dir, user = postgres_bin(), _unprivileged_user()
    # Not under pytest's tmp_path: its root-only (0700) parents would lock the server out.
    folder = Path(tempfile.mkdtemp(prefix="r1flow-pg-"))
    try:
        if user:
            os.chown(folder, user["user"], user["group"])
        data, port, superuser = folder / "data", free_port(), "r1flow"
        subprocess.run([str(bin_dir / "initdb"), "-D", str(data), "-U", superuser, "-A", "trust",
                        "-E", "UTF8", "--locale=C", "--no-sync"], cwd=folder, check=True,
                       capture_output=True, **user)
        cmd = [str(bin_dir / "postgres"), "-D", str(data), "-h", HOST, "-p", str(port), "-k", str(folder),
               "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        ready = [str(bin_dir / "pg_isready"), "-q", "-h", HOST, "-p", str(port)]
        proc = start_server("postgres", cmd, server_env({}), folder / "postgres.log", "", timeout=60,
                            ready=lambda: subprocess.run(ready).returncode == 0, cwd=folder, **user)
        try:
            yield Postgres(HOST, port, superuser, folder / "postgres.log")
        finally:
            # SIGINT is PostgreSQL's fast shutdown: roll back open sessions, stop cleanly.
            stop_server(proc, sig=signal.SIGINT)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
