"""The code reward: judge the completion's program against the row's tests, in a sandbox.

A row is run the way its dataset's harness runs it, split in two so that the program never
sees the tests (model/rewards/harness.py):

- The **program** (the candidate's side, inside the sandbox of model/rewards/sandbox.py) is
  the model's code, with the row's ``prompt`` when that is HumanEval-style code (Python that
  defines ``entry_point`` at top level): if the code defines ``entry_point`` at top level, the
  prompt's preamble (its imports, helpers such as HumanEval/10's ``is_palindrome`` and
  constants; every top-level statement but the stub of ``entry_point``) comes first and the
  code's definitions win; otherwise the code is a body continuing the prompt (HumanEval's
  original completion style) and the program is ``prompt + code``. Any other prompt (a
  natural-language question) is not used.
- The **tests** (the judge's side, outside): the same preamble, then the row's test code under
  any name a dataset gives it (:data:`TEST_COLUMNS`: r1flow's ``tests``, HumanEval's ``test``,
  MBPP's ``test_list`` of asserts joined by newlines, after MBPP's ``test_imports`` /
  ``test_setup_code``), then ``check(entry_point)`` when the row has an ``entry_point``. The
  program's functions are called from there with plain data; only the judge decides the
  score. A reward call with no test column scores every row None and logs a warning once per
  process.

An ``entry_point`` must be a Python identifier: any other value (``f); import os; (f``) scores
0.0 and logs a warning once per value, so that one bad row neither runs nor stops training.
A HumanEval-style test (``def check(``) without ``entry_point`` checks the prompt's last
function.

Each verdict has a reason (harness.REASONS: pass, fail, error, timeout, memory, killed,
invalid, sandbox); :func:`outcomes` counts them for the trainer's metrics. Nothing a program
does raises in the caller: a crashing or hostile program scores 0.0.
"""

from __future__ import annotations

import ast
import atexit
import functools
import json
import keyword
import logging
import math
import os
import queue
import re
import select
import subprocess
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from data.completions import ANSWER_CLOSE, ANSWER_OPEN, Completion, last_block, parse_completion
from infra.logs import warn_once
from model.rewards import harness, sandbox

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 5.0  # wall clock per program; HumanEval's canonical tests need < 1 s
DEFAULT_MEMORY_MB = 1024  # RLIMIT_AS; CPython itself needs ~30 MB
MAX_OUTPUT_BYTES = 16 * 1024 * 1024  # RLIMIT_FSIZE; the sandbox's whole tmpfs is as large
GRACE_S = 5.0  # past a job's timeout before its judge is killed (the judge times out first)
MAX_VERDICT_BYTES = 4096
# Longest program (characters) the caller parses and sends: ast.parse of 1 MiB of code takes
# seconds and ~600 MB, outside every limit of the sandbox. 32k tokens of reasoning and code
# are about 128k characters.
MAX_PROGRAM_CHARS = 256 * 1024

# Test code by the column names of the datasets r1flow reads: r1flow, HumanEval, MBPP; the first
# non-empty one of a row is used. SETUP_COLUMNS are MBPP's code to run before its asserts.
TEST_COLUMNS = ("tests", "test", "test_list")
SETUP_COLUMNS = ("test_imports", "test_setup_code")
FENCE = "```"
_PYTHON_TAGS = {"python", "py", "python3"}

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


@dataclass(frozen=True)
class Job:
    """What the judge needs for one row: the candidate's ``program``, the judge's ``preamble``
    and ``tests``, and the function ``check`` is called with (None: the tests call by name)."""

    program: str
    preamble: str
    tests: str
    entry_point: str | None


def build_job(code_text: str, tests: str, entry_point: str | None, prompt: Any = None) -> Job:
    """The :class:`Job` of one row (module docstring). ``entry_point`` must be valid
    (:func:`valid_entry_point`): raises ValueError otherwise, as the tests call it by name."""
    if entry_point and not valid_entry_point(entry_point):
        raise ValueError(f"entry_point {entry_point!r:.80} is not a Python identifier")
    preamble = prompt_preamble(prompt, entry_point) if entry_point and isinstance(prompt, str) else None
    return Job(program_head(code_text, entry_point, prompt), preamble or "", tests, entry_point or None)


