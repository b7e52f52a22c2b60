"""When two final answers are the same answer: the one equivalence of accuracy, rejection
sampling and cons@k votes.

:func:`equivalent` decides in three steps, cheapest first:

1. data/answers.py's rules (both sides normalised alike; plain numbers compared exactly). Most
   answers of GSM8K, AIME and the synthetic tasks are decided here, in microseconds.
2. Otherwise math-verify (the checker of open-r1 and TRL's examples) parses both as LaTeX. Two
   numbers are compared by this module, not by math-verify's rounding to 6 decimal places
   (which makes ``\\frac{1}{2^{99}}`` equal ``\\frac{1}{2^{98}}``): exactly, to 60 significant
   digits relative to their size, unless one of them is a decimal literal, which gets the
   relative tolerance of data/answers.py. Sets, intervals, equations and symbolic expressions
   go to ``math_verify.verify``.
3. math-verify runs in a pool of worker processes (pebble), each call under a hard timeout of
   :data:`TIMEOUT_S`: a worker that overruns is killed and replaced, the pair scores False, and
   one short line is logged. This holds on any thread, where math-verify's own ``signal.alarm``
   timeout cannot, and on inputs such as ``10^{10^{10}}`` that never return. Workers have an
   address-space limit (:data:`WORKER_MEMORY_MB`) and no stdout, so a timeout never prints the
   expression.

:func:`vote` groups sampled answers by this equivalence for cons@k.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from fractions import Fraction
from functools import lru_cache

from data.answers import MAX_ANSWER_CHARS, Number, answer_key, exact_value, normalize, same_answer
from infra.logs import warn_once

logger = logging.getLogger(__name__)

TIMEOUT_S = 5.0  # hard wall clock per comparison; MATH-500's slowest real pair takes ~0.3 s
INNER_TIMEOUT_S = 3  # math-verify's own signal.alarm inside the worker (its main thread)
WORKER_MEMORY_MB = 2048  # RLIMIT_AS per worker: a 10^(10^10) is a MemoryError, not swap
EXACT_DIGITS = 60  # significant digits of the exact-number comparison

_pool = None
_pool_pid = None
_pool_lock = threading.Lock()
_workers = max(1, min(4, os.cpu_count() or 1))
_timeouts = 0
_cache: dict[tuple[str, str], bool] = {}
CACHE_SIZE = 65_536  # (pred, gold) judgements kept; GRPO's G samples often repeat an answer


def set_workers(n: int) -> None:
    """Use ``n`` math-verify worker processes from the next comparison on (default: the CPU
    count, at most 4). Shuts down the current pool."""
    global _workers
    if n < 1:
        raise ValueError(f"math-verify workers must be >= 1, got {n}")
    _workers = n
    shutdown()


def shutdown() -> None:
    """Stop the worker pool (it restarts on the next comparison that needs it)."""
    global _pool
    with _pool_lock:
        if _pool is not None and _pool_pid == os.getpid():
            _pool.stop()
            _pool.join(timeout=5)
        _pool = None


def _get_pool():
    global _pool, _pool_pid
    with _pool_lock:
        if _pool is None or _pool_pid != os.getpid():  # a forked child makes its own
            import multiprocessing

            from pebble import ProcessPool

            # forkserver: workers fork from a clean server process that has math-verify imported
            # (a replaced worker starts in milliseconds), never from a trainer with threads
            # (torch, Prefect). Like spawn, it imports the caller's __main__ as __mp_main__:
            # scripts need the usual `if __name__ == "__main__":` guard.
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload([__name__, "math_verify"])
            _pool = ProcessPool(max_workers=_workers, initializer=_init_worker, context=context)
            _pool_pid = os.getpid()
            atexit.register(shutdown)
        return _pool


def _init_worker() -> None:
    """Worker setup: memory limit, no output, math-verify's logs silenced (the parent logs)."""
    import resource
    import sys

    limit = WORKER_MEMORY_MB * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    sys.stdout = sys.stderr = open(os.devnull, "w")
    logging.getLogger("math_verify").setLevel(logging.CRITICAL + 1)
    logging.getLogger("latex2sympy2_extended").setLevel(logging.CRITICAL + 1)


