"""Progress reaches a pipe (the Prefect log) as a few plain lines and a terminal as a live bar;
the line splitter that feeds the Prefect log stays bounded on long lines."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from infra import proc
from infra.progress import LineProgress

ROOT = Path(__file__).parents[1]
# A 1000-step loop with a postfix each step, as model/trainer.py run_loop draws it.
LOOP = """
import sys, time
from infra.logs import setup_logging
from infra.progress import progress
setup_logging()
bar = progress(range(1000), desc="train", mininterval=0.01)
for step in bar:
    bar.set_postfix({"loss": 1.0 / (step + 1)})
    time.sleep(float(sys.argv[1]))
"""


def _loop(stderr, pause: float = 0.0) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", LOOP, str(pause)], cwd=ROOT, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)


def test_a_pipe_gets_one_line_every_5_percent_with_the_last_step():
    seen: list[str] = []
    proc.stream([sys.executable, "-c", LOOP, "0"], cwd=ROOT,
                env=proc.tool_env({"PYTHONPATH": str(ROOT)}), on_line=seen.append)
    bars = [line for line in seen if "infra.progress" in line]
    assert len(bars) == 20 and len(seen) <= 25  # bounded: 1000 steps, no \r redraws
    assert "train:   5% 50/1000" in bars[0] and "loss=0.02" in bars[0]  # the postfix of the 50th step
    assert "train: 100% 1000/1000" in bars[-1] and "loss=0.001" in bars[-1]


def test_a_terminal_gets_a_live_bar():
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a 0-column one draws nothing
    child = _loop(follower, pause=0.002)
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    assert child.wait(timeout=60) == 0
    text = out.decode()
    assert text.count("\r") >= 5 and "infra.progress" not in text  # redrawn in place, not logged
    assert "1000/1000" in text and "loss=" in text


@pytest.mark.parametrize("imported_first", [False, True])
def test_library_bars_are_off_on_a_pipe(imported_first):
    code = ("import transformers.utils.logging as hf\n" * imported_first
            + "import sys; from infra.progress import quiet_library_bars; quiet_library_bars()\n"
            + "import transformers.utils.logging as hf; sys.exit(hf.is_progress_bar_enabled())")
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_DISABLE_PROGRESS_BARS"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)},
                          stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert done.returncode == 0, done.stderr.decode()


def test_line_progress_strides_resume_and_close(caplog):
    caplog.set_level("INFO", logger="infra.progress")
    list(LineProgress(range(10, 100), total=100, initial=10, desc="rl", every=0.25))
    assert [r.getMessage().split(" [")[0] for r in caplog.records] == [
        "rl:  25% 25/100", "rl:  50% 50/100", "rl:  75% 75/100", "rl: 100% 100/100"]
    caplog.clear()
    for step in LineProgress(range(7), desc="broken", every=0.5):  # len() gives the total
        if step == 2:
            break
    assert [r.getMessage().split(" [")[0] for r in caplog.records] == ["broken:  29% 2/7"]  # a break ends with a line
    caplog.clear()
    list(LineProgress(iter(range(5)), desc="open"))  # no total: only the end within a minute
    assert [r.getMessage().split(" [")[0] for r in caplog.records] == ["open: 5 it"]
    caplog.clear()
    list(LineProgress(range(5), disable=True))
    assert not caplog.records
    with pytest.raises(ValueError, match="every is a share"):
        LineProgress(range(3), every=5)


def test_split_lines_ends_decodes_and_cuts_long_lines():
    chunks = [b"a\r", b"\nb\rc", "\n\u00e9".encode()[:2], "\u00e9".encode()[1:] + b"\n", b"\xff\n", b"tail"]
    assert list(proc.split_lines(chunks)) == ["a", "b", "c", "\u00e9", "\ufffd", "tail"]
    words = ("word " * 10).encode()
    assert list(proc.split_lines([words], max_line=12)) == ["word word ", "word word ", "word word ",
                                                            "word word ", "word word "]
    assert list(proc.split_lines([b"x" * 25 + b"\n"], max_line=10)) == ["x" * 10, "x" * 10, "x" * 5]


def test_stream_passes_a_huge_line_in_pieces_quickly(tmp_path):
    code = "import sys; sys.stdout.write('start\\n' + 'y' * 20_000_000 + '\\nend\\n')"
    seen: list[str] = []
    started = time.monotonic()
    tail = proc.stream([sys.executable, "-c", code], cwd=tmp_path, on_line=seen.append)
    assert time.monotonic() - started < 30  # linear: the whole line is never rescanned
    assert seen[0] == "start" and seen[-1] == "end" == tail[-1]
    assert max(map(len, seen)) == proc.MAX_LINE and sum(map(len, seen[1:-1])) == 20_000_000


def test_an_exception_leaving_the_flow_body_stops_every_running_command_group():
    """What a cancelled run does (Prefect raises TerminationSignal in the flow's thread): the
    commands :func:`infra.proc.stream` runs in other threads, and their children, stop; one
    that ignores SIGTERM gets SIGKILL after the grace period."""
    import threading

    from infra import proc

    ready = []
    commands = [[sys.executable, "-c", "import time; time.sleep(300)"],
                ["bash", "-c", "trap '' TERM; sleep 300 & sleep 300 & wait"]]
    errors: list[BaseException] = []

    def run(cmd):
        try:
            proc.stream(cmd, cwd=".", on_line=ready.append)
        except proc.CommandError as err:
            errors.append(err)

    threads = [threading.Thread(target=run, args=(cmd,)) for cmd in commands]
    for t in threads:
        t.start()
    while len(proc._GROUPS) < 2:
        time.sleep(0.05)
    groups = list(proc._GROUPS)
    with pytest.raises(KeyboardInterrupt):
        with proc.stopping_commands():
            raise KeyboardInterrupt  # as Ctrl-C, or Prefect's TerminationSignal, would
    for t in threads:
        t.join(30)
    assert len(errors) == 2 and not any(t.is_alive() for t in threads)
    for pgid in groups:  # the whole group, children included, is gone
        with pytest.raises(ProcessLookupError):
            os.killpg(pgid, 0)
    with pytest.raises(proc.CommandError, match="not started"):  # a retry after the stop does not run
        proc.stream(["true"], cwd=".")
    with proc.stopping_commands():  # the next block starts commands again
        proc.stream(["true"], cwd=".")