@dataclass(frozen=True)
class Verdict:
    """The judge's decision on one program: ``reason`` (harness.REASONS) and a short detail."""

    reason: str
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.reason == "pass"


def run_job(job: Job, timeout: float = DEFAULT_TIMEOUT_S, memory_mb: int = DEFAULT_MEMORY_MB) -> Verdict:
    """Judge one job: the judge (model/rewards/harness.py) runs as its own process with an
    empty environment and starts the program in the sandbox (:func:`sandbox.sandbox_argv`).

    ``timeout`` is the wall-clock budget of the whole job (starting, loading, every test);
    the program also gets RLIMIT_CPU = ``timeout`` + 1 s, RLIMIT_AS = ``memory_mb`` and
    RLIMIT_FSIZE = :data:`MAX_OUTPUT_BYTES`. A judge that has not answered :data:`GRACE_S`
    after the budget is killed with its process group, and with it the sandbox. Reads at most
    :data:`MAX_VERDICT_BYTES` of the judge's answer. Judges are reused between jobs.

    Raises:
        SandboxUnavailable: no sandbox can start and the unsafe mode is not set.
    """
    try:
        names = sorted(_free_names(job.preamble + "\n" + job.tests))
    except (SyntaxError, ValueError, RecursionError, MemoryError) as error:
        return Verdict("fail", f"the row's tests do not parse: {error}"[:200])
    request = {"program": job.program, "preamble": job.preamble, "tests": job.tests,
               "entry_point": job.entry_point, "names": names, "timeout": timeout, "harness": sandbox.HARNESS,
               "python": sandbox.python_executable(), "sandbox": sandbox.sandbox_argv(),
               "seccomp": sandbox.seccomp_filter().hex(),
               "limits": [math.ceil(timeout) + 1, memory_mb * 1024 * 1024, MAX_OUTPUT_BYTES]}
    judge = _take_judge()
    try:
        verdict = judge.run(json.dumps(request).encode() + b"\n", timeout + GRACE_S)
    except TimeoutError:
        judge.kill()  # the judge and the sandbox it started
        return Verdict("timeout", f"the judge ran past {timeout + GRACE_S:.0f} s")
    except (OSError, ValueError, KeyError, TypeError):
        judge.kill()
        return Verdict("sandbox", f"the judge exited {judge.process.poll()} without a verdict")
    _IDLE_JUDGES.put(judge)
    return verdict


class _Judge:
    """A judge process (harness.py ``judge``) kept between jobs: its start-up and imports cost
    about 40 ms, twice the sandbox's. Empty environment, own session, no stderr."""

    def __init__(self):
        self.process = subprocess.Popen([sys.executable, "-I", "-S", sandbox.HARNESS, "judge"],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, env={}, cwd="/", start_new_session=True)
        self._buffer = b""
        self.owner = os.getpid()  # a forked child must not share its pipes

    def run(self, request: bytes, timeout: float) -> Verdict:
        """Send one job, read its verdict line within ``timeout`` s (TimeoutError past it)."""
        deadline = time.monotonic() + timeout
        self.process.stdin.write(request)
        self.process.stdin.flush()
        out = self.process.stdout.fileno()
        while b"\n" not in self._buffer and len(self._buffer) < MAX_VERDICT_BYTES:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([out], [], [], left)[0]:
                raise TimeoutError
            chunk = os.read(out, MAX_VERDICT_BYTES)
            if not chunk:
                raise OSError("the judge exited")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        verdict = json.loads(line)
        return Verdict(str(verdict["reason"]), str(verdict.get("detail", "")))

    def kill(self) -> None:
        harness.end_process(self.process, group=True)  # the judge and the sandbox it started


_IDLE_JUDGES: queue.SimpleQueue[_Judge] = queue.SimpleQueue()


def _take_judge() -> _Judge:
    """An idle judge that is still alive, else a new one."""
    while True:
        try:
            judge = _IDLE_JUDGES.get_nowait()
        except queue.Empty:
            return _Judge()
        if judge.owner == os.getpid() and judge.process.poll() is None:
            return judge
        if judge.owner == os.getpid():
            judge.kill()