def _exact_numbers_equal(a, b, decimal: Number | None = None) -> bool | None:
    """Two sympy numbers compared (see the module docstring); None if they are not two numbers.

    With a decimal literal (a sympy Float) on either side: equal as the decimals written, or,
    when one side is the plain decimal ``decimal`` and the other a value whose decimal does not
    terminate, when it is that value correctly rounded (data/answers.py ``Number.rounds``). Otherwise both are evaluated to :data:`EXACT_DIGITS` significant digits;
    values that differ there (relative to their size) are different, and values that agree are
    equal unless their difference simplifies to a nonzero rational. So ``10^{100}+1`` differs
    from ``10^{100}`` and ``\\frac{1}{2^{99}}`` from ``\\frac{1}{2^{98}}``, whatever their size,
    and ``\\sqrt{2}/2`` equals ``\\frac{1}{\\sqrt{2}}``.
    """
    from sympy import Basic, Float, N, Rational, simplify

    if not (isinstance(a, Basic) and isinstance(b, Basic)):
        return None
    if not (getattr(a, "is_number", False) and getattr(b, "is_number", False)):
        return None
    if a == b:
        return True
    x, y = N(a, EXACT_DIGITS), N(b, EXACT_DIGITS)
    if not (x.is_finite and y.is_finite):
        return False  # oo, -oo, zoo, nan: only the identical expression (a == b above) matches
    floats = (a.has(Float), b.has(Float))
    if any(floats):
        if all(floats) or _terminating(b if floats[0] else a) or decimal is None:
            return bool(simplify(_decimal_value(a) - _decimal_value(b)) == 0)  # as written: exact
        other = N(b if floats[0] else a, EXACT_DIGITS)
        return decimal.rounds(Fraction(str(other)))
    if abs(x - y) > 10.0 ** (15 - EXACT_DIGITS) * max(abs(x), abs(y)):
        return False
    difference = simplify(a - b)  # equal to 45 digits: exact arithmetic decides
    if difference == 0:
        return True
    if difference.is_zero is False:
        return False  # provably nonzero: 10^{100} + \\sqrt{2} is not 10^{100}
    return bool(abs(N(difference, 4 * EXACT_DIGITS)) <= Rational(1, 10 ** (3 * EXACT_DIGITS)) * max(abs(x), abs(y)))


def _terminating(value) -> bool:
    """A rational number whose decimal terminates (5, 0.5, 3/8)."""
    if not value.is_Rational:
        return False
    q = int(value.q)
    for p in (2, 5):
        while q % p == 0:
            q //= p
    return q == 1


def _decimal_value(value):
    """A number with its Floats read as the decimals they were written as (0.5000001 exactly)."""
    from sympy import Float, Rational

    return value.xreplace({f: Rational(str(f)) for f in value.atoms(Float)})


@lru_cache(maxsize=4096)
def _parse_gold(gold: str, timeout: int | None):
    from math_verify import LatexExtractionConfig, parse

    return parse(f"${gold}$", extraction_config=[LatexExtractionConfig()], parsing_timeout=timeout)


def math_verify_equal(pred: str, gold: str, timeout: int | None = INNER_TIMEOUT_S) -> bool:
    """math-verify's judgement of two bare LaTeX answers, numbers compared exactly; runs in the
    caller's process and thread (the pool calls it in a worker's main thread). ``timeout`` is
    math-verify's own (``signal.alarm``: main thread only; None off it).

    The prediction is wrapped in ``\\boxed{}`` so that bare LaTeX such as ``\\dfrac{1}{2}`` is
    extracted (unwrapped, math-verify finds nothing in it).
    """
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    try:
        gold_parsed = _parse_gold(gold, timeout)
        pred_parsed = parse(f"\\boxed{{{pred}}}", extraction_config=[LatexExtractionConfig(), ExprExtractionConfig()],
                            parsing_timeout=timeout)
        if not gold_parsed or not pred_parsed:
            return False
        written = [n for n in (exact_value(pred), exact_value(gold)) if n is not None and n.decimal]
        exact = _exact_numbers_equal(gold_parsed[0], pred_parsed[0], written[0] if len(written) == 1 else None)
        if exact is not None:
            return exact
        return bool(verify(gold_parsed, pred_parsed, timeout_seconds=timeout))
    except Exception:  # math-verify raises on odd input despite raise_on_error=False
        return False


def _note_timeout(pred: str, gold: str) -> None:
    global _timeouts
    _timeouts += 1
    if _timeouts == 1 or _timeouts % 100 == 0:
        logger.warning("math-verify exceeded %.0f s on an answer of %d characters (gold %d): scored "
                       "as not equal (%d such so far)", TIMEOUT_S, len(pred), len(gold), _timeouts)


def clear_cache() -> None:
    """Forget this process's judgements (benchmarks grade cold with it)."""
    _cache.clear()


