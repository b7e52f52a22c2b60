"""Warm starts: stage processes forked from a parent that has imported the heavy libraries.

A stage is a fresh ``python -m flows.cli stage NAME`` process (dvc.yaml's command), and on
the 2-core machine importing torch, transformers' model classes, DeepSpeed, Great
Expectations and MLflow takes about 15 s of each: a run of 27 stages spent more time
importing than the small preset spent training. A pipeline run on a CPU host therefore starts
one *warm parent* (:func:`warm_parent`): a process that imports those libraries once (only
third-party ones: never the project's own modules, so a run workspace still runs its own
checked-out code) and listens on a Unix socket. ``r1flow launch`` (the command DVC runs)
hands its argv, working folder, environment and standard streams to the parent
(:func:`launch`), which forks a child for the stage; the launcher waits for the child and
exits with its status, so DVC, Prefect's logs and retries see what a cold process would give.
This is the pre-fork ("zygote") model of Android's app starts and of multiprocessing's
forkserver, which cannot serve here because DVC, not one Python parent, starts each stage.

What a child sets up, so that it computes what a cold process computes:
- its process group, folder, environment and ``sys.argv`` are the stage's, its title in
  ``ps`` is the stage's command (setproctitle);
- ``torch.set_num_threads($OMP_NUM_THREADS)``: the parent never ran a parallel region, so
  the child's OpenMP pool is new (the pattern of PyTorch's DataLoader workers);
- ``random`` and numpy's global generator are re-seeded from the OS, as in a new process;
- ``sys.path[0]`` is the working folder, as ``python -m`` makes it.

Stopping: SIGTERM or SIGINT to the launcher is passed to the child's process group, and the
launcher waits for it; when the launcher dies (SIGKILL included) its socket closes and the
parent kills the child's group. A child killed by a signal makes the launcher die by the same
signal. The parent exits when the pipeline run ends (:func:`warm_parent`) or when its own
parent is gone. Only plain single-process stages start warm (a GPU or a multi-rank CPU
stage starts its launcher as before), only with ``$OMP_NUM_THREADS`` set (the pipeline sets
it), and ``R1FLOW_WARM=0`` turns warm starts off.

This module imports only the standard library at its top: it is also the parent's program.
"""

from __future__ import annotations

import array
import contextlib
import json
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

SOCKET_ENV = "R1FLOW_WARM_SOCKET"
SWITCH_ENV = "R1FLOW_WARM"
# What every stage imports (the model families of model/factory.py included); third-party only.
PRELOAD = ("torch", "numpy", "pandas", "scipy.stats", "transformers", "transformers.models.llama.modeling_llama",
           "transformers.models.qwen2.modeling_qwen2", "transformers.models.mixtral.modeling_mixtral",
           "transformers.models.qwen2_moe.modeling_qwen2_moe", "deepspeed", "great_expectations", "mlflow",
           "mlflow.tracking", "matplotlib.pyplot", "safetensors.torch", "yaml", "psutil", "setproctitle")
_HEADER = struct.Struct("!I")  # length of the JSON request that follows
_STATUS = struct.Struct("!ii")  # (FORKED, child pid), then (ENDED, wait status); or (REFUSED, 0)
FORKED, ENDED, REFUSED = 0, 1, 2
PROTOCOL = 1  # a launcher of another version (a workspace at another commit) is refused: it starts cold
CONNECT_TIMEOUT_S = 300  # the parent's imports, on a loaded machine, before it forks the first child
REQUEST_TIMEOUT_S = 5  # a connected launcher sends its request at once; a silent one is dropped
MAX_REQUEST = 1 << 24  # bytes of a request (argv, folder, environment)
# Variables read when a process starts or a library is imported (thread pools, temp folder, hub
# settings, hash seed, ...): a stage whose values differ from the parent's starts cold.
STARTUP_VARS = ("OMP_", "MKL_", "OPENBLAS_", "GOTO", "VECLIB", "NUMEXPR_", "TMPDIR", "TEMP", "TMP", "HF_",
                "HUGGINGFACE", "TRANSFORMERS_", "MPL", "PYTHON", "LANG", "LC_", "GX_", "GE_", "DS_", "PATH")
REFUSED_LINE = "starting cold: the warm parent runs another protocol or other start-up variables"
GRACE_S = 5.0  # a stopping parent gives its children SIGTERM, then SIGKILL after this


def enabled() -> bool:
    """Whether pipeline runs start stages warm (``R1FLOW_WARM``, default on)."""
    return os.environ.get(SWITCH_ENV, "1") != "0"


# ---- the launcher's side ------------------------------------------------------------------

