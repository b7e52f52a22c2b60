"""The code reward: run the completion's program against the row's tests in a sandboxed process.

The program is ``head + "\\n\\n" + tests + "\\n\\ncheck(entry_point)\\n"``, the way the harness of
each dataset runs it:

- ``tests`` is the row's test code under any name a dataset gives it (:data:`TEST_COLUMNS`:
  r1flow's ``tests``, HumanEval's ``test``, MBPP's ``test_list`` of asserts joined by newlines,
  after MBPP's ``test_imports`` / ``test_setup_code``). A reward call with none of these columns
  scores every row None and logs a warning once per process.
- ``check(entry_point)`` is appended only when the row has an ``entry_point`` (MBPP's bare
  asserts need none). An ``entry_point`` that is not a Python identifier (``f); import os; (f``)
  would run as code: such a row scores 0.0 and logs a warning once per value, so that one bad
  row neither runs nor stops a training run.
- ``head`` is the model's code, with the row's ``prompt`` when that is HumanEval-style code
  (Python that defines ``entry_point`` at top level): if the model's code defines
  ``entry_point`` at top level, head is the prompt's preamble (its imports, helpers such as
  HumanEval/10's ``is_palindrome`` and constants; every top-level statement but the stub of
  ``entry_point``) followed by the code, whose definitions therefore win; otherwise the code is a
  body continuing the prompt (HumanEval's original completion style) and head is
  ``prompt + code``. Any other prompt (a natural-language question) is not used.

The program runs as ``python -I`` in a fresh temporary directory, with stdin closed, a minimal
environment, in a new session so that the whole process group can be killed, under a wall-clock
timeout plus RLIMIT_CPU / RLIMIT_AS / RLIMIT_FSIZE, with sockets other than AF_UNIX refused
and, when running as root, a private network namespace (``unshare(CLONE_NEWNET)``; skipped
silently where the kernel or container refuses it).

The limits are set by a small runner inside the child rather than in ``preexec_fn``: rows run
from a thread pool, and ``preexec_fn`` is documented as unsafe when the parent has threads.
Setting soft = hard means user code cannot raise them again (unless it is root, which the
network namespace then still contains).

A program passes only if it exits 0 AND the runner got to print a random per-run token after
the tests returned, so ``sys.exit(0)`` / ``os._exit(0)`` before the tests does not pass.
This is a guard against accidents and reward hacking, not a security boundary against
hostile code: run untrusted workloads inside a container as well.
"""

from __future__ import annotations

import ast
import functools
import keyword
import logging
import math
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from data.completions import ANSWER_CLOSE, ANSWER_OPEN, Completion, last_block, parse_completion
from infra.logs import warn_once

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 5.0  # wall clock per program; HumanEval's canonical tests need < 1 s
DEFAULT_MEMORY_MB = 1024  # RLIMIT_AS; CPython itself needs ~30 MB
MAX_OUTPUT_BYTES = 16 * 1024 * 1024  # RLIMIT_FSIZE: a print loop dies instead of filling disk

# Test code by the column names of the datasets r1flow reads: r1flow, HumanEval, MBPP; the first
# non-empty one of a row is used. SETUP_COLUMNS are MBPP's code to run before its asserts.
TEST_COLUMNS = ("tests", "test", "test_list")
SETUP_COLUMNS = ("test_imports", "test_setup_code")
FENCE = "```"
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
    """Return the program in a completion (a string or chat messages), ``""`` when it has none.

    Only the summary (``data.completions.parse_completion``: the text after the last
    ``</think>``) is searched, so code tried and abandoned in the reasoning never runs, and a
    completion whose reasoning is unclosed (truncated) has no program. Preference: the last
    ```python block, else the last untagged ``` block, else the content of the last
    ``<answer>`` block, else the whole summary with its first line's indentation (a bare
    function body). Linear in the completion's length: no regex that can backtrack.
    """
    parsed = parse_completion(completion)
    if not parsed.closed:
        return ""
    blocks = fenced_blocks(parsed.summary)
    python = [body for tag, body in blocks if tag in _PYTHON_TAGS]
    untagged = [body for tag, body in blocks if not tag]
    if python or untagged:
        return (python or untagged)[-1]
    answer = last_block(parsed.summary, ANSWER_OPEN, ANSWER_CLOSE)
    return answer if answer is not None else _summary_as_written(parsed)


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """``(tag, body)`` of each closed ``` block of ``text``, in order; the tag lower-cased.

    Fences pair up in order of appearance (the first opens, the next closes); a block needs a
    newline after its tag (```` ```python ````), so inline ```` ```x``` ```` is none; an unclosed
    last fence opens no block. One ``str.split``: linear however many fences there are.
    """
    blocks = []
    for inside in text.split(FENCE)[1:-1:2]:  # odd pieces lie between an opening and a closing
        tag, newline, body = inside.partition("\n")
        if newline:
            blocks.append((tag.strip("` \t\r").lower(), body))  # "````python" fences too
    return blocks


