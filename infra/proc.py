"""Subprocesses whose output is streamed line by line (into a Prefect log, for one).

Every line a caller sees, and the command and output in a :class:`CommandError`, are
:func:`infra.logs.scrub`-bed: a stage that logs its tracking URI or a credential variable
does not put the secret into the Prefect log or an error message.
"""

from __future__ import annotations

import codecs
import collections
import contextlib
import itertools
import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable, Generator, Iterable, Iterator

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


MAX_LINE = 16_000  # characters: a longer line is passed on in pieces (Prefect caps a log at 1 MB)
_LINE_END = re.compile(r"\r\n|\r|\n")


def split_lines(chunks: Iterable[bytes], max_line: int = MAX_LINE) -> Iterator[str]:
    """The lines of a byte stream read in ``chunks``, without their ends.

    A line ends at ``\\n``, ``\\r\\n`` or ``\\r`` (a terminal redraw, e.g. of a progress bar,
    is a line of its own). Bytes are decoded as UTF-8 across chunk boundaries, bad bytes
    replaced. A line longer than ``max_line`` characters comes out as it arrives, in pieces of
    at most ``max_line`` (cut after a space where the second half of a piece has one), so the
    text held and the work per chunk stay bounded however long the line.
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    for chunk in itertools.chain(chunks, [None]):
        text = pending + decoder.decode(chunk or b"", final=chunk is None)
        hold = "\r" if chunk is not None and text.endswith("\r") else ""  # maybe half of a \r\n
        *lines, pending = _LINE_END.split(text[:len(text) - len(hold)])
        for line in lines:
            yield (yield from _cut(line, max_line))
        pending = (yield from _cut(pending, max_line)) + hold
    if pending:
        yield pending


def _cut(text: str, max_line: int) -> Generator[str, None, str]:
    """Yield leading pieces of ``text`` of at most ``max_line`` characters, each cut after a
    space where its second half has one (a credential stays whole for scrub); return the rest
    (at most ``max_line`` characters)."""
    while len(text) > max_line:
        cut = text.rfind(" ", max_line // 2, max_line) + 1 or max_line
        yield text[:cut]
        text = text[cut:]
    return text


def stream(cmd: list[str], *, cwd: str | Path, env: dict[str, str] | None = None,
           on_line: Callable[[str], None] = lambda line: None, keep: int = 200) -> list[str]:
    """Run ``cmd``, calling ``on_line`` for every non-blank output line (stdout and stderr
    merged, :func:`split_lines`), scrubbed of credentials.

    Returns the last ``keep`` lines; raises :class:`CommandError` on a non-zero exit.
    Carriage-return progress updates count as lines; stages keep them few
    (:mod:`infra.progress`), and a line over :data:`MAX_LINE` characters arrives in pieces.
    """
    if _STOPPING.is_set():  # e.g. a retry of a stage after the run was cancelled
        raise CommandError(cmd, -1, ["not started: this process is stopping its commands (a cancelled or interrupted run)"])
    tail: collections.deque[str] = collections.deque(maxlen=keep)
    env = env or tool_env()
    secrets = secret_values(env)  # the child's credentials, read once, not once a line
    # Its own process group (session): the command and everything it starts (dvc, the stage,
    # DeepSpeed's ranks) stop together (stop_group), on an error here or a cancelled run.
    with subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          stdin=subprocess.DEVNULL, start_new_session=True) as proc:
        _GROUPS.add(proc.pid)
        try:
            assert proc.stdout is not None
            for raw in split_lines(iter(lambda: proc.stdout.read1(65536), b"")):
                if line := scrub(raw.rstrip(), secrets):
                    tail.append(line)
                    on_line(line)
            returncode = proc.wait()
        finally:
            stop_group(proc.pid)  # what the command left running, or all of it after an error here
            _GROUPS.discard(proc.pid)
    if returncode:
        raise CommandError(cmd, returncode, list(tail))
    return list(tail)


_GROUPS: set[int] = set()  # process groups of the commands streaming now
_STOPPING = threading.Event()  # set by stopping_commands: no new command starts


def stop_group(pgid: int, grace_s: float = 10.0) -> None:
    """SIGTERM every process of group ``pgid``, then SIGKILL what is left after ``grace_s``
    (DeepSpeed's launcher and torchrun stop their ranks on SIGTERM). Returns at once for a
    group with no process left."""
    stop_groups([pgid], grace_s)


def stop_groups(pgids: Iterable[int], grace_s: float = 10.0) -> None:
    """:func:`stop_group` for several groups at once: all get SIGTERM first, so the grace
    period is ``grace_s`` in all, not per group."""
    import signal
    import time

    def signal_all(groups: list[int], signum: int) -> list[int]:
        """Send ``signum`` to each group; returns those that still had a process."""
        alive = []
        for pgid in groups:
            try:
                os.killpg(pgid, signum)
                alive.append(pgid)
            except ProcessLookupError:
                pass
        return alive

    alive = signal_all(list(pgids), signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = signal_all(alive, 0)
    signal_all(alive, signal.SIGKILL)


@contextlib.contextmanager
def stopping_commands() -> Iterator[None]:
    """Stop the process group of every command :func:`stream` is running (any thread's) when
    a signal's exception leaves the block: Prefect's ``TerminationSignal`` when a run is cancelled
    (the runner signals the flow-run process alone, and the commands run in sessions of their
    own), ``KeyboardInterrupt`` on Ctrl-C (the terminal's SIGINT does not reach them either).

    After that, :func:`stream` starts no command in this process (a retry of a stopped stage
    fails at once) until the next block begins. It installs no signal handler: Prefect's
    SIGTERM bridge must stay the installed handler, or the runner's cancel intent is not
    acknowledged and the run ends Crashed instead of Cancelled
    (``prefect.utilities.engine.can_ack_control_intent``, Prefect 3.9).
    """
    _STOPPING.clear()
    try:
        yield
    except Exception:  # an error of the block's own (a stage failed): nothing is cancelled
        raise
    except BaseException:  # TerminationSignal, KeyboardInterrupt, SystemExit
        _STOPPING.set()  # a stage retried, or started, after this point does not run
        for _ in range(3):  # and one that started while the first ones stopped is stopped too
            if not _GROUPS:
                break
            stop_groups(list(_GROUPS), grace_s=5.0)
        raise


def run(cmd: list[str], *, cwd: str | Path, env: dict[str, str] | None = None, input: str | None = None) -> str:
    """Run ``cmd`` to completion (``input`` on its stdin, else none) and return its stdout;
    CommandError on failure."""
    stdin = {"input": input} if input is not None else {"stdin": subprocess.DEVNULL}
    proc = subprocess.run(cmd, cwd=cwd, env=env or tool_env(), capture_output=True, text=True, **stdin)
    if proc.returncode:
        raise CommandError(cmd, proc.returncode, (proc.stdout + proc.stderr).splitlines())
    return proc.stdout
