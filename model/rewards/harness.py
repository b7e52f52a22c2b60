"""Judge a model-written program against tests it never sees. Standard library only.

The code reward (model/rewards/code.py) runs this file as a script, once per program, in two
roles:

- ``judge``, outside the sandbox: reads jobs from stdin (one JSON object per line: ``program``,
  ``preamble``, ``tests``, ``entry_point``, ``names``, ``timeout``, ``limits``, ``sandbox``,
  ``seccomp``, ``python``, ``harness``),
  starts the ``candidate`` role in the sandbox, runs the row's preamble and tests in its own
  namespace and prints one verdict line per job, ``{"reason": ..., "detail": ...}``.
- ``candidate``, inside the sandbox: sets its resource limits, executes the program, then
  answers calls, one JSON line per request on stdin and one per reply on stdout.

In the judge every name the tests use and do not define (``entry_point``, MBPP's function
names, classes such as MBPP's ``Pair``) is a :class:`Remote`: calling it sends the arguments to
the candidate and returns its reply. Values cross as data (:func:`encode`, :func:`decode`):
``None``, bool, int, float, str, bytes, complex, list, tuple, dict, set, frozenset, nested,
with exact types only. Any other value the program returns (an object whose ``__eq__`` is
always True, a subclass of int) stays in the candidate and reaches the judge as an opaque
:class:`Remote` reference, equal only to itself, so it never passes an ``==`` test. The tests,
expected values and the verdict never enter the sandbox: nothing the program can print, read
or forge decides its score.

Verdict reasons: ``pass``; ``fail`` (a test raised, AssertionError included); ``error`` (the
program raised while loading); ``timeout`` (past the job's wall-clock ``timeout``); ``memory``
(the program raised MemoryError); ``killed`` (the candidate exited or died mid-job);
``invalid`` (a reply that is not protocol data, over :data:`MAX_REPLY_BYTES`, or that the judge
failed on); ``sandbox``
(the candidate could not start). Only ``pass`` scores 1.0. Once the channel is broken (timeout,
killed, invalid) every later call raises :class:`Broken`, a BaseException that ``except
Exception`` in test code cannot swallow, and the verdict is the break whatever the tests did.

Bounds: the judge reads at most :data:`MAX_REPLY_BYTES` per reply through select with the
job's deadline, writes requests without blocking past it, decodes at most the interpreter's
recursion depth, stops its own work at the deadline (SIGALRM: a reply that is slow to decode,
tests that loop), and kills the candidate (the whole sandbox) before it writes its verdict.
Its protocol uses private copies of its stdin and stdout; tests that print or read get
/dev/null.
"""

from __future__ import annotations

import builtins
import gc
import json
import os
import resource
import select
import signal
import subprocess
import sys
import time

MAX_REPLY_BYTES = 8 * 1024 * 1024  # one reply; HumanEval's largest is a few KB
MAX_DETAIL_CHARS = 300  # of an exception message in a reply or verdict
REASONS = ("pass", "fail", "error", "timeout", "memory", "killed", "invalid", "sandbox")
_TAGS = {"t": tuple, "s": set, "f": frozenset}
# Raised by the program, these would end a loop of the tests (map, filter, all) as if it were
# done; they arrive as RuntimeError, as PEP 479 does for generators.
_CONTROL_FLOW = ("StopIteration", "StopAsyncIteration")