def launch(cmd: list[str], env: dict[str, str], cwd: str | None = None) -> int | None:
    """Run ``cmd`` (``[python, -m, MODULE, ...]``: ``flows.cli stage NAME``) as a child of the warm parent at
    ``env[SOCKET_ENV]``, with this process's standard streams; returns the child's exit code
    (never, when the child died by a signal: this process then dies by it too). Returns None
    when there is no warm parent to use (no socket in ``env``, no ``OMP_NUM_THREADS``, a
    command of another form, or the parent not answering): the caller starts it cold."""
    path = env.get(SOCKET_ENV)
    if not path or not env.get("OMP_NUM_THREADS", "").isdigit() or cmd[:2] != [sys.executable, "-m"]:
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(CONNECT_TIMEOUT_S)
    try:
        sock.connect(path)
        body = json.dumps({"protocol": PROTOCOL, "argv": cmd[1:], "cwd": cwd or os.getcwd(), "env": env}).encode()
        socket.send_fds(sock, [_HEADER.pack(len(body)) + body], [0, 1, 2])
        kind, pid = _STATUS.unpack(_read(sock, _STATUS.size))
    except OSError:  # no parent, or one that did not fork within the timeout (its copy is
        sock.close()  # killed when it sees this socket closed): start cold
        return None
    if kind != FORKED:  # refused: another protocol, or start-up variables unlike the parent's
        sock.close()
        print(f"r1flow launch: {REFUSED_LINE}", file=sys.stderr, flush=True)
        return None
    sock.settimeout(None)
    forward = lambda signum, frame: _signal_group(pid, signum)  # noqa: E731
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    try:
        kind, status = _STATUS.unpack(_read(sock, _STATUS.size))
    except OSError:  # the parent died: nobody reports on the child any more, so it stops here
        _signal_group(pid, signal.SIGKILL)
        return 1
    if os.WIFSIGNALED(status):
        with contextlib.suppress(OSError, ValueError):  # SIGKILL has no handler to reset
            signal.signal(os.WTERMSIG(status), signal.SIG_DFL)
        os.kill(os.getpid(), os.WTERMSIG(status))
    return os.waitstatus_to_exitcode(status)