def timeouts() -> int:
    """How many comparisons this process has cut off at :data:`TIMEOUT_S`."""
    return _timeouts


def _outcome(future, key: tuple[str, str]) -> bool:
    try:
        return bool(future.result())
    except (FutureTimeout, TimeoutError):
        _note_timeout(*key)
    except Exception:  # a worker killed by its memory limit, or any other failure: not equal
        logger.debug("math-verify failed on an answer of %d characters", len(key[0]), exc_info=True)
    return False


def _in_process(keys: Sequence[tuple[str, str]], err: Exception) -> dict[tuple[str, str], bool]:
    """The fallback where worker processes cannot start: math-verify in this process, bounded by
    its own timeout on the main thread only (logged once)."""
    main = threading.current_thread() is threading.main_thread()
    warn_once(logger, "in-process", "cannot start math-verify workers (%s): grading in this process, %s", err,
              "with math-verify's own timeout" if main else "WITHOUT a timeout (not the main thread)")
    return {key: math_verify_equal(*key, timeout=INNER_TIMEOUT_S if main else None) for key in keys}


def _bounded_math_verify(keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], bool]:
    """math-verify on normalised (pred, gold) pairs in the worker pool, in parallel; cached."""
    found = {key: _cache[key] for key in keys if key in _cache}
    todo = [key for key in dict.fromkeys(keys) if key not in found]
    if todo:
        try:  # pebble starts its workers at the first schedule
            pool = _get_pool()
            futures = {key: pool.schedule(math_verify_equal, args=key, timeout=TIMEOUT_S) for key in todo}
        except (AssertionError, OSError, RuntimeError) as err:  # e.g. a daemonic process has no children
            shutdown()
            found.update(_in_process(todo, err))
        else:
            for key, future in futures.items():
                found[key] = _outcome(future, key)
        if len(_cache) > CACHE_SIZE:
            _cache.clear()
        _cache.update((key, found[key]) for key in todo)
    return found


def equivalent_many(pairs: Sequence[tuple[str | None, str | None]]) -> list[bool]:
    """Whether each answer ``pred`` is the same answer as its ``gold`` (module docstring); False
    where either is None. The pairs that need math-verify run in parallel in the pool.

    Bounded: at most :data:`TIMEOUT_S` seconds and :data:`WORKER_MEMORY_MB` of a worker per pair.
    """
    results: list[bool | None] = [same_answer(p, g) for p, g in pairs]
    keys: dict[int, tuple[str, str]] = {}
    for i, (pred, gold) in enumerate(pairs):
        if results[i] is None:
            key = (normalize(pred), normalize(gold))
            if max(map(len, key)) > MAX_ANSWER_CHARS:
                results[i] = False
            else:
                keys[i] = key
    judged = _bounded_math_verify(list(keys.values())) if keys else {}
    return [bool(judged[keys[i]]) if r is None else r for i, r in enumerate(results)]


def equivalent(pred: str | None, gold: str | None) -> bool:
    """:func:`equivalent_many` for one pair."""
    return equivalent_many([(pred, gold)])[0]


def vote(answers: Sequence[str | None]) -> tuple[int | None, list[int]]:
    """cons@k's majority vote over sampled answers, equivalent answers voting together.

    Answers are grouped in sample order: each joins the groups of every earlier spelling it is
    :func:`equivalent` to, and groups it joins become one (``\\frac13`` unites ``0.3333333`` and
    ``0.33333333``, which differ from each other). The winner is the largest group; a tie goes
    to the group seen first (deterministic). None answers do not vote.

    Returns:
        (index in ``answers`` of the winning group's first answer, or None if no answer voted;
        the group of each answer, numbered by its first answer's index, -1 for None).
    """
    group_of: list[int] = []  # per answer: the index of its group's first answer
    spellings: dict[str, int] = {}  # answer_key -> index of its first answer: equal keys need no check
    for i, answer in enumerate(answers):
        if answer is None:
            group_of.append(-1)
            continue
        key = answer_key(answer)
        if key in spellings:
            group_of.append(group_of[spellings[key]])
            continue
        joined = {group_of[j] for j in spellings.values() if equivalent(answer, answers[j])}
        group = min(joined, default=i)
        group_of[:] = [group if g in joined else g for g in group_of]
        group_of.append(group)
        spellings[key] = i
    sizes = Counter(g for g in group_of if g >= 0)
    if not sizes:
        return None, group_of
    return max(sizes, key=lambda g: (sizes[g], -g)), group_of