class Broken(BaseException):
    """The candidate can no longer answer (``reason``: timeout, killed or invalid)."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


class Remote:
    """A name or an object that lives in the candidate: calling it is a request; it equals
    only itself (identity ``==`` and hash) and has no truth value, so it never stands in for
    expected data; arithmetic and ordering raise TypeError."""

    __slots__ = ("_channel", "_target")

    def __init__(self, channel: "Channel", target: str | int):
        self._channel, self._target = channel, target

    def __call__(self, *args, **kwargs):
        return self._channel.call(self._target, args, kwargs)

    def __bool__(self) -> bool:  # else any object would pass `assert candidate(x)`
        raise TypeError(f"{self!r} is not data and has no truth value")

    def __repr__(self) -> str:
        return f"<remote {self._target!r}>"


def encode(value, refs: list | None = None):
    """A JSON-able form of ``value`` when it is plain data (exact builtin types, nested), else
    (``refs`` given) an index into ``refs`` as ``{"r": i}``. Raises TypeError for other values
    without ``refs``, RecursionError for nesting past the recursion limit."""
    kind = type(value)
    if value is None or kind in (bool, int, float, str):
        return value
    if kind is list:
        return [encode(item, refs) for item in value]
    if kind is tuple:
        return {"t": [encode(item, refs) for item in value]}
    if kind in (set, frozenset):
        return {"s" if kind is set else "f": [encode(item, refs) for item in value]}
    if kind is dict:
        return {"d": [[encode(k, refs), encode(v, refs)] for k, v in value.items()]}
    if kind is bytes:
        return {"b": value.hex()}
    if kind is complex:
        return {"c": [value.real, value.imag]}
    if kind is Remote:
        return {"r": value._target}
    if refs is None:
        raise TypeError(f"a {kind.__name__} cannot be sent to the candidate as data")
    refs.append(value)
    return {"r": len(refs) - 1}


def decode(data, resolve):
    """The value :func:`encode` made; ``resolve(target)`` gives the object for ``{"r": …}``.
    Raises ValueError for anything else (an unknown tag, a list as a set element)."""
    if data is None or type(data) in (bool, int, float, str):
        return data
    if type(data) is list:
        return [decode(item, resolve) for item in data]
    if type(data) is not dict or len(data) != 1:
        raise ValueError("not an encoded value")
    (tag, body), = data.items()
    try:
        if tag in _TAGS and type(body) is list:
            return _TAGS[tag](decode(item, resolve) for item in body)
        if tag == "d" and type(body) is list:
            return {decode(k, resolve): decode(v, resolve) for k, v in body}
        if tag == "b" and type(body) is str:
            return bytes.fromhex(body)
        if tag == "c" and type(body) is list and all(type(x) in (int, float) for x in body):
            return complex(*body)
        if tag == "r" and type(body) in (int, str):
            return resolve(body)
    except (TypeError, ValueError, OverflowError) as error:  # unhashable keys, bad pairs or hex, 1e400
        raise ValueError(f"bad {tag!r} value: {error}") from None
    raise ValueError(f"unknown tag {tag!r}")


def _message(error: BaseException) -> str:
    try:
        return f"{type(error).__name__}: {error}"[:MAX_DETAIL_CHARS]
    except Exception:  # a hostile __str__
        return type(error).__name__[:MAX_DETAIL_CHARS]


# --------------------------------------------------------------------------- candidate role

def candidate(cpu_s: int, memory_bytes: int, file_bytes: int) -> None:
    """Serve one program: limits, then ``load`` and ``call`` requests until stdin closes.

    Limits are soft = hard, so the program cannot raise them again: RLIMIT_CPU (s), RLIMIT_AS
    and RLIMIT_FSIZE (bytes), no core files, 64 open files. The program's own stdin, stdout and
    stderr are /dev/null; the protocol keeps private copies of fds 0 and 1.
    """
    requests = os.fdopen(os.dup(0), "rb")
    replies = os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    for limit, value in ((resource.RLIMIT_CPU, cpu_s), (resource.RLIMIT_AS, memory_bytes),
                         (resource.RLIMIT_FSIZE, file_bytes), (resource.RLIMIT_CORE, 0),
                         (resource.RLIMIT_NOFILE, 64)):
        resource.setrlimit(limit, (value, value))
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    refs: list = []

    def resolve(target):
        return refs[target] if type(target) is int else namespace[target]

    for line in requests:
        try:
            request = json.loads(line)
            if request["op"] == "load":
                exec(compile(request["program"], "program.py", "exec", dont_inherit=True), namespace)
                value = None
            else:
                try:
                    function = resolve(request["target"])
                except (KeyError, IndexError):
                    raise NameError(f"name {request['target']!r} is not defined") from None
                args = decode(request["args"], resolve)
                kwargs = decode(request["kwargs"], resolve)
                value = function(*args, **kwargs)
            try:
                reply = json.dumps({"ok": encode(value, refs)}, allow_nan=True)
            except (ValueError, RecursionError):  # an int past str()'s digit limit, deep nesting
                refs.append(value)
                reply = json.dumps({"ok": {"r": len(refs) - 1}})
        except BaseException as error:  # noqa: BLE001 - SystemExit too: the judge decides
            reply = json.dumps({"raised": type(error).__name__[:80], "message": _message(error)})
        _write_all(replies, reply.encode() + b"\n")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


# --------------------------------------------------------------------------- judge role

class Channel:
    """The judge's end of one candidate: requests out, bounded replies in, one deadline."""

    def __init__(self, process: subprocess.Popen, deadline: float):
        self.process, self.deadline = process, deadline
        self.broken: Broken | None = None
        self.memory = False
        self.live = True  # the job is running: the deadline's SIGALRM may interrupt it
        self._buffer = b""
        os.set_blocking(process.stdin.fileno(), False)

    def request(self, message: dict) -> dict:
        """Send one request and return its reply; raises :class:`Broken`."""
        if self.broken:
            raise self.broken
        try:
            self._send(json.dumps(message, allow_nan=True).encode() + b"\n")
            line = self._receive()
            reply = json.loads(line)
            if type(reply) is not dict or not ({"ok"} == reply.keys() or {"raised", "message"} == reply.keys()):
                raise ValueError("not a reply")
            return reply
        except Broken as error:
            self.broken = error
        except (ValueError, RecursionError, UnicodeDecodeError) as error:
            self.broken = Broken("invalid", _message(error))
        raise self.broken

    def call(self, target, args: tuple, kwargs: dict):
        """Call ``target`` in the candidate; its value, or its exception raised here as the
        builtin exception of that name (RuntimeError for others, MemoryError noted)."""
        reply = self.request({"op": "call", "target": target, "args": encode(list(args)),
                              "kwargs": encode(kwargs)})
        if "ok" in reply:
            try:
                return decode(reply["ok"], lambda t: Remote(self, t))
            except (ValueError, RecursionError) as error:
                self.broken = Broken("invalid", _message(error))
                raise self.broken from None
        raise self.exception(reply)

    def exception(self, reply: dict) -> BaseException:
        name, message = str(reply["raised"]), str(reply["message"])[:MAX_DETAIL_CHARS]
        self.memory |= name == "MemoryError"
        kind = getattr(builtins, name, None)
        if not (isinstance(kind, type) and issubclass(kind, Exception)) or name in _CONTROL_FLOW:
            kind = RuntimeError
        try:
            return kind(f"(in the program) {message}")
        except Exception:  # UnicodeDecodeError, ExceptionGroup, ... take other arguments
            return RuntimeError(f"(in the program) {name[:80]}: {message}")

    def time_out(self) -> None:
        """At the job's deadline (SIGALRM): the judge's own work (decoding a reply, running
        the tests) stops too, not only its waits on the candidate. The channel stays broken,
        so test code that swallows the exception still cannot pass. Nothing once the job
        is over (a signal handled late)."""
        if self.live:
            self.broken = self.broken or Broken("timeout", "the job's time ran out in the judge")
            raise self.broken

    def close(self) -> None:
        """End the job: no more SIGALRM, the candidate killed (bwrap's death ends its PID
        namespace: the whole tree) and reaped, the pipes and the buffer released, so that a
        kept judge holds nothing of a finished job."""
        self.live = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        end_process(self.process)
        self._buffer, self.broken = b"", None

    def _remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise Broken("timeout")
        return left

    def _send(self, data: bytes) -> None:
        fd, view = self.process.stdin.fileno(), memoryview(data)
        while view:
            select.select([], [fd], [], self._remaining())
            try:
                view = view[os.write(fd, view):]
            except BlockingIOError:
                continue
            except (BrokenPipeError, OSError):
                raise Broken("killed", "the candidate closed its input") from None

    def _receive(self) -> bytes:
        fd = self.process.stdout.fileno()
        while b"\n" not in self._buffer:
            if len(self._buffer) > MAX_REPLY_BYTES:
                raise Broken("invalid", f"a reply over {MAX_REPLY_BYTES} bytes")
            ready, _, _ = select.select([fd], [], [], self._remaining())
            if ready:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    raise Broken("killed", f"the candidate exited ({self._exit_status()})")
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        if len(line) > MAX_REPLY_BYTES:
            raise Broken("invalid", f"a reply over {MAX_REPLY_BYTES} bytes")
        return line

    def _exit_status(self) -> str:
        try:
            code = self.process.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            return "output closed"
        return f"signal {-code}" if code < 0 else f"exit code {code}"


