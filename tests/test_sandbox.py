"""Hostile programs against the code reward's sandbox and judge (model/rewards/sandbox.py,
model/rewards/harness.py, model/rewards/code.py).

Each kind of attack found by the review (issue 11) is tried by at least two programs. Most are
written so that the attack succeeding *passes* the tests: they return a secret, a file's
content or a sign of success that the hidden tests expect. A score of 0.0 therefore means the
attack failed. After every test no sandbox process is left, and host-side checks confirm that
nothing was written, connected to or killed.
"""

from __future__ import annotations

import importlib
import os
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from benchmarks.soak import HOSTILE, TESTS as SOAK_TESTS
from infra import logs
from model.rewards import harness, sandbox
from model.rewards.code import GRACE_S, Job, code, run_job

code_module = importlib.import_module("model.rewards.code")  # `model.rewards.code` is the function

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux namespaces")

TIMEOUT = 3.0
SECRET = f"r1flow-secret-{uuid.uuid4().hex}"

# Finds SECRET anywhere the program can look: its environment, every /proc entry it can see,
# the home folders, its own frames and objects, the files of the trainer's working directory.
FIND_SECRET = textwrap.dedent("""
    import gc, os, sys
    def _scan():
        yield from os.environ.values()
        for pid in os.listdir("/proc"):
            for name in ("environ", "cmdline", "cwd/victim.txt", "root/proc/self/environ"):
                try:
                    with open(f"/proc/{pid}/{name}", "rb") as f:
                        yield f.read().decode("latin-1")
                except OSError:
                    pass
        for path in ("/root/.aws/credentials", os.path.expanduser("~/.aws/credentials"), {paths}):
            try:
                with open(path) as f:
                    yield f.read()
            except OSError:
                pass
        frame = sys._getframe()
        while frame is not None:
            yield repr(frame.f_locals)[:100000]
            frame = frame.f_back
        for obj in gc.get_objects():
            if isinstance(obj, (str, dict)):
                yield str(obj)[:100000]
    def f(*args):
        for text in _scan():
            start = text.find("r1flow-secret-")
            if start >= 0:
                return text[start:start + 46]
        return None
""")


def _secret_tests() -> str:
    return f"def check(candidate):\n    assert candidate() == {SECRET!r}\n"


