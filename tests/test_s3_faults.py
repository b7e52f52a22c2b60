"""The S3 endpoint dies mid-upload: ``dvc push`` and an MLflow artifact upload (issue 11).

A server that dies is gone all at once: its connections are cut mid-request and its port
refuses new ones. Killing moto at the right moment is a race (a loopback upload takes
milliseconds), so each test puts a :class:`Relay` between the client and a dedicated moto
server: it forwards bytes until half of a 24 MiB upload has passed, then resets every
connection and closes its listening socket. The cut lands in the middle of that upload
whatever the timing; moto behind it keeps running, so the test then reads the bucket
directly and checks that nothing partial sits there as if it were complete.

What bounds the wait (measured here; versions in ../shared/ENV.md):

- ``dvc push`` (s3fs on aiobotocore): botocore's legacy retry mode makes 5 attempts with
  random backoff of at most 1+2+4+8 = 15 s; a refused connection fails each attempt at once,
  and s3fs does not retry the final ``EndpointConnectionError``: ``publish`` failed after
  6-12 s. ``connect_timeout``/``read_timeout`` (60 s each) only matter for an endpoint that
  hangs, so r1flow leaves them alone.
- An MLflow artifact upload goes client -> tracking server -> S3. The server's boto3 makes the
  same 5 attempts per request (the failed part, then the abort of the multipart upload: 12-17 s)
  and answers 500 (or drops the connection); the client retries ``MLFLOW_HTTP_REQUEST_MAX_RETRIES``
  (7) times with backoff factor ``MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR`` (2): it gave up after
  314 s with the defaults, which r1flow keeps (they ride out an S3 restart rather than fail a
  stage). The test sets 1 retry and 2 boto3 attempts on the server: 4-6 s.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from infra import tracking
from infra.proc import CommandError, tool_env
from servers import HOST, S3Env, running_mlflow, running_moto
from tasks import workspace

log = logging.getLogger(__name__)

BIG = 24 << 20  # several 8 MiB parts for boto3's multipart upload; one 24 MiB PUT for s3fs
CUT = BIG // 2  # request bytes the relay forwards before it dies: the middle of the upload
PUSH_BOUND_S = 40  # <= 15 s of botocore backoff, plus DVC's start-up on a busy machine
UPLOAD_BOUND_S = 30  # 2 client attempts x (a part and its abort x 2 boto3 attempts, <= 1 s backoff)
# Retries cut down to keep the test short: MLflow's client, and the server's boto3 (per request).
_TIGHT_CLIENT = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
_TIGHT_SERVER = {"AWS_MAX_ATTEMPTS": "2"}


class Relay:
    """A TCP relay on 127.0.0.1 in front of ``target_port`` that dies on cue.

    Once ``cut_after`` bytes have gone from clients to the target (summed over all
    connections), the relay drops the chunk that crossed the mark, resets every connection
    and closes its listening socket: to the client the endpoint has died mid-request and
    then refuses connections. :meth:`revive` listens again on the same port, cutting nothing.
    """

    def __init__(self, target_port: int, cut_after: int | None = None, port: int = 0):
        self.target_port, self.cut_after = target_port, cut_after
        self.sent = 0  # bytes forwarded client -> target
        self.died = threading.Event()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self.port = self._listen(port)
        self.url = f"http://{HOST}:{self.port}"

    def _listen(self, port: int) -> int:
        self._listener = socket.create_server((HOST, port))  # SO_REUSEADDR: the port is free again at once
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()
        return self._listener.getsockname()[1]

    def revive(self) -> None:
        """Listen again on the same port, forwarding everything (the endpoint came back)."""
        with self._lock:
            self.cut_after, self.sent = None, 0
            self.died.clear()
        self._listen(self.port)

    def die(self) -> None:
        """Reset every connection and stop listening, as when the server process dies."""
        with self._lock:
            if self.died.is_set():
                return
            self.died.set()
            doomed = [self._listener, *self._sockets]
        for sock in doomed:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")  # RST
                sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in accept/recv
            except OSError:
                pass
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # closed by die()
                return
            try:
                upstream = socket.create_connection((HOST, self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                if self.died.is_set():
                    client.close()
                    upstream.close()
                    return
                self._sockets |= {client, upstream}
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, request: bool) -> None:
        """Copy ``src`` to ``dst`` until either end closes; counts (and cuts) request bytes."""
        while True:
            try:
                data = src.recv(1 << 16)
            except OSError:
                break
            if not data:
                break
            if request:
                with self._lock:
                    self.sent += len(data)
                    cut = self.cut_after is not None and self.sent >= self.cut_after
                if cut:
                    self.die()
                    return
            try:
                dst.sendall(data)
            except OSError:
                break
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes the pump of the other direction
            except OSError:
                pass
            sock.close()
            with self._lock:
                self._sockets.discard(sock)


# --- helpers -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def moto(tmp_path_factory) -> S3Env:
    """A moto server for this module only: the relays cut the way to it, not to the shared one."""
    with running_moto(tmp_path_factory.mktemp("moto_faults")) as s3:
        yield s3


@pytest.fixture
def dying(moto) -> tuple[S3Env, Relay]:
    """A new empty bucket on the module's moto (what a test finds there is its own), and a
    relay in front of moto that dies after CUT request bytes."""
    s3 = S3Env(moto.endpoint_url, f"r1flow-fault-{uuid.uuid4().hex[:8]}")
    s3.client().create_bucket(Bucket=s3.bucket)
    relay = Relay(int(moto.endpoint_url.rsplit(":", 1)[1]), cut_after=CUT)
    yield s3, relay
    relay.die()


def _objects(s3: S3Env) -> dict[str, bytes]:
    """Every object the bucket lists, with its content."""
    client = s3.client()
    listed = client.list_objects_v2(Bucket=s3.bucket).get("Contents", [])
    return {o["Key"]: client.get_object(Bucket=s3.bucket, Key=o["Key"])["Body"].read() for o in listed}


def _timed(call, *args):
    """``call(*args)``'s exception (the test fails if there is none) and the seconds it took."""
    started = time.monotonic()
    with pytest.raises(Exception) as info:
        call(*args)
    seconds = time.monotonic() - started
    log.info("%s failed after %.1f s: %s", getattr(call, "__qualname__", call), seconds, info.value)
    return info.value, seconds


