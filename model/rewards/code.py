"""The code reward: run the completion's program against the row's tests in a sandboxed process.

The program is `code + "\\n\\n" + tests + "\\n\\ncheck(entry_point)\\n"` (the check call only when
the row has an `entry_point`; MBPP-style rows whose tests are bare asserts need none). It runs
as `python -I` in a fresh temporary directory, with stdin closed, a minimal environment, in a
new session so that the whole process group can be killed, under a wall-clock timeout plus
RLIMIT_CPU / RLIMIT_AS / RLIMIT_FSIZE, with sockets other than AF_UNIX refused and, when
running as root, a private network namespace (`unshare(CLONE_NEWNET)`; skipped silently where
the kernel or container refuses it).

The limits are set by a small runner inside the child rather than in `preexec_fn`: rows run
from a thread pool, and `preexec_fn` is documented as unsafe when the parent has threads.
Setting soft = hard means user code cannot raise them again (unless it is root, which the
network namespace then still contains).

A program passes only if it exits 0 AND the runner got to print a random per-run token after
the tests returned, so `sys.exit(0)` / `os._exit(0)` before the tests does not pass.
This is a guard against accidents and reward hacking, not a security boundary against
hostile code: run untrusted workloads inside a container as well.
"""

from __future__ import annotations

import logging
import math
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from data.completions import completion_text

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 5.0  # wall clock per program; HumanEval's canonical tests need < 1 s
DEFAULT_MEMORY_MB = 1024  # RLIMIT_AS; CPython itself needs ~30 MB
MAX_OUTPUT_BYTES = 16 * 1024 * 1024  # RLIMIT_FSIZE: a print loop dies instead of filling disk

_FENCE_RE = re.compile(r"(?s)```([^\n`]*)\n(.*?)```")
_ANSWER_RE = re.compile(r"(?s)<answer>(.*?)</answer>")
_PYTHON_TAGS = {"python", "py", "python3"}

# Runs in the child before the user's program; argv: program path, token, cpu s, bytes, fsize.
_RUNNER = r"""
import os, resource, runpy, sys
_path, _token = sys.argv[1], sys.argv[2]
for _lim, _val in ((resource.RLIMIT_CPU, int(sys.argv[3])), (resource.RLIMIT_AS, int(sys.argv[4])),
                   (resource.RLIMIT_FSIZE, int(sys.argv[5])), (resource.RLIMIT_CORE, 0)):
    resource.setrlimit(_lim, (_val, _val))
if os.geteuid() == 0:
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).unshare(0x40000000)  # CLONE_NEWNET
    except Exception:
        pass
import socket as _socket_module
class _NoNetworkSocket(_socket_module.socket):
    def __init__(self, family=-1, type=-1, proto=-1, fileno=None):
        if fileno is None and family != _socket_module.AF_UNIX:
            raise OSError("network access is disabled in the code sandbox")
        super().__init__(family, type, proto, fileno)
def _no_network(*args, **kwargs):
    raise OSError("network access is disabled in the code sandbox")
_socket_module.socket = _NoNetworkSocket
_socket_module.create_connection = _socket_module.getaddrinfo = _no_network
_result_fd = os.dup(1)
sys.argv = [_path]
runpy.run_path(_path, run_name="__main__")
os.write(_result_fd, _token.encode())
"""


def extract_code(completion: Any) -> str:
    """Return the program in a completion.

    Only text after the last `</think>` is considered. Preference: the last ```python block,
    else the last untagged ``` block, else the content of the last `<answer>` block, else the
    whole (post-reasoning) text.
    """
    text = completion_text(completion)
    if "</think>" in text:
        text = text.rsplit("</think>", 1)[1]
    blocks = _FENCE_RE.findall(text)
    python = [body for tag, body in blocks if tag.strip().lower() in _PYTHON_TAGS]
    untagged = [body for tag, body in blocks if not tag.strip()]
    if python or untagged:
        return (python or untagged)[-1]
    answers = _ANSWER_RE.findall(text)
    return answers[-1] if answers else text