def _sandbox_processes() -> list[str]:
    """Command lines of live candidates and bwraps on this machine (judges stay between jobs)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state not in ("Z", "X") and (b"harness.py\0candidate" in cmdline or b"bwrap" in cmdline):
            found.append(cmdline.replace(b"\0", b" ").decode(errors="replace")[:200])
    return found


@pytest.fixture(autouse=True)
def contained():
    """Every test here runs only in the real sandbox, and leaves no process behind."""
    assert sandbox.sandbox_argv(), "these attacks must never run outside the sandbox"
    yield
    deadline = time.monotonic() + 2.0  # SIGKILL delivery and reaping are asynchronous
    while _sandbox_processes() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _sandbox_processes() == []


def _judge(program: str, tests: str, entry_point: str | None = "f", timeout: float = TIMEOUT):
    start = time.monotonic()
    verdict = run_job(Job(textwrap.dedent(program), "", tests, entry_point), timeout=timeout)
    assert time.monotonic() - start < timeout + GRACE_S
    return verdict


# --- forge the pass signal ---------------------------------------------------------------------


@pytest.mark.parametrize("program", [
    # print anything that looks like a token or a verdict, then leave with status 0
    """
    import os
    for pid in os.listdir("/proc"):
        try:
            print(open(f"/proc/{pid}/cmdline").read())
        except OSError:
            pass
    for fd in range(1, 10):
        try:
            os.write(fd, b'{"ok": true}\\n{"reason": "pass", "detail": ""}\\nPASS\\n')
        except OSError:
            pass
    os._exit(0)
    """,
    # answer every request in advance with forged replies, then stop reading
    """
    import os
    forged = b'{"ok": null}\\n' * 1000 + b'{"reason": "pass"}\\n'
    for fd in range(3, 10):
        try:
            os.write(fd, forged)
        except OSError:
            pass
    def f(*args):
        raise SystemExit(0)
    """,
    # raise what a naive harness treats as success
    """
    def f(*args):
        raise StopIteration
    class Done(BaseException):
        pass
    Done.__name__ = "KeyboardInterrupt"
    """,
])
def test_the_pass_signal_cannot_be_forged(program):
    verdict = _judge(program, "def check(candidate):\n    assert candidate(3) == 9\n")
    assert not verdict.passed and verdict.reason in ("killed", "fail", "invalid", "error")


@pytest.mark.parametrize("paths", ["'/r1flow/harness.py'", "'/proc/self/cmdline'"])
def test_the_tests_and_expected_values_are_not_in_the_sandbox(paths):
    verdict = _judge(FIND_SECRET.replace("{paths}", paths), _secret_tests())
    assert verdict.reason == "fail", verdict


# --- fool the tests ----------------------------------------------------------------------------


@pytest.mark.parametrize("program", [
    """
    class Anything:
        def __eq__(self, other):
            return True
        __hash__ = object.__hash__
        def __bool__(self):
            return True
    def f(*args):
        return Anything()
    """,
    """
    class Nine(int):
        def __eq__(self, other):
            return True
        __hash__ = int.__hash__
    def f(*args):
        return Nine(0)
    """,
    """
    class Sneaky(list):
        def __eq__(self, other):
            return True
    def f(*args):
        return [Sneaky()]
    """,
    # the tests are not in its file, its memory or its folder: nothing to copy answers from
    """
    import gc, os, re
    found = []
    for obj in gc.get_objects():
        if isinstance(obj, str) and "assert" in obj:
            found += re.findall(r"== (\\d+)", obj)
    for root, _, files in os.walk("/tmp"):
        for name in files:
            found += re.findall(r"== (\\d+)", open(os.path.join(root, name)).read())
    def f(*args):
        return int(found[0]) if found else -1
    """,
])
def test_objects_that_equal_anything_do_not_pass(program):
    tests = ("def check(candidate):\n    assert candidate(3) == 9\n    assert candidate(4)\n"
             "    assert candidate(5) == [16]\n")
    verdict = _judge(program, tests)
    assert verdict.reason == "fail", verdict


def test_data_still_crosses_as_data():
    program = """
    def f(x):
        return (x, {frozenset({1, 2}): b"\\x00"}, {1.5, None}, 2 + 3j, [True, "é\\ud800"], float("inf"))
    class Pair:
        def __init__(self, a, b):
            self.a, self.b = a, b
    def longest(pairs):
        return max(p.b - p.a for p in pairs)
    """
    tests = textwrap.dedent("""
        import math
        def check(candidate):
            value = candidate([1, (2, 3)])
            assert value[:5] == ([1, (2, 3)], {frozenset({1, 2}): b"\\x00"}, {1.5, None}, 2 + 3j, [True, "é\\ud800"])
            assert math.isinf(value[5]) and type(value[0][1]) is tuple
            assert longest([Pair(1, 5), Pair(2, 3)]) == 4
            try:
                candidate()
            except TypeError:
                pass
            else:
                raise AssertionError("no TypeError")
    """)
    assert _judge(program, tests).passed


# --- read the trainer's secrets and files --------------------------------------------------------


@pytest.mark.parametrize("where", ["environment", "credentials file", "working directory"])
def test_the_trainers_secrets_and_files_are_out_of_reach(where, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    (tmp_path / ".aws").mkdir()
    (tmp_path / ".aws" / "credentials").write_text(f"[default]\naws_secret_access_key = {SECRET}\n")
    (tmp_path / "victim.txt").write_text(SECRET)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    paths = {"environment": "'/proc/1/environ'",
             "credentials file": repr(str(tmp_path / ".aws" / "credentials")),
             "working directory": repr(str(tmp_path / "victim.txt"))}[where]
    program = FIND_SECRET.replace("{paths}", paths)
    assert code([f"```python\n{program}\n```"], tests=[_secret_tests()],
                entry_point=["f"]) == [0.0]


# --- change the trainer, write outside its folder ----------------------------------------------


def test_files_outside_the_sandbox_cannot_be_changed(tmp_path, monkeypatch):
    victim = tmp_path / "code.py"
    victim.write_text("GOOD = True\n")
    monkeypatch.chdir(tmp_path)
    marker = f"r1flow-{uuid.uuid4().hex}"
    program = f"""
    import os
    wrote = []
    targets = [{str(victim)!r}, "/proc/1/cwd/code.py", "/proc/self/root{victim}",
               "/tmp/../{tmp_path.name}/code.py", {str(tmp_path / "new.py")!r},
               "/tmp/{marker}", "/dev/shm/{marker}", "/usr/{marker}", "/root/{marker}"]
    targets += [f"/proc/{{pid}}/cwd/code.py" for pid in os.listdir("/proc") if pid.isdigit()]
    for path in targets:
        try:
            with open(path, "w") as f:
                f.write("GOOD = False\\n")
            wrote.append(os.path.realpath(path))
        except OSError:
            pass
    try:
        os.remove({str(victim)!r})
        wrote.append("removed")
    except OSError:
        pass
    def f():
        return [path for path in wrote if not path.startswith("/tmp/")]
    """
    tests = "def check(candidate):\n    assert candidate() == [], candidate()\n"
    verdict = _judge(program, tests)
    assert verdict.passed, verdict  # it wrote only where it may: its own /tmp
    assert victim.read_text() == "GOOD = True\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["code.py"]
    assert not Path(f"/tmp/{marker}").exists() and not Path(f"/dev/shm/{marker}").exists()


def test_the_trainers_code_and_interpreter_cannot_be_changed():
    """The code the judge and later stages run: the harness, r1flow's modules, the interpreter's
    standard library and site-packages (a sitecustomize.py there would run in every process).
    The attempts are harmless when they succeed (append nothing, rename to itself, ...)."""
    import json as json_module

    harness_file = Path(harness.__file__).resolve()
    targets = [str(harness_file), "/r1flow/harness.py", str(Path(code_module.__file__).resolve()),
               json_module.__file__, str(Path(os.__file__).parent / "sitecustomize.py"),
               str(Path(sys.prefix) / "lib" / "python3.11" / "site-packages" / "sitecustomize.py")]
    before = {path: Path(path).read_bytes() if Path(path).exists() else None for path in targets}
    program = f"""
    import os
    changed = []
    for path in {targets!r}:
        # each attempt changes nothing when it succeeds: success alone is the breach
        for attempt in (lambda: open(path, "a").close(), lambda: os.rename(path, path),
                        lambda: os.chmod(path, os.stat(path).st_mode), lambda: os.utime(path)):
            try:
                attempt()
                changed.append(path)
            except OSError:
                pass
    def f():
        return changed
    """
    verdict = _judge(program, "def check(candidate):\n    assert candidate() == [], candidate()\n")
    assert verdict.passed, verdict
    assert {path: Path(path).read_bytes() if Path(path).exists() else None for path in targets} == before


def test_the_work_folder_is_capped_as_a_whole():
    program = """
    import os
    written = 0
    for i in range(10):
        try:
            with open(f"/tmp/big{i}", "wb") as f:
                for _ in range(15):
                    f.write(b"x" * (1 << 20))
                    written += 1 << 20
        except OSError:
            pass
    def f():
        return written
    """
    verdict = _judge(program, "def check(candidate):\n    assert candidate() <= 16 * 2**20\n")
    assert verdict.passed, verdict


# --- reach the network --------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["socket", "_socket", "udp"])
def test_the_network_is_out_of_reach(how):
    with socket.create_server(("127.0.0.1", 0)) as server, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        tcp_port, udp_port = server.getsockname()[1], udp.getsockname()[1]
        attempt = {
            "socket": f"import socket\nsocket.create_connection(('127.0.0.1', {tcp_port}), timeout=1)",
            "_socket": f"import _socket\ns = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)\n"
                       f"s.settimeout(1)\ns.connect(('127.0.0.1', {tcp_port}))",
            "udp": f"import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                   f"s.sendto(b'{SECRET}', ('127.0.0.1', {udp_port}))\n"
                   f"s.connect(('127.0.0.1', {udp_port}))\ns.send(b'x')\ns.settimeout(1)\ns.recv(1)",
        }[how]
        program = f"def f():\n    {textwrap.indent(attempt, '    ').strip()}\n    return 'connected'\n"
        verdict = _judge(program, "def check(candidate):\n    assert candidate() == 'connected'\n")
        assert verdict.reason == "fail", verdict
        server.settimeout(0.2)
        with pytest.raises(socket.timeout):
            server.accept()
        udp.settimeout(0.2)
        with pytest.raises(socket.timeout):
            udp.recv(100)


# --- attack the caller, outlive the call ----------------------------------------------------------


@pytest.mark.parametrize("program", [
    f"""
    import os, signal
    for pid in [os.getppid(), {os.getpid()}, {os.getppid()}, -1] + list(range(1, 50)):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    def f():
        return 1
    """,
    """
    import os, signal
    def f():
        for pid in os.listdir("/proc"):
            if pid.isdigit() and int(pid) != os.getpid():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except OSError:
                    pass
        os.killpg(0, signal.SIGKILL)
    """,
])
@pytest.mark.fault(fault="a program that kills its parent, its group, every PID it sees",
                   injected="os.kill / killpg with SIGKILL from inside the sandbox, beside two correct programs",
                   survives="the trainer process; both sibling programs score 1.0")
def test_the_caller_and_siblings_survive_a_killer(program):
    right = "```python\ndef f():\n    return 1\n```"
    tests = "def check(candidate):\n    assert candidate() == 1\n"
    scores = code([f"```python\n{textwrap.dedent(program)}\n```", right, right], tests=[tests] * 3,
                  entry_point=["f"] * 3, max_workers=3)
    assert scores[1:] == [1.0, 1.0]  # a sibling running at the same time is untouched
    os.kill(os.getpid(), 0)  # and this process (the trainer) is alive


HIJACK = """
import os
def hijack(path):
    target = os.open(path, os.O_RDWR)
    for fd in range(3, 20):
        if fd != target:
            try:
                os.dup2(target, fd)
            except OSError:
                pass
