"""The accuracy reward: 1.0 when the completion's final answer is correct, else 0.0.

Rows are dispatched on their `source` and gold `answer`:

- `source == "countdown"`: the answer must be an arithmetic expression over the row's `numbers`
  (each used at most once) whose exact value equals the target in `answer`.
- plain-number golds (GSM8K, AIME, `arithmetic`): exact decimal comparison when the prediction
  is a plain number too, math-verify otherwise (`\\frac{144}{2}` for `72`).
- everything else (MATH-500 LaTeX): math-verify, which accepts equivalent forms
  (`0.5` = `\\frac{1}{2}`, `3\\sqrt{13}` = `\\sqrt{117}`).

Rows with `tests` are code rows and get None (the `code` reward scores them); rows without a
gold answer get None as well.

Threads: math-verify bounds its work with `signal.alarm`, which only exists in the main thread.
Off the main thread (a Prefect task runner, a thread pool) the verifier runs without its
internal timeout instead of raising; callers there that fear pathological inputs should run the
reward in a process pool.
"""

from __future__ import annotations

import ast
import logging
import re
import threading
from collections import Counter
from collections.abc import Sequence
from fractions import Fraction
from functools import lru_cache
from typing import Any

from model.rewards.answers import extract_answer, parse_number

logger = logging.getLogger(__name__)

# Seconds math-verify may spend parsing or comparing one answer (main thread only).
MATH_VERIFY_TIMEOUT_S = 5
# Longer countdown answers are rejected before parsing; real ones are a few dozen characters.
MAX_EXPRESSION_CHARS = 200
# A number followed by one unit word (`18 dollars`, `10%`) still counts as that number.
_UNIT_SUFFIX_RE = re.compile(r"^(.*?\d)\s*(?:\\%|%|\\text\{\s*[A-Za-z ]*\}|[A-Za-z]+)$")


def _column(values: Sequence[Any] | None, i: int) -> Any:
    return None if values is None else values[i]


def accuracy(
    completions: Sequence[Any],
    answer: Sequence[Any] | None = None,
    source: Sequence[str | None] | None = None,
    numbers: Sequence[Sequence[int] | None] | None = None,
    tests: Sequence[str | None] | None = None,
    **kwargs: Any,
) -> list[float | None]:
    """Score each completion's final answer against the row's gold answer.

    Args:
        completions: model outputs (strings or chat-message lists).
        answer: gold answers (LaTeX, a number, or the countdown target), aligned with completions.
        source: dataset names; `"countdown"` selects the expression checker.
        numbers: for countdown rows, the numbers the expression may use.
        tests: code tests; a row that has them is not scored here (None).
        **kwargs: other dataset columns, ignored.

    Returns:
        1.0 correct, 0.0 wrong or no answer found, None where the reward does not apply.
    """
    scores: list[float | None] = []
    for i, completion in enumerate(completions):
        gold = _column(answer, i)
        if _column(tests, i) or gold is None or str(gold).strip() == "":
            scores.append(None)
            continue
        pred = extract_answer(completion)
        if pred is None:
            scores.append(0.0)
        elif _column(source, i) == "countdown":
            scores.append(countdown_score(pred, _column(numbers, i) or [], gold))
        else:
            scores.append(1.0 if answers_match(pred, str(gold)) else 0.0)
    return scores


def answers_match(pred: str, gold: str) -> bool:
    """Return whether `pred` equals `gold`: exactly for plain numbers, else by math-verify."""
    gold_number = parse_number(gold)
    if gold_number is not None:
        unit = _UNIT_SUFFIX_RE.match(pred.strip())
        pred_number = parse_number(pred)
        if pred_number is None and unit:
            pred_number = parse_number(unit.group(1))
        if pred_number is not None:
            return pred_number == gold_number
    return math_verify_match(pred, gold)


def _timeouts() -> int | None:
    """math-verify's timeout where signal.alarm works (main thread), None (no timeout) elsewhere."""
    if threading.current_thread() is threading.main_thread():
        return MATH_VERIFY_TIMEOUT_S
    return None


@lru_cache(maxsize=4096)
def _parse_gold(gold: str, timeout: int | None) -> list:
    from math_verify import LatexExtractionConfig, parse

    return parse(f"${gold}$", extraction_config=[LatexExtractionConfig()], parsing_timeout=timeout)


def math_verify_match(pred: str, gold: str) -> bool:
    """Return whether math-verify judges `pred` equivalent to `gold` (both bare LaTeX).

    The prediction is wrapped in `\\boxed{}` so that bare LaTeX such as `\\dfrac{1}{2}` or
    `\\sqrt{117}` is extracted (unwrapped, math-verify finds nothing in it).
    """
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    timeout = _timeouts()
    try:
        gold_parsed = _parse_gold(gold, timeout)
        pred_parsed = parse(
            f"\\boxed{{{pred}}}",
            extraction_config=[LatexExtractionConfig(), ExprExtractionConfig()],
            parsing_timeout=timeout,
        )
        if not gold_parsed or not pred_parsed:
            return False
        return bool(verify(gold_parsed, pred_parsed, timeout_seconds=timeout))
    except Exception:  # math-verify raises on odd input despite raise_on_error=False
        logger.debug("math-verify failed on pred=%r gold=%r", pred, gold, exc_info=True)
        return False


_ALLOWED_OPS = (ast.Add, ast.Sub, ast.Mult, ast.Div)


def _evaluate(node: ast.AST, used: list[int]) -> Fraction:
    """Exact value of an int-literal `+ - * /` expression; appends each literal to `used`."""
    if isinstance(node, ast.Constant) and type(node.value) is int:
        used.append(node.value)
        return Fraction(node.value)
    if isinstance(node, ast.BinOp) and isinstance(node.op, _ALLOWED_OPS):
        left, right = _evaluate(node.left, used), _evaluate(node.right, used)
        if isinstance(node.op, ast.Add):
            return left + right
        if isinstance(node.op, ast.Sub):
            return left - right
        if isinstance(node.op, ast.Mult):
            return left * right
        return left / right  # ZeroDivisionError is handled by the caller
    raise ValueError(f"disallowed syntax: {type(node).__name__}")


def countdown_score(expression: str, numbers: Sequence[int | str], target: Any) -> float:
    """Score a countdown answer: 1.0 iff it is a valid expression equal to `target`.

    Valid means: only int literals, `+ - * /` and parentheses (no names, calls, `**`, unary
    minus), each of `numbers` used at most once (multiset), evaluated exactly with fractions.
    A trailing `= <target>` is tolerated. Division by zero or any other failure scores 0.0.
    """
    expr = expression.replace("×", "*").replace("÷", "/").strip()
    if "=" in expr:
        expr, _, rhs = expr.partition("=")
        if rhs.strip() != str(target).strip():
            return 0.0
    if len(expr) > MAX_EXPRESSION_CHARS:
        return 0.0
    try:
        tree = ast.parse(expr.strip(), mode="eval")
        used: list[int] = []
        value = _evaluate(tree.body, used)
        target_value = Fraction(int(str(target).strip()))
        available = Counter(int(n) for n in numbers)
    except (SyntaxError, ValueError, TypeError, ZeroDivisionError, RecursionError):
        return 0.0
    if Counter(used) - available:
        return 0.0
    return 1.0 if value == target_value else 0.0