def build_program(code_text: str, tests: str, entry_point: str | None) -> str:
    """Concatenate the candidate code, the tests and (if given) `check(entry_point)`."""
    program = code_text + "\n\n" + tests
    if entry_point:
        program += f"\n\ncheck({entry_point})\n"
    return program


def _kill_group(pid: int) -> None:
    """SIGKILL the process group led by `pid` (the child and anything it forked)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _child_env(workdir: str) -> dict[str, str]:
    """A minimal environment: nothing of the parent's (tokens, proxies) reaches the program."""
    return {"PATH": os.defpath, "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8",
            "OMP_NUM_THREADS": "1"}


def run_program(program: str, timeout: float = DEFAULT_TIMEOUT_S,
                memory_mb: int = DEFAULT_MEMORY_MB) -> bool:
    """Run `program` in the sandbox; True iff it finished within `timeout` s and exited cleanly."""
    token = secrets.token_hex(16)
    with tempfile.TemporaryDirectory(prefix="r1flow-code-", ignore_cleanup_errors=True) as workdir:
        path = os.path.join(workdir, "program.py")
        with open(path, "w", encoding="utf-8") as f:
            f.write(program)
        limits = [str(math.ceil(timeout) + 1), str(memory_mb * 1024 * 1024), str(MAX_OUTPUT_BYTES)]
        out_path, err_path = os.path.join(workdir, "stdout"), os.path.join(workdir, "stderr")
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-c", _RUNNER, path, token, *limits],
                cwd=workdir, env=_child_env(workdir), stdin=subprocess.DEVNULL,
                stdout=out, stderr=err, start_new_session=True,
            )
            try:
                returncode = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc.pid)
                proc.wait()
                logger.debug("program timed out after %.1f s", timeout)
                return False
            finally:
                _kill_group(proc.pid)  # also reaps stragglers of a program that exited
        with open(out_path, "rb") as f:
            f.seek(max(0, os.path.getsize(out_path) - 4096))
            finished = token.encode() in f.read()
        if returncode != 0 or not finished:
            with open(err_path, "rb") as f:
                logger.debug("program failed (rc=%s): %s", returncode, f.read()[-500:])
        return returncode == 0 and finished


def code(
    completions: Sequence[Any],
    tests: Sequence[str | None] | None = None,
    entry_point: Sequence[str | None] | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    memory_mb: int = DEFAULT_MEMORY_MB,
    max_workers: int | None = None,
    **kwargs: Any,
) -> list[float | None]:
    """Score 1.0 for each completion whose program passes the row's tests, 0.0 if it fails.

    Args:
        completions: model outputs; the program is taken from them by `extract_code`.
        tests: test code per row (HumanEval defines `check(candidate)`); rows without get None.
        entry_point: per row, the function name passed to `check`; None runs the tests as-is.
        timeout: wall-clock seconds per program (RLIMIT_CPU is this plus one, rounded up).
        memory_mb: address-space limit per program.
        max_workers: programs run at once (default: CPU count; more would skew the timeouts).
        **kwargs: other dataset columns, ignored.
    """
    jobs: dict[int, str] = {}
    for i, completion in enumerate(completions):
        row_tests = tests[i] if tests is not None else None
        if row_tests:
            ep = entry_point[i] if entry_point is not None else None
            jobs[i] = build_program(extract_code(completion), row_tests, ep)
    scores: list[float | None] = [None] * len(completions)
    if not jobs:
        return scores
    workers = max_workers or os.cpu_count() or 1
    with ThreadPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
        passed = pool.map(lambda program: run_program(program, timeout, memory_mb), jobs.values())
        for i, ok in zip(jobs, passed):
            scores[i] = 1.0 if ok else 0.0
    return scores