"""


@pytest.mark.parametrize("program", [
    # replace the reply channel by /dev/zero while loading, or by a FIFO nobody reads in a call
    HIJACK + "hijack('/dev/zero')\ndef f():\n    return 1\n",
    HIJACK + "os.mkfifo('/tmp/fifo')\ndef f():\n    hijack('/tmp/fifo')\n    return 1\n",
    # an endless reply without a newline, and one huge line
    """
    import os
    def f():
        while True:
            for fd in range(3, 10):
                try:
                    os.write(fd, b"x" * 65536)
                except OSError:
                    pass
    """,
    """
    def f():
        return "x" * (64 << 20)
    """,
])
def test_the_reply_channel_is_bounded_in_time_and_size(program):
    verdict = _judge(program, "def check(candidate):\n    assert candidate() == 1\n", timeout=2.0)
    assert verdict.reason in ("timeout", "invalid", "killed"), verdict


@pytest.mark.parametrize("program", [
    """
    import os
    def f():
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                import time
                time.sleep(600)
            os._exit(0)
        return "spawned"
    """,
    """
    import subprocess, sys
    def f():
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
        return "spawned"
    """,
    """
    import threading, time
    def f():
        threading.Thread(target=time.sleep, args=(600,), daemon=False).start()
        return "spawned"
    """,
    """
    import os
    def f():
        os.posix_spawn("/usr/bin/sleep", ["sleep", "600"], {})
        return "spawned"
    """,
])
def test_no_process_or_thread_outlives_the_call(program):
    verdict = _judge(program, "def check(candidate):\n    assert candidate() == 'spawned'\n")
    assert verdict.reason == "fail", verdict  # the contained fixture checks for leftovers


# --- exceed the memory limit ---------------------------------------------------------------------


@pytest.mark.parametrize("program, reasons", [
    ("def f():\n    return len(bytearray(3 << 30))\n", {"memory"}),
    ("def f():\n    blocks = []\n    while True:\n        blocks.append(bytearray(100 << 20))\n", {"memory"}),
    # three children of 600 MB each: no child can start
    ("import os\nfor _ in range(3):\n    if os.fork() == 0:\n        x = bytearray(600 << 20)\n"
     "        import time; time.sleep(5)\ndef f():\n    return 1\n", {"error"}),
])
def test_memory_is_capped_for_the_whole_tree(program, reasons):
    verdict = run_job(Job(program, "", "def check(candidate):\n    assert candidate() == 1\n", "f"),
                      timeout=TIMEOUT, memory_mb=512)
    assert verdict.reason in reasons, verdict


# --- code in a data field ------------------------------------------------------------------------


@pytest.mark.parametrize("entry_point", ["f); open('/tmp/x', 'w'); (f", "f\nimport os", "f.__class__", "λ(1)"])
def test_a_data_field_never_runs_as_code(entry_point, tmp_path):
    with pytest.raises(ValueError, match="not a Python identifier"):
        code_module.build_job("def f():\n    return 1\n", "def check(c):\n    pass\n", entry_point)
    assert code(["```python\ndef f():\n    return 1\n```"], tests=["def check(c):\n    pass\n"],
                entry_point=[entry_point]) == [0.0]


def test_names_the_tests_call_are_looked_up_never_evaluated():
    program = "def f():\n    return 1\n"
    tests = "assert f() == 1\n"
    assert _judge(program, tests, entry_point=None).passed
    channel_target = "__import__('os').system('touch /tmp/pwned')"
    verdict = run_job(Job(program, "", f"assert globals()[{channel_target!r}]() == 1\n", None))
    assert verdict.reason == "fail" and not Path("/tmp/pwned").exists()


# --- the sandbox itself --------------------------------------------------------------------------


def test_without_a_sandbox_the_reward_refuses_unless_told(monkeypatch, caplog):
    monkeypatch.setattr(sandbox, "bwrap_path", lambda: "/bin/false")
    sandbox._probe.cache_clear()
    try:
        with pytest.raises(sandbox.SandboxUnavailable, match="R1FLOW_CODE_SANDBOX=unsafe-no-isolation"):
            code(["def f():\n    return 1\n"], tests=["assert f() == 1\n"])
        monkeypatch.setenv(sandbox.MODE_ENV, sandbox.UNSAFE)
        monkeypatch.setattr(logs, "_WARNED", set())
        assert code(["```python\ndef f():\n    return 1\n```"], tests=["assert f() == 1\n"]) == [1.0]
        assert "WITHOUT isolation" in caplog.text
        monkeypatch.setenv(sandbox.MODE_ENV, "none")
        with pytest.raises(ValueError, match="R1FLOW_CODE_SANDBOX"):
            code(["def f():\n    return 1\n"], tests=["assert f() == 1\n"])
    finally:
        sandbox._probe.cache_clear()


def test_reasons_are_counted_for_the_metrics():
    code_module.outcomes()
    tests = "def check(candidate):\n    assert candidate() == 1\n"
    completions = ["```python\ndef f():\n    return 1\n```", "```python\ndef f():\n    return 2\n```",
                   "```python\nraise ValueError\n```", "```python\ndef f():\n    while True: pass\n```"]
    assert code(completions, tests=[tests] * 4, entry_point=["f"] * 4, timeout=1.0) == [1.0, 0.0, 0.0, 0.0]
    shares = code_module.code_outcome_shares(code_module.code_outcome_counts())
    assert shares == {"code/pass": 0.25, "code/fail": 0.25, "code/error": 0.25, "code/timeout": 0.25,
                      "code/memory": 0.0, "code/killed": 0.0, "code/invalid": 0.0, "code/sandbox": 0.0}
    assert code_module.outcomes() == {}


def test_seccomp_filter_is_well_formed():
    for machine in ("x86_64", "aarch64"):
        program = sandbox.seccomp_filter(machine)
        assert len(program) % 8 == 0 and 0 < len(program) // 8 < 64
    with pytest.raises(sandbox.SandboxUnavailable):
        sandbox.seccomp_filter("riscv64")


def test_codec_round_trips_data_and_refuses_the_rest():
    value = [None, True, 1, 2.5, "s", (1, [2]), {(1, 2): {3}}, frozenset({4}), b"\x01", 1j]
    assert harness.decode(harness.encode(value), None) == value
    with pytest.raises(TypeError):
        harness.encode(object())
    for bad in ({"x": 1}, {"s": [[1]]}, {"t": 1}, {"d": [[[1], 2]]}, {"b": "zz"}, {"c": ["a"]}):
        with pytest.raises(ValueError):
            harness.decode(bad, None)


# --- many in a row, and after the trainer -----------------------------------------------------------



@pytest.mark.fault(fault="1,000 hostile programs in a row through the code reward",
                   injected="10 kinds x 100: kill -1, fork bomb, 4 GiB allocation, write to /usr, connect, "
                            "an __eq__ that is always True, forged replies, recursion, C stack overflow, 9 MiB reply "
                            "(benchmarks/soak.py HOSTILE)",
                   survives="the trainer process; every score 0.0; no process left; no file outside the sandbox")
def test_a_thousand_hostile_programs_in_a_row(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    programs = [f"```python\n{HOSTILE[i % len(HOSTILE)]}\n```" for i in range(1000)]
    before = set(Path("/tmp").iterdir())
    scores = code(programs, tests=[SOAK_TESTS] * len(programs), entry_point=["f"] * len(programs))
    assert scores == [0.0] * len(programs)
    assert list(tmp_path.iterdir()) == [] and set(Path("/tmp").iterdir()) <= before
    os.kill(os.getpid(), 0)


def test_judges_end_with_the_trainer():
    trainer = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        import os, sys
        sys.path.insert(0, os.getcwd())
        from model.rewards.code import code
        assert code(["def f():\\n    return 1\\n"] * 4, tests=["assert f() == 1\\n"] * 4) == [1.0] * 4
        os._exit(0)  # no atexit: the judges see their input close
    """)], cwd=Path(__file__).resolve().parents[1], timeout=60)
    assert trainer.returncode == 0
    deadline = time.monotonic() + 5.0
    while _judges_of(trainer) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _judges_of(trainer) == []