def _read(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the warm parent closed the connection")
        data += chunk
    return data


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


# ---- the runner's side --------------------------------------------------------------------

@contextlib.contextmanager
def warm_parent(env: dict[str, str]) -> Iterator[str | None]:
    """A warm parent for the block (started with ``env``, the stages' environment); yields its
    socket path for ``env[SOCKET_ENV]``, or None when warm starts are off. The parent imports
    when the first stage asks for a process (a run that DVC restores whole costs no imports),
    and that stage waits for the imports instead of repeating them. ``env`` should hold the
    stages' start-up variables (:data:`STARTUP_VARS`: ``OMP_NUM_THREADS`` above all), or
    every stage starts cold. Stopped when the block ends: SIGTERM, which gives its running
    children SIGTERM and :data:`GRACE_S` seconds before SIGKILL, then SIGKILL."""
    if not enabled():
        yield None
        return
    folder = tempfile.mkdtemp(prefix="r1flow-warm-")
    path = os.path.join(folder, "socket")
    # Unbuffered like a stage's own process: a child keeps the parent's sys.stdout object.
    proc = subprocess.Popen([sys.executable, __file__, path, str(os.getpid())], env={**env, "PYTHONUNBUFFERED": "1"},
                            cwd=folder, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(path) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        yield path if os.path.exists(path) else None
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=GRACE_S + 5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        with contextlib.suppress(OSError):
            os.unlink(path)
            os.rmdir(folder)


# ---- the warm parent ----------------------------------------------------------------------

def serve(path: str, owner: int) -> None:
    """The warm parent's loop: bind ``path``; at the first request import :data:`PRELOAD`; fork
    a child per request; report each child's pid and exit status to its launcher; kill a child's
    group when its launcher's connection closes first. Ends on SIGTERM (its children get
    SIGTERM, then SIGKILL after :data:`GRACE_S`), or when process ``owner`` is gone."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    stopping = []
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.append(signum))
    preloaded = False
    startup = _startup(os.environ)
    children: dict[int, socket.socket] = {}  # pid -> its launcher's connection
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    while not stopping and _alive(owner):
        for key, _ in selector.select(timeout=0.2):
            if key.fileobj is listener:
                if not preloaded:  # at the first stage that runs: a run DVC restores whole imports nothing
                    _preload()
                    preloaded = True
                conn, _ = listener.accept()
                pid = _fork(conn, startup, [listener, selector, *children.values()])
                if pid:
                    children[pid] = conn
                    selector.register(conn, selectors.EVENT_READ, pid)
            else:  # a launcher sends nothing after its request: readable means it is gone
                _signal_group(key.data, signal.SIGKILL)
                selector.unregister(key.fileobj)
        _reap(children, selector)
    _stop(children, selector)


def _reap(children: dict[int, socket.socket], selector: selectors.BaseSelector) -> None:
    """Report every ended child's status to its launcher."""
    for pid in list(children):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            conn = children.pop(pid)
            with contextlib.suppress(OSError):
                conn.sendall(_STATUS.pack(ENDED, status))
            with contextlib.suppress(KeyError, ValueError):
                selector.unregister(conn)
            conn.close()


def _stop(children: dict[int, socket.socket], selector: selectors.BaseSelector) -> None:
    """SIGTERM every child's group, SIGKILL what is left after :data:`GRACE_S`."""
    for pid in children:
        _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_S
    while children and time.monotonic() < deadline:
        time.sleep(0.1)
        _reap(children, selector)
    for pid in children:
        _signal_group(pid, signal.SIGKILL)
    _reap(children, selector)


def _preload() -> None:
    for name in PRELOAD:  # one that fails to import is imported by the child itself, as cold
        with contextlib.suppress(Exception):
            __import__(name)


def _startup(env: dict[str, str]) -> dict[str, str]:
    """The variables of ``env`` that take effect at a process's start (:data:`STARTUP_VARS`)."""
    return {k: v for k, v in env.items() if k.startswith(STARTUP_VARS)}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _fork(conn: socket.socket, startup: dict[str, str], close: list) -> int | None:
    """Read one request from ``conn`` and fork its child; returns the child's pid, or None for
    a request refused (another protocol, start-up variables unlike ``startup``) or unreadable
    (its connection closed). The child closes ``close`` (the parent's sockets) and never returns."""
    fds: list[int] = []
    try:
        conn.settimeout(REQUEST_TIMEOUT_S)
        size, fds = _receive(conn)
        if size > MAX_REQUEST:
            raise ValueError(f"a request of {size} bytes")
        request = json.loads(_read(conn, size))
        conn.settimeout(None)
        if request.get("protocol") != PROTOCOL or _startup(request["env"]) != startup:
            with contextlib.suppress(OSError):
                conn.sendall(_STATUS.pack(REFUSED, 0))
            raise ValueError("refused")
    except (OSError, ValueError, KeyError, TypeError):
        for fd in fds:
            os.close(fd)
        conn.close()
        return None
    pid = os.fork()
    if pid:
        with contextlib.suppress(OSError):  # its own group before anyone signals it (the child does it too)
            os.setpgid(pid, pid)
        for fd in fds:
            os.close(fd)
        with contextlib.suppress(OSError):  # a launcher gone already: its closed socket stops the child
            conn.sendall(_STATUS.pack(FORKED, pid))
        return pid
    code = 1
    try:
        for held in (conn, *close):
            held.close()
        code = _run_child(request, fds)
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        if not isinstance(done.code, int) and done.code is not None:
            print(done.code, file=sys.stderr)
    except KeyboardInterrupt:  # as a cold interpreter: die by SIGINT
        _exit_hooks()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    except BaseException:
        sys.excepthook(*sys.exc_info())
    _exit_hooks()
    os._exit(code)


def _exit_hooks() -> None:
    """What a cold interpreter runs at exit: wait for non-daemon threads, atexit (logging,
    MLflow), flush the streams."""
    import atexit
    import threading

    with contextlib.suppress(Exception):
        threading._shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def _receive(conn: socket.socket) -> tuple[int, list[int]]:
    fds = array.array("i")
    data, ancdata, _, _ = conn.recvmsg(_HEADER.size, socket.CMSG_LEN(3 * fds.itemsize))
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[:len(payload) - len(payload) % fds.itemsize])
    if len(data) < _HEADER.size or len(fds) != 3:
        for fd in fds:
            os.close(fd)
        raise ValueError("a request carries its length and three streams")
    return _HEADER.unpack(data)[0], list(fds)


def _run_child(request: dict, fds: list[int]) -> int:
    """In the forked child: become the stage's process and run ``python -m MODULE ...``."""
    import random
    import runpy

    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    argv = request["argv"]  # ["-m", "flows.cli", "stage", ...]
    with contextlib.suppress(ImportError):  # before the environment changes: it moves environ's memory
        import setproctitle

        setproctitle.setproctitle(" ".join([sys.executable, *argv]))
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    torch.seed()  # a new process's generators are seeded from the OS (the hash seed stays the parent's)
    random.seed()
    with contextlib.suppress(ImportError):
        import numpy

        numpy.random.seed()
    sys.path.insert(0, os.getcwd())  # the parent dropped its own script's folder
    sys.path_importer_cache.clear()
    local = {p.stem for p in Path.cwd().iterdir() if p.suffix == ".py" or (p / "__init__.py").is_file()}
    for name in [m for m in sys.modules if m.partition(".")[0] in local]:  # a library's namesake: the folder's wins
        del sys.modules[name]
    sys.argv = [argv[1], *argv[2:]]
    runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    return 0


if __name__ == "__main__":
    sys.path.pop(0)  # this file's folder (infra/): never the project's modules in the parent
    serve(sys.argv[1], int(sys.argv[2]))
