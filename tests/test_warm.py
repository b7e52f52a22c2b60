"""Warm starts (infra/warm.py): a stage forked from the run's warm parent is the process a cold
``python -m`` would have been (folder, argv, environment, threads, numbers, exit status) and
stops as one does."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from infra import warm

ROOT = Path(__file__).resolve().parents[1]
# The module a stage would be: prints what a process is, computes, exits with a given code.
PROBE = """
import json, os, sys, time
import torch
what = {"cwd": os.getcwd(), "argv": sys.argv[1:], "path0": sys.path[0], "var": os.environ.get("PROBE_VAR"),
        "threads": torch.get_num_threads(), "pid": os.getpid(), "pgid": os.getpgid(0)}
torch.manual_seed(0)
a = torch.randn(256, 256)
what["sum"] = float((a @ a).sum())
print(json.dumps(what), flush=True)
print("to stderr", file=sys.stderr, flush=True)
if sys.argv[1] == "sleep":
    time.sleep(600)
import threading
threading.Thread(target=lambda: (time.sleep(0.5), print("thread done", flush=True))).start()
sys.exit(int(sys.argv[2]))
"""
# What `r1flow launch` does with a command: hand it to the warm parent, else say so (99).
LAUNCHER = ("import os, sys; from infra import warm; "
            "code = warm.launch([sys.executable, '-m', 'probe', *sys.argv[1:]], dict(os.environ)); "
            "sys.exit(99 if code is None else code)")


@pytest.fixture(scope="module")
def parent():
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    with warm.warm_parent(env) as path:
        assert path and os.path.exists(path)
        yield {**env, warm.SOCKET_ENV: path}
    assert not os.path.exists(path)  # the parent is stopped with its block, its socket removed


def _folder(tmp_path: Path) -> Path:
    (tmp_path / "probe.py").write_text(PROBE)
    return tmp_path


def _launch(folder: Path, env: dict, *args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", LAUNCHER, *args], cwd=folder, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def test_a_warm_child_is_the_process_a_cold_start_gives(parent, tmp_path):
    folder = _folder(tmp_path)
    env = {**parent, "PROBE_VAR": "from the stage"}
    cold = subprocess.run([sys.executable, "-m", "probe", "run", "3"], cwd=folder, env=env, capture_output=True,
                          text=True)
    proc = _launch(folder, env, "run", "3")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == cold.returncode == 3, err
    got, want = json.loads(out.splitlines()[0]), json.loads(cold.stdout.splitlines()[0])
    assert got["pid"] != proc.pid and got["pgid"] == got["pid"]  # a child of the parent, in a group of its own
    for key in ("cwd", "argv", "path0", "var", "threads", "sum"):
        assert got[key] == want[key], key
    assert got["threads"] == 1 and got["argv"] == ["run", "3"] and got["path0"] == str(folder)
    assert "to stderr" in err
    assert out.splitlines()[1:] == cold.stdout.splitlines()[1:] == ["thread done"]  # threads joined at exit


def test_other_start_up_variables_start_cold(parent, tmp_path):
    """A thread count (or any variable read at start-up) unlike the parent's: refused, so cold."""
    proc = _launch(_folder(tmp_path), {**parent, "OMP_NUM_THREADS": "2"}, "run", "0")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 99 and warm.REFUSED_LINE in err


def test_a_silent_client_does_not_stop_the_parent(parent, tmp_path):
    import socket

    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent.connect(parent[warm.SOCKET_ENV])
    try:
        proc = _launch(_folder(tmp_path), parent, "run", "0")
        proc.communicate(timeout=120)
        assert proc.returncode == 0
    finally:
        silent.close()


def test_without_a_parent_the_launcher_starts_cold(parent, tmp_path):
    env = {k: v for k, v in parent.items() if k != warm.SOCKET_ENV}
    proc = _launch(_folder(tmp_path), env, "run", "0")
    proc.communicate(timeout=120)
    assert proc.returncode == 99
    gone = {**parent, warm.SOCKET_ENV: str(tmp_path / "no-socket")}
    proc = _launch(_folder(tmp_path), gone, "run", "0")
    proc.communicate(timeout=120)
    assert proc.returncode == 99


def _started(proc: subprocess.Popen) -> dict:
    """The probe's first line: it is running."""
    return json.loads(proc.stdout.readline())


def _gone(pid: int, timeout_s: float = 30) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def test_a_child_killed_by_a_signal_kills_its_launcher_by_it(parent, tmp_path):
    proc = _launch(_folder(tmp_path), parent, "sleep", "0")
    child = _started(proc)
    assert b"-m probe sleep 0" in Path(f"/proc/{child['pid']}/cmdline").read_bytes()  # ps shows the stage
    os.kill(child["pid"], signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL  # what DVC would see of a cold stage killed by the OOM killer


def test_sigterm_to_the_launcher_stops_the_child(parent, tmp_path):
    proc = _launch(_folder(tmp_path), parent, "sleep", "0")
    child = _started(proc)
    proc.terminate()
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGTERM and _gone(child["pid"])


def test_a_killed_launcher_takes_its_child_along(parent, tmp_path):
    proc = _launch(_folder(tmp_path), parent, "sleep", "0")
    child = _started(proc)
    proc.kill()
    proc.communicate(timeout=60)
    assert _gone(child["pid"]), "the child outlived its launcher"
