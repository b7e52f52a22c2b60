"""Subprocesses whose output is streamed line by line (into a Prefect log, for one).

Every line a caller sees, and the command and output in a :class:`CommandError`, are
:func:`infra.logs.scrub`-bed: a stage that logs its tracking URI or a credential variable
does not put the secret into the Prefect log or an error message.
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

from infra.logs import scrub, secret_values


class CommandError(RuntimeError):
    """A command exited non-zero; the message carries its last output lines. The command and
    lines are kept scrubbed: the error travels into logs and Prefect's task-run state."""

    def __init__(self, cmd: list[str], returncode: int, tail: list[str]):
        self.cmd, self.returncode = [scrub(arg) for arg in cmd], returncode
        self.tail = [scrub(line) for line in tail]
        last = "\n".join(self.tail[-20:])
        super().__init__(f"`{' '.join(self.cmd)}` exited with {returncode}; last output:\n{last}")


def tool_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The current environment with this interpreter's bin folder first on PATH, so that
    `dvc` and `r1flow` resolve to the project's own installation."""
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env.update(extra or {})
    return env


def stream(cmd: list[str], *, cwd: str | Path, env: dict[str, str] | None = None,
           on_line: Callable[[str], None] = lambda line: None, keep: int = 200) -> list[str]:
    """Run ``cmd``, calling ``on_line`` for every output line (stdout and stderr merged),
    scrubbed of credentials.

    Returns the last ``keep`` lines; raises :class:`CommandError` on a non-zero exit.
    Carriage-return progress updates count as lines, so progress bars stream too.
    """
    tail: collections.deque[str] = collections.deque(maxlen=keep)
    env = env or tool_env()
    secrets = secret_values(env)  # the child's credentials, read once, not once a line
    with subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL) as proc:
        assert proc.stdout is not None
        buffer = b""
        for chunk in iter(lambda: proc.stdout.read1(65536), b""):
            buffer += chunk
            *lines, buffer = buffer.replace(b"\r", b"\n").split(b"\n")
            for raw in lines:
                if line := scrub(raw.decode(errors="replace").rstrip(), secrets):
                    tail.append(line)
                    on_line(line)
        if buffer.strip():
            tail.append(scrub(buffer.decode(errors="replace").rstrip(), secrets))
            on_line(tail[-1])
        returncode = proc.wait()
    if returncode:
        raise CommandError(cmd, returncode, list(tail))
    return list(tail)


def run(cmd: list[str], *, cwd: str | Path, env: dict[str, str] | None = None, input: str | None = None) -> str:
    """Run ``cmd`` to completion (``input`` on its stdin, else none) and return its stdout;
    CommandError on failure."""
    stdin = {"input": input} if input is not None else {"stdin": subprocess.DEVNULL}
    proc = subprocess.run(cmd, cwd=cwd, env=env or tool_env(), capture_output=True, text=True, **stdin)
    if proc.returncode:
        raise CommandError(cmd, proc.returncode, (proc.stdout + proc.stderr).splitlines())
    return proc.stdout
