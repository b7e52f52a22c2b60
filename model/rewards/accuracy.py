"""The accuracy reward: 1.0 when the completion's final answer is correct, else 0.0.

The final answer is what data/completions.py parses from the text after the reasoning (an
unclosed reasoning block has none and scores 0.0). Rows are dispatched on their `source` and gold:

- `source == "countdown"`: the answer must be an arithmetic expression over the row's `numbers`
  (each used at most once) whose exact value equals the target in `answer`.
- every other row: the answer must be equivalent to the gold (model/rewards/equivalence.py: one
  set of normalisation rules on both sides, exact numbers, math-verify for LaTeX, bounded in
  time and memory on any thread).

The gold is read from the dataset's own columns: `answer` (r1flow's; GSM8K's `… #### 72` is
72), else `solution` (as TRL and MATH name it: its boxed answer). Rows with unit tests (`tests`,
or HumanEval's `test`) are code rows and get None (the `code` reward scores them), as do rows
whose gold is empty. A call with none of these columns logs one warning per process and scores
every row None.
"""

from __future__ import annotations

import ast
import logging
from collections import Counter
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from data.answers import gold_answer
from data.completions import parse_completion
from infra.logs import warn_once
from model.rewards.code import TEST_COLUMNS
from model.rewards.equivalence import equivalent_many

logger = logging.getLogger(__name__)

# Longer countdown answers are rejected before parsing; real ones are a few dozen characters.
MAX_EXPRESSION_CHARS = 200
GOLD_COLUMNS = ("answer", "solution")


def _column(values: Sequence[Any] | None, i: int) -> Any:
    return None if values is None else values[i]


def warn_missing_columns(reward: str, wanted: Sequence[str], given: Sequence[str]) -> None:
    """Log once per process (per reward and set of columns) that a reward got none of the
    columns it reads, so that its all-None scores are never silent."""
    warn_once(logger, " ".join((reward, *sorted(given))), "reward %r got none of the columns it reads (%s); "
              "columns given: %s. Every row scores None.", reward, ", ".join(wanted), ", ".join(sorted(given)) or "none")


def accuracy(
    completions: Sequence[Any],
    answer: Sequence[Any] | None = None,
    source: Sequence[str | None] | None = None,
    numbers: Sequence[Sequence[int] | None] | None = None,
    tests: Sequence[str | None] | None = None,
    solution: Sequence[str | None] | None = None,
    **kwargs: Any,
) -> list[float | None]:
    """Score each completion's final answer against the row's gold answer.

    Args:
        completions: model outputs (strings or chat-message lists).
        answer: gold answers (LaTeX, a number, GSM8K's `… #### N`, or the countdown target).
        source: dataset names; `"countdown"` selects the expression checker.
        numbers: for countdown rows, the numbers the expression may use.
        tests: code tests (also HumanEval's `test`, MBPP's `test_list` in kwargs); a row that
            has them is not scored here (None).
        solution: a worked solution with a boxed answer, used where `answer` is absent.
        **kwargs: other dataset columns, ignored.

    Returns:
        1.0 correct, 0.0 wrong or no answer found, None where the reward does not apply.
    """
    columns = {"tests": tests, **kwargs}
    code_rows = next((columns[name] for name in TEST_COLUMNS if columns.get(name) is not None), None)
    if answer is None and solution is None:
        if code_rows is None:
            warn_missing_columns("accuracy", (*GOLD_COLUMNS, *TEST_COLUMNS), list(kwargs))
        return [None] * len(completions)
    scores: list[float | None] = [None] * len(completions)
    pending: dict[int, tuple[str | None, str]] = {}
    for i, completion in enumerate(completions):
        gold = gold_answer(_column(answer, i)) or gold_answer(_column(solution, i))
        if _column(code_rows, i) or gold is None:
            continue
        pred = parse_completion(completion).answer
        if pred is None:
            scores[i] = 0.0
        elif _column(source, i) == "countdown":
            scores[i] = countdown_score(pred, _column(numbers, i) or [], gold)
        else:
            pending[i] = (pred, gold)
    for i, same in zip(pending, equivalent_many(list(pending.values()))):
        scores[i] = 1.0 if same else 0.0
    return scores


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
