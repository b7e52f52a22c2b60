"""Real servers on 127.0.0.1 for tests: a moto S3 server and an MLflow tracking server.

Import the fixtures into a test module (pytest puts tests/ on sys.path)::

    from servers import moto_s3, mlflow_server  # noqa: F401  (pytest fixtures)

Both are session-scoped subprocesses in their own process groups, so nothing they start
outlives the session and moto's state is not shared with any in-process ``mock_aws``.
A module that needs servers of its own (say, to cut the way to them) starts them with
:func:`running_moto` and :func:`running_mlflow`.
Nothing listens or connects anywhere but 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Iterator

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
                 timeout: float, ok=lambda status: status == 200) -> subprocess.Popen:
    """Start ``cmd`` in its own process group, logging to ``log_path``, and wait until
    ``ready_url`` answers ``ok``; fails the test with the server's log otherwise."""
    started = time.monotonic()
    with log_path.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=log_path.parent,
                                start_new_session=True)
    while time.monotonic() - started < timeout:
        status = _http_status(ready_url)
        if status is not None and ok(status):
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


def stop_server(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM the server's whole process group, SIGKILL whatever is left after ``grace_s``."""
    pgid = proc.pid  # start_new_session: the group id is the leader's pid
    try:
        os.killpg(pgid, signal.SIGTERM)
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
def running_mlflow(folder: Path, artifacts: str, s3_endpoint: str,
                   extra_env: dict[str, str] | None = None) -> Iterator[str]:
    """``mlflow server`` on 127.0.0.1 (sqlite backend and log in ``folder``) proxying artifacts
    to ``artifacts`` (``s3://bucket/prefix``) on ``s3_endpoint``: yields its tracking URI."""
    port = free_port()
    cmd = [sys.executable, "-m", "mlflow", "server",
           "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
           "--artifacts-destination", artifacts,
           "--host", HOST, "--port", str(port), "--workers", "1"]
    env = server_env({**FAKE_CREDENTIALS, "MLFLOW_S3_ENDPOINT_URL": s3_endpoint, **(extra_env or {})})
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


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """``prefect server start`` (UI included) on 127.0.0.1 with its own PREFECT_HOME:
    yields its API URL."""
    port = free_port()
    home = tmp_path_factory.mktemp("prefect_home")
    env = server_env({"PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                      "PREFECT_API_URL": ""})
    cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", HOST, "--port", str(port)]
    api = f"http://{HOST}:{port}/api"
    proc = start_server("prefect", cmd, env, home / "server.log", f"{api}/health", timeout=120)
    try:
        yield api
    finally:
        stop_server(proc)