def end_process(process: subprocess.Popen, group: bool = False) -> None:
    """SIGKILL ``process`` (its whole process group if ``group``), reap it, close its pipes."""
    try:
        if group:
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()
    for stream in (process.stdin, process.stdout):
        try:
            if stream is not None:
                stream.close()
        except OSError:
            pass


def free_names(source: str) -> set[str]:
    """Names the code reads (``ast.Name`` in load context) that are not builtins: those the
    tests may need from the program. A shadowing local is harmless: locals win. Raises
    SyntaxError for code that does not parse."""
    import ast  # here, not at the top: the judge gets the names in its job (startup time)

    tree = ast.parse(source)
    return {node.id for node in ast.walk(tree)
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and not hasattr(builtins, node.id)}


def run_tests(channel: Channel, preamble: str, tests: str, entry_point: str | None,
              names: list[str]) -> tuple[str, str]:
    """Run ``preamble`` + ``tests`` (+ ``check(entry_point)``) with ``names`` (:func:`free_names`)
    remote; the reason and a detail (see the module docstring)."""
    namespace = {"__name__": "__judge__", "__builtins__": builtins}
    namespace.update({name: Remote(channel, name) for name in names})
    try:
        exec(compile(preamble, "preamble.py", "exec", dont_inherit=True), namespace)
        exec(compile(tests, "tests.py", "exec", dont_inherit=True), namespace)
        if entry_point:
            namespace["check"](Remote(channel, entry_point))
    except Broken as error:
        channel.broken = channel.broken or error
    except BaseException as error:  # noqa: BLE001 - any failure of the tests is a fail
        if channel.broken is None:
            return ("memory" if channel.memory else "fail"), _message(error)
    if channel.broken is not None:
        return channel.broken.reason, channel.broken.detail
    return ("memory", "") if channel.memory else ("pass", "")