@atexit.register
def _stop_judges() -> None:
    while not _IDLE_JUDGES.empty():
        _IDLE_JUDGES.get_nowait().kill()


@functools.lru_cache(maxsize=4096)  # the same tests come back every step and every sample
def _free_names(source: str) -> frozenset[str]:
    return frozenset(harness.free_names(source))


_OUTCOMES: Counter[str] = Counter()
_OUTCOMES_LOCK = threading.Lock()


def outcomes(reset: bool = True) -> dict[str, int]:
    """How many programs ended with each reason since the last reset, in this process."""
    with _OUTCOMES_LOCK:
        counts = dict(_OUTCOMES)
        if reset:
            _OUTCOMES.clear()
    return counts


def code_outcome_counts() -> dict[str, float]:
    """:func:`outcomes` (reset) with every reason of harness.REASONS as a key, for an
    all-reduce that needs the same keys on every rank."""
    counts = outcomes()
    return {reason: float(counts.get(reason, 0)) for reason in harness.REASONS}


def code_outcome_shares(counts: dict[str, float]) -> dict[str, float]:
    """``code/<reason>``: each reason's share of the programs judged (metrics; empty if none)."""
    total = sum(counts.values())
    return {f"code/{reason}": n / total for reason, n in counts.items()} if total else {}


def _judged(job: Job, timeout: float, memory_mb: int) -> float:
    verdict = run_job(job, timeout, memory_mb)
    with _OUTCOMES_LOCK:
        _OUTCOMES[verdict.reason] += 1
    if verdict.reason == "sandbox":
        warn_once(logger, "sandbox failed", "code reward: a program could not be judged (%s); "
                  "scored 0.0", verdict.detail)
    elif not verdict.passed:
        logger.debug("program scored 0.0: %s %r", verdict.reason, verdict.detail[:200])
    return 1.0 if verdict.passed else 0.0


_CHECK_RE = re.compile(r"^def check\(", re.MULTILINE)


def _row_job(completion: Any, row: Mapping[str, Any], index: int) -> Job | float | None:
    """The job to judge for one row, or its score without running: None (no tests), 0.0
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
    if len(code_text) > MAX_PROGRAM_CHARS:
        warn_once(logger, "program too long", "code reward: a program of %d characters (over "
                  "MAX_PROGRAM_CHARS = %d) scored 0.0 without running", len(code_text), MAX_PROGRAM_CHARS)
        return 0.0
    return build_job(code_text, tests, entry_point or None, row.get("prompt"))


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
        timeout: wall-clock seconds per program, tests included (:func:`run_job`).
        memory_mb: address-space limit of the program.
        max_workers: programs run at once (default: CPU count; more would skew the timeouts).
        **columns: other dataset columns, aligned lists; those not named here are ignored.

    Returns:
        One score per completion: 1.0, 0.0, or None where the row has no tests. Without any
        test column every score is None and a warning naming the columns is logged once.

    Raises:
        SandboxUnavailable: rows to run, and no sandbox here (model/rewards/sandbox.py).
    """
    given = {"tests": tests, "entry_point": entry_point, "prompt": prompt, **columns}
    given = {name: values for name, values in given.items() if values is not None}
    scores: list[float | None] = [None] * len(completions)
    if not any(name in given for name in TEST_COLUMNS):
        warn_once(logger, "no test column", "code reward: no test column among %s (it reads %s); "
                   "every row scores None", sorted(given), ", ".join(TEST_COLUMNS))
        return scores
    jobs: dict[int, Job] = {}
    for i, completion in enumerate(completions):
        job = _row_job(completion, {name: values[i] for name, values in given.items()}, i)
        if isinstance(job, Job):
            jobs[i] = job
        else:
            scores[i] = job
    if jobs:
        sandbox.sandbox_argv()  # SandboxUnavailable before any work, with the reason
        workers = max_workers or os.cpu_count() or 1
        with ThreadPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
            judged = pool.map(lambda job: _judged(job, timeout, memory_mb), jobs.values())
            for i, score in zip(jobs, judged):
                scores[i] = score
    return scores