def _summary_as_written(parsed: Completion) -> str:
    """The summary with the indentation of its first line, which ``parse_completion`` strips:
    a body continuing a HumanEval prompt starts with four spaces."""
    end = len(parsed.text.rstrip())  # the summary is a stripped suffix of the text
    start = end - len(parsed.summary)
    while start > 0 and parsed.text[start - 1] in " \t":
        start -= 1
    return parsed.text[start:end] + "\n" if parsed.summary else ""


def row_tests(row: Mapping[str, Any]) -> str | None:
    """The test code of a row: its first non-empty column of :data:`TEST_COLUMNS` (a list, as
    MBPP's ``test_list`` of asserts, is joined by newlines) after MBPP's setup code; None when
    the row has no tests (a math row)."""
    for name in TEST_COLUMNS:
        tests = _as_code(row.get(name))
        if tests.strip():
            setup = "\n".join(filter(None, (_as_code(row.get(column)) for column in SETUP_COLUMNS)))
            return setup + "\n" + tests if setup else tests
    return None


def _as_code(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return "\n".join(str(line) for line in value)
    return ""


def valid_entry_point(entry_point: Any) -> bool:
    """True for a name that ``check({entry_point})`` can call and nothing more: an identifier
    that is not a keyword. The value is pasted into the program, so anything else could run."""
    return (isinstance(entry_point, str) and entry_point.isidentifier()
            and not keyword.iskeyword(entry_point))


def _parse(source: str) -> ast.Module | None:
    """``ast.parse`` or None: a syntax error, a NUL byte, or nesting too deep for the parser."""
    try:
        with warnings.catch_warnings():  # invalid escapes ("\d") warn; the program still runs
            warnings.simplefilter("ignore")
            return ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def _binds(node: ast.stmt, name: str) -> bool:
    """A top-level statement that defines ``name`` (def, async def, class, plain assignment)."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return node.name == name
    targets = node.targets if isinstance(node, ast.Assign) else []
    return any(isinstance(t, ast.Name) and t.id == name for t in targets)


@functools.lru_cache(maxsize=4096)  # the same prompts come back every step and every sample
def prompt_preamble(prompt: str, entry_point: str) -> str | None:
    """The preamble of a HumanEval-style ``prompt``: its source without the stub of
    ``entry_point`` (imports, helper functions, constants and comments are kept, in order).

    None when ``prompt`` is not Python that defines ``entry_point`` at top level (a question
    in prose). A stub without a body (no docstring) is accepted. Newlines are normalised to
    ``\\n`` so that line numbers match the parser's.
    """
    source = prompt.replace("\r\n", "\n").replace("\r", "\n")
    tree = _parse(source) or _parse(source.rstrip("\n") + "\n    pass\n")
    stubs = [node for node in tree.body if _binds(node, entry_point)] if tree else []
    if not stubs:
        return None
    dropped: set[int] = set()  # 0-based line numbers of the stubs, decorators included
    for stub in stubs:
        first = min([stub.lineno] + [d.lineno for d in getattr(stub, "decorator_list", [])])
        dropped.update(range(first - 1, stub.end_lineno))
    lines = source.split("\n")
    return "\n".join(line for i, line in enumerate(lines) if i not in dropped)


def program_head(code_text: str, entry_point: str | None, prompt: Any = None) -> str:
    """The model's code with the part of ``prompt`` it needs (see the module docstring):
    preamble + code when the code defines ``entry_point`` at top level, prompt + code when it
    is a body continuing the prompt, the code alone when the prompt is not code."""
    if not entry_point or not isinstance(prompt, str):
        return code_text
    preamble = prompt_preamble(prompt, entry_point)
    if preamble is None:
        return code_text
    tree = _parse(code_text)
    if tree is not None and any(_binds(node, entry_point) for node in tree.body):
        return preamble.rstrip("\n") + "\n\n\n" + code_text
    return prompt + code_text


def build_program(code_text: str, tests: str, entry_point: str | None, prompt: Any = None) -> str:
    """The program that runs: :func:`program_head`, the tests and (if given)
    ``check(entry_point)``. ``entry_point`` must be valid (:func:`valid_entry_point`): raises
    ValueError otherwise, as it is pasted into the program."""
    if entry_point and not valid_entry_point(entry_point):
        raise ValueError(f"entry_point {entry_point!r:.80} is not a Python identifier")
    program = program_head(code_text, entry_point, prompt) + "\n\n" + tests
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


_CHECK_RE = re.compile(r"^def check\(", re.MULTILINE)


def _row_job(completion: Any, row: Mapping[str, Any], index: int) -> str | float | None:
    """The program to run for one row, or its score without running: None (no tests), 0.0
    (no program in the completion, or an ``entry_point`` that is not an identifier)."""
    tests = row_tests(row)
    if tests is None:
        return None
    entry_point = row.get("entry_point")
    if entry_point is not None and entry_point != "" and not valid_entry_point(entry_point):
        warn_once(logger, f"entry_point {entry_point!r}", "code reward: row %s (id %r) has entry_point "
                   "%.80r, not a Python identifier; scored 0.0 without running", index,
                   row.get("id"), entry_point)
        return 0.0
    if not entry_point and _CHECK_RE.search(tests):  # HumanEval-style tests without their entry point
        entry_point = _last_function(row.get("prompt"))
        if entry_point is None:
            warn_once(logger, "check without entry_point", "code reward: row %s (id %r) defines check() but "
                      "has no entry_point and no function in its prompt; scored 0.0 without running",
                      index, row.get("id"))
            return 0.0
    code_text = extract_code(completion)
    if not code_text.strip():
        return 0.0
    return build_program(code_text, tests, entry_point or None, row.get("prompt"))


def _last_function(prompt: Any) -> str | None:
    """The name of the last top-level function a code prompt defines (HumanEval's stub)."""
    tree = _parse(prompt) if isinstance(prompt, str) else None
    names = [node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))] if tree else []
    return names[-1] if names else None