def judge(job: dict) -> dict:
    """Start the candidate, load the program, run the tests; the verdict (module docstring)."""
    deadline = time.monotonic() + float(job["timeout"])
    limits = [str(int(v)) for v in job["limits"]]
    command = [sys.executable, "-I", "-S", job["harness"], "candidate", *limits]
    pass_fds: tuple[int, ...] = ()
    argv = list(job["sandbox"])
    if argv:
        read_end, write_end = os.pipe()  # bwrap reads the seccomp program from this fd
        os.write(write_end, bytes.fromhex(job["seccomp"]))
        os.close(write_end)
        argv[argv.index("SECCOMP_FD")] = str(read_end)
        pass_fds = (read_end,)
        command = argv + [job["python"], "-I", "-S", "/r1flow/harness.py", "candidate", *limits]
    try:
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL, pass_fds=pass_fds, env={}, cwd="/")
    except OSError as error:
        return {"reason": "sandbox", "detail": _message(error)}
    finally:
        for fd in pass_fds:
            os.close(fd)
    channel = _CURRENT[0] = Channel(process, deadline)
    signal.signal(signal.SIGALRM, lambda signum, frame: channel.time_out())
    try:
        signal.setitimer(signal.ITIMER_REAL, max(0.001, deadline - time.monotonic()))
        reply = channel.request({"op": "load", "program": job["program"]})
        if "raised" in reply:
            error = channel.exception(reply)
            reason = "memory" if channel.memory else "error"
            return {"reason": reason, "detail": str(error)[:MAX_DETAIL_CHARS]}
        reason, detail = run_tests(channel, job["preamble"], job["tests"], job["entry_point"], job["names"])
    except Broken as error:
        reason, detail = error.reason, error.detail
    except Exception as error:  # noqa: BLE001 - a failure of the judge itself: never a pass
        reason, detail = "invalid", f"judge: {_message(error)}"
    finally:
        channel.close()
    return {"reason": reason, "detail": detail[:MAX_DETAIL_CHARS]}


_CURRENT: list[Channel | None] = [None]  # the job running, for _judge_main to end if need be



def _judge_main() -> None:
    """One job per line on stdin, one verdict per line on stdout, until stdin closes (the
    caller keeps the process for its next job). ``random`` is reseeded before each job: tests
    that draw inputs from it (HumanEval/38, /50) then draw the same ones in every run."""
    import random

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    jobs, verdicts = os.fdopen(os.dup(0), "rb"), os.dup(1)  # private: tests that print or read
    null = os.open(os.devnull, os.O_RDWR)  # input() get /dev/null, never a job or a verdict
    for fd in (0, 1):
        os.dup2(null, fd)
    for line in jobs:
        random.seed(0)
        try:
            verdict = judge(json.loads(line))
        except (SyntaxError, ValueError, RecursionError, MemoryError) as error:  # tests that do not parse
            verdict = {"reason": "fail", "detail": _message(error)}
        except Broken as error:  # the deadline's signal, handled as judge() ended its job
            verdict = {"reason": error.reason, "detail": error.detail}
        if _CURRENT[0] is not None and _CURRENT[0].live:
            _CURRENT[0].close()
        _CURRENT[0] = None
        gc.collect()  # a Broken's traceback holds the job's frames in a cycle
        _write_all(verdicts, json.dumps(verdict).encode() + b"\n")


if __name__ == "__main__":
    if sys.argv[1:2] == ["candidate"]:
        candidate(*map(int, sys.argv[2:5]))
    elif sys.argv[1:2] == ["judge"]:
        _judge_main()
    else:
        sys.exit("usage: harness.py judge < jobs.jsonl | harness.py candidate CPU_S AS_BYTES FSIZE_BYTES")