# --- dvc push ------------------------------------------------------------------------------------


def _dvc_repo(folder: Path) -> Path:
    """A git + DVC repository whose one stage wrote ``big.bin`` (random, BIG bytes)."""
    folder.mkdir()
    (folder / "params.yaml").write_text("{}\n")
    (folder / "dvc.yaml").write_text(
        f"stages:\n  big:\n    cmd: head -c {BIG} /dev/urandom > big.bin\n    outs: [big.bin]\n")
    for cmd in (["git", "init", "-q"], ["git", "config", "user.name", "r1flow test"],
                ["git", "config", "user.email", "test@r1flow.invalid"],
                ["dvc", "init", "-q"], ["dvc", "repro", "-q"]):
        subprocess.run(cmd, cwd=folder, env=tool_env(), check=True, capture_output=True)
    return folder


@pytest.mark.fault(fault="the S3 endpoint dies during `dvc push` (publish)",
                   injected="a TCP relay in front of moto resets every connection and stops listening "
                            "after 12 MiB of a 24 MiB PUT",
                   survives="publish fails within seconds naming the endpoint; the remote holds no partial "
                            "object; the next push completes it")
def test_dvc_push_when_the_s3_endpoint_dies(dying, tmp_path, monkeypatch):
    s3, relay = dying
    for key, value in {**s3, "AWS_ENDPOINT_URL": relay.url}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv(workspace.REMOTE_ENV, f"s3://{s3.bucket}/dvc")
    repo = _dvc_repo(tmp_path / "repo")
    workspace.configure_dvc(repo, repo)  # remote r1flow on the relay, as a pipeline run sets it
    data = (repo / "big.bin").read_bytes()
    md5 = hashlib.md5(data).hexdigest()

    error, seconds = _timed(workspace.publish.fn, str(repo), "fault")
    assert relay.died.is_set(), "the relay never cut the upload"
    assert isinstance(error, CommandError), error
    assert seconds < PUSH_BOUND_S, f"dvc push took {seconds:.0f} s to give up"
    assert f"Could not connect to the endpoint URL: \"{relay.url}" in str(error), str(error)
    assert md5[:8] in str(error)  # names what was not pushed
    # s3fs sent big.bin as one PUT: moto got half its body and stored nothing.
    assert _objects(s3) == {}
    assert s3.client().list_multipart_uploads(Bucket=s3.bucket).get("Uploads", []) == []

    relay.revive()  # the endpoint is back: pushing again is all it takes
    workspace.publish.fn(str(repo), "fault")
    assert _objects(s3) == {f"dvc/files/md5/{md5[:2]}/{md5[2:]}": data}  # whole, under its md5


# --- an MLflow artifact upload -------------------------------------------------------------------


@pytest.mark.fault(fault="the S3 endpoint behind the MLflow server dies during an artifact upload",
                   injected="a TCP relay between `mlflow server` and moto resets every connection and stops "
                            "listening after 12 MiB of a 24 MiB multipart upload",
                   survives="StageRun.log_artifact raises ArtifactUploadError after bounded retries; no artifact object (the "
                            "incomplete multipart upload is not listed); the next upload is whole")
def test_mlflow_artifact_upload_when_the_s3_endpoint_dies(dying, tmp_path, monkeypatch):
    s3, relay = dying
    big = tmp_path / "model.bin"
    big.write_bytes(os.urandom(BIG))
    with running_mlflow(tmp_path, f"s3://{s3.bucket}/mlflow", relay.url, _TIGHT_SERVER) as uri:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        for key, value in _TIGHT_CLIENT.items():
            monkeypatch.setenv(key, value)
        run_id = tracking.start_pipeline_run("s3-fault", {})
        run = tracking.StageRun(tracking.client(), run_id)

        error, seconds = _timed(run.log_artifact, big)
        assert relay.died.is_set(), "the relay never cut the upload"
        assert seconds < UPLOAD_BOUND_S, f"log_artifact took {seconds:.0f} s to give up"
        assert isinstance(error, tracking.ArtifactUploadError), error
        assert f"{big} was not stored in the artifacts of MLflow run {run_id} at {uri}" in str(error)
        assert _objects(s3) == {}  # no artifact, whole or partial
        # boto3 could not abort its multipart upload (the endpoint was gone): an upload
        # without a complete object stays behind, which no listing shows as an object.
        pending = s3.client().list_multipart_uploads(Bucket=s3.bucket).get("Uploads", [])
        assert all(u["Key"].endswith("/model.bin") for u in pending)

        relay.revive()
        run.log_artifact(big)
    objects = _objects(s3)
    assert [key.rsplit("/", 1)[1] for key in objects] == ["model.bin"]
    assert list(objects.values()) == [big.read_bytes()]