def _judges_of(trainer: subprocess.CompletedProcess) -> list[int]:
    """Judges that are not this process's own (they were the trainer's, now orphaned)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes() if entry.name.isdigit() else b""
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) if cmdline else 0
        except OSError:
            continue
        if b"harness.py\0judge" in cmdline and parent != os.getpid():
            found.append(int(entry.name))
    return found


# --- the red-team round of 2026-12-01 ---------------------------------------------------------------

KERNEL = """
import ctypes, fcntl, os
libc = ctypes.CDLL(None, use_errno=True)
def attempt(action):
    try:
        return action()
    except OSError as error:
        return "refused: " + str(error)
def write_back(path):  # writes the value it read: a success is the breach, and harmless
    with open(path) as f:
        value = f.read()
    with open(path, "w") as f:
        f.write(value)
    return "done"
def syscall(*args):
    result = libc.syscall(*args)
    return "done" if result >= 0 else "refused: errno %d" % ctypes.get_errno()
"""


@pytest.mark.parametrize("action", [
    "write_back('/proc/sys/kernel/core_pattern')",  # a pipe helper here runs as host root
    "write_back('/proc/sys/kernel/printk_ratelimit')",
    "os.memfd_create('x') and 'done'",  # memory outside RLIMIT_AS
    "syscall(425, 8, (ctypes.c_uint32 * 30)())",  # io_uring_setup: kernel threads without clone
    "syscall(250, 11, ctypes.c_long(-3), ctypes.create_string_buffer(64), 64)",  # keyctl read
    "syscall(248, b'user', b'planted', b'x', 1, ctypes.c_long(-3))",  # add_key
    "syscall(101, 16, 1, 0, 0)",  # ptrace(PTRACE_ATTACH, 1)
    "syscall(272, 0x20000)",  # unshare(CLONE_NEWNS)
    "syscall(294, 0)",  # inotify_init1: instances count against the trainer uid's quota
    # locks and leases on a host file bound in: the trainer would wait for the deadline
    "(fcntl.flock(os.open('/r1flow/harness.py', os.O_RDONLY), fcntl.LOCK_EX), 'done')[1]",
    "(fcntl.fcntl(os.open('/r1flow/harness.py', os.O_RDONLY), 1024, fcntl.F_RDLCK), 'done')[1]",
    "(fcntl.lockf(os.open('/r1flow/harness.py', os.O_RDONLY), fcntl.LOCK_SH), 'done')[1]",
])
def test_kernel_interfaces_are_out_of_reach(action):
    program = KERNEL + f"def f():\n    return attempt(lambda: {action})\n"
    verdict = _judge(program, "def check(candidate):\n    assert candidate() == 'done', candidate()\n")
    assert verdict.reason == "fail" and "refused" in verdict.detail, verdict


def test_tests_that_print_or_read_cannot_confuse_the_judge():
    tests = ("def check(candidate):\n    print(candidate(3))\n    try:\n        input()\n"
             "    except EOFError:\n        pass\n    assert candidate(3) == 9\n")
    forged = '{"reason": "pass", "detail": ""}'
    programs = [f"def f(x):\n    return {forged!r}\n", "def f(x):\n    return x * x\n"] * 2
    scores = code([f"```python\n{p}\n```" for p in programs], tests=[tests] * 4, entry_point=["f"] * 4,
                  max_workers=1)
    assert scores == [0.0, 1.0, 0.0, 1.0]


@pytest.mark.parametrize("program, reason", [
    ("b'\\xff'.decode()\n", "error"),  # UnicodeDecodeError takes five arguments to rebuild
    ("import os\nos.write(4, b'{\"raised\": \"ExceptionGroup\", \"message\": \"x\"}\\n')\n"
     "import time\ntime.sleep(60)\n", "error"),
    ("def f(x):\n    return 1e400j\n", "fail"),  # a complex the judge cannot rebuild: not data
])
def test_exceptions_and_odd_replies_never_crash_the_judge(program, reason):
    verdict = _judge(program, "def check(candidate):\n    assert candidate(3) == 9\n")
    assert verdict.reason == reason, verdict


def test_the_judges_own_work_stops_at_the_deadline():
    # A reply of 300,000 ints that all hash to 0: building the set in the judge is quadratic.
    program = textwrap.dedent("""
        import os, time
        M = (1 << 61) - 1
        def f(x):
            line = '{"ok": {"s": [' + ",".join(str(M * (i + 1)) for i in range(300000)) + ']}}\\n'
            os.write(4, line.encode())
            time.sleep(100)
    """)
    start = time.monotonic()
    verdict = run_job(Job(program, "", "def check(candidate):\n    assert candidate(3) == 9\n", "f"), timeout=2.0)
    assert verdict.reason == "timeout" and time.monotonic() - start < 2.0 + 1.5, verdict


# --- the second red-team round ------------------------------------------------------------------------


def test_stop_iteration_cannot_end_the_tests_loop():
    program = "```python\ndef is_even(n):\n    raise StopIteration\n```"
    assert code([program], tests=["assert all(map(is_even, [2, 4, 6]))\n"]) == [0.0]


def test_a_kept_judge_holds_nothing_of_finished_jobs():
    program = "import os\nos.write(4, b'[' * (8 * 2**20 + 900000))\nos._exit(0)\n"
    for _ in range(12):
        assert run_job(Job(program, "", "def check(c):\n    assert c(3) == 9\n", "f")).reason == "invalid"
    judge = code_module._take_judge()
    try:
        with open(f"/proc/{judge.process.pid}/status") as f:
            resident_mb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024
        open_fds = len(os.listdir(f"/proc/{judge.process.pid}/fd"))
    finally:
        code_module._IDLE_JUDGES.put(judge)
    assert resident_mb < 60 and open_fds < 12, (resident_mb, open_fds)  # 12 jobs of 9 MB were read


def test_a_program_too_long_to_parse_scores_zero_unparsed(caplog, monkeypatch):
    monkeypatch.setattr(logs, "_WARNED", set())
    program = "def f(x):\n    return x * x\n" + "x = 1\n" * (code_module.MAX_PROGRAM_CHARS // 6)
    with caplog.at_level("WARNING", logger=code_module.__name__):
        assert code([f"```python\n{program}```"], tests=["def check(c):\n    assert c(3) == 9\n"],
                    entry_point=["f"], prompt=['def f(x):\n    """Square x."""\n']) == [0.0]
    assert "MAX_PROGRAM_CHARS" in caplog.text