def code(
    completions: Sequence[Any],
    tests: Sequence[Any] | None = None,
    entry_point: Sequence[str | None] | None = None,
    prompt: Sequence[Any] | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
    memory_mb: int = DEFAULT_MEMORY_MB,
    max_workers: int | None = None,
    **columns: Any,
) -> list[float | None]:
    """Score 1.0 for each completion whose program passes the row's tests, 0.0 if it fails.

    Args:
        completions: model outputs; the program is taken from them by :func:`extract_code`.
        tests: test code per row (HumanEval's defines ``check(candidate)``); ``test`` and
            ``test_list`` (with ``test_imports``, ``test_setup_code``) are read from
            ``columns`` too (:func:`row_tests`). Rows without tests get None.
        entry_point: per row, the function passed to ``check``; None runs the tests as they are.
        prompt: per row, the prompt; HumanEval's (code) gives the program its imports and
            helpers (:func:`program_head`), any other is not used.
        timeout: wall-clock seconds per program (RLIMIT_CPU is this plus one, rounded up).
        memory_mb: address-space limit per program.
        max_workers: programs run at once (default: CPU count; more would skew the timeouts).
        **columns: other dataset columns, aligned lists; those not named here are ignored.

    Returns:
        One score per completion: 1.0, 0.0, or None where the row has no tests. Without any
        test column every score is None and a warning naming the columns is logged once.
    """
    given = {"tests": tests, "entry_point": entry_point, "prompt": prompt, **columns}
    given = {name: values for name, values in given.items() if values is not None}
    scores: list[float | None] = [None] * len(completions)
    if not any(name in given for name in TEST_COLUMNS):
        warn_once(logger, "no test column", "code reward: no test column among %s (it reads %s); "
                   "every row scores None", sorted(given), ", ".join(TEST_COLUMNS))
        return scores
    jobs: dict[int, str] = {}
    for i, completion in enumerate(completions):
        job = _row_job(completion, {name: values[i] for name, values in given.items()}, i)
        if isinstance(job, str):
            jobs[i] = job
        else:
            scores[i] = job
    if jobs:
        workers = max_workers or os.cpu_count() or 1
        with ThreadPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
            passed = pool.map(lambda program: run_program(program, timeout, memory_mb), jobs.values())
            for i, ok in zip(jobs, passed):
                scores[i] = 1.0 if ok else 0.0
    return scores
