"""The `code` reward runs rows the way their datasets' harnesses do (model/rewards/code.py).

HumanEval on the real file (every canonical solution, written as a whole function, passes;
every wrong body fails), then one kind of row per test with small hand-made programs: prompt
imports and helpers, test-column aliases, a missing test column, hostile entry points,
unclosed reasoning and adversarial markup.
"""

from __future__ import annotations

import ast
import importlib
import logging

import pytest

from conftest import shared_data
from infra import logs
from data.loaders import load_humaneval
from model.rewards.code import build_job, code, extract_code

code_module = importlib.import_module("model.rewards.code")  # `model.rewards.code` is the function


def _fenced(body: str) -> str:
    return f"<think>Let me write it.</think>\n```python\n{body}\n```"


def _stub(prompt: str, entry_point: str) -> str:
    """The prompt's `def entry_point` (signature and docstring), without its imports and helpers."""
    tree = ast.parse(prompt)
    stub = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == entry_point)
    return "\n".join(prompt.split("\n")[stub.lineno - 1:stub.end_lineno]) + "\n"


# --- HumanEval, all 164 rows -----------------------------------------------------------------


def test_humaneval_whole_functions_pass_and_wrong_bodies_fail():
    rows = load_humaneval(shared_data("humaneval/HumanEval.jsonl.gz"))
    assert len(rows) == 164
    right = [_fenced(_stub(r["prompt"], r["entry_point"]) + r["canonical_solution"]) for r in rows]
    wrong = [_fenced(_stub(r["prompt"], r["entry_point"]) + "    return None\n") for r in rows]
    both = rows + rows
    scores = code(right + wrong, tests=[r["tests"] for r in both],
                  entry_point=[r["entry_point"] for r in both], prompt=[r["prompt"] for r in both])
    assert [r["id"] for r, s in zip(rows, scores[:164]) if s != 1.0] == []
    assert [r["id"] for r, s in zip(rows, scores[164:]) if s != 0.0] == []


# --- the prompt's preamble -------------------------------------------------------------------

CHECK_SUM = "def check(candidate):\n    assert candidate([1, 2, 3]) == 6\n"


@pytest.mark.parametrize("prompt, solution", [
    ("from typing import List\n\n\ndef total(xs: List[int]) -> int:\n    \"\"\"Sum.\"\"\"\n",
     "def total(xs: List[int]) -> int:\n    return sum(xs)"),
    ("import math\n\n\ndef total(xs):\n    \"\"\"Sum.\"\"\"\n",
     "def total(xs):\n    return math.fsum(xs)"),
    ("from typing import Optional, Tuple\n\n\ndef total(xs: Tuple[int, ...], start: Optional[int] = None) -> int:\n",
     "def total(xs: Tuple[int, ...], start: Optional[int] = None) -> int:\n    return sum(xs) + (start or 0)"),
])
def test_prompt_imports_reach_a_whole_function(prompt, solution):
    # The last prompt's stub has no body at all: the preamble is still taken from it.
    scores = code([_fenced(solution)] * 2, tests=[CHECK_SUM] * 2, entry_point=["total"] * 2,
                  prompt=[prompt, None])
    assert scores == [1.0, 0.0]  # without the prompt the names are undefined


HELPER_PROMPT = ("def helper(x):\n    return x + 1\n\n\n"
                 "def total(xs):\n    \"\"\"Sum of helper(x).\"\"\"\n")


@pytest.mark.parametrize("prompt, tests, solution, expected", [
    # the model's function calls a helper the prompt defines (HumanEval/10's is_palindrome)
    (HELPER_PROMPT, "def check(c):\n    assert c([1, 2]) == 5\n",
     "def total(xs):\n    return sum(helper(x) for x in xs)", 1.0),
    # the tests call a helper the prompt defines (HumanEval/38's encode_cyclic)
    ("def encode(s):\n    return s[::-1]\n\n\ndef decode(s):\n    \"\"\"Undo encode.\"\"\"\n",
     "def check(c):\n    assert c(encode('abc')) == 'abc'\n",
     "def decode(s):\n    return s[::-1]", 1.0),
    # the model redefines a helper: its definition wins
    (HELPER_PROMPT, "def check(c):\n    assert c([1, 2]) == 7\n",
     "def helper(x):\n    return x + 2\n\ndef total(xs):\n    return sum(helper(x) for x in xs)", 1.0),
    # a body continuing the prompt (HumanEval's original completion style) runs as prompt + body
    (HELPER_PROMPT, "def check(c):\n    assert c([1, 2]) == 5\n",
     "    return sum(helper(x) for x in xs)", 1.0),
    # the model's own wrong function replaces the prompt's stub rather than being ignored
    (HELPER_PROMPT, "def check(c):\n    assert c([1, 2]) == 5\n", "def total(xs):\n    return 0", 0.0),
])
def test_prompt_helpers_run_before_the_models_code(prompt, tests, solution, expected):
    entry_point = "decode" if "decode" in prompt else "total"
    completion = _fenced(solution) if not solution.startswith(" ") else solution + "\n"
    assert code([completion], tests=[tests], entry_point=[entry_point], prompt=[prompt]) == [expected]


def test_a_prose_prompt_is_not_run():
    prompt = "Write a function total(xs) that returns the sum of xs."
    job = build_job("def total(xs):\n    return sum(xs)\n", CHECK_SUM, "total", prompt)
    assert "Write a function" not in job.program + job.preamble
    assert code([_fenced("def total(xs):\n    return sum(xs)")], tests=[CHECK_SUM],
                entry_point=["total"], prompt=[prompt]) == [1.0]


# --- test columns by their datasets' names ---------------------------------------------------


@pytest.mark.parametrize("columns", [
    {"tests": ["def check(c):\n    assert c(2) == 4\n"], "entry_point": ["double"]},  # r1flow
    {"test": ["def check(c):\n    assert c(2) == 4\n"], "entry_point": ["double"]},  # HumanEval
    {"test_list": [["assert double(2) == 4", "assert double(0) == 0"]]},  # MBPP
    {"test_list": [["assert math.isclose(double(0.5), 1.0)"]], "test_imports": [["import math"]]},
])
def test_test_column_aliases(columns):
    right = _fenced("def double(x):\n    return 2 * x")
    wrong = _fenced("def double(x):\n    return x + 3")
    twice = {name: values * 2 for name, values in columns.items()}
    assert code([right, wrong], **twice) == [1.0, 0.0]


@pytest.mark.parametrize("columns", [
    {},
    {"entry_point": ["f"], "prompt": ["def f():\n    pass\n"]},
    {"testcases": ["assert f() == 1"], "answer": [None]},
])
def test_missing_test_column_is_none_and_warned_once(columns, caplog, monkeypatch):
    monkeypatch.setattr(logs, "_WARNED", set())
    with caplog.at_level(logging.WARNING, logger=code_module.__name__):
        for _ in range(2):
            assert code(["def f():\n    return 1\n"], **columns) == [None]
    warnings = [r.getMessage() for r in caplog.records if "no test column" in r.getMessage()]
    assert len(warnings) == 1
    assert str(sorted(columns)) in warnings[0] and "tests, test, test_list" in warnings[0]


# --- hostile entry points --------------------------------------------------------------------


@pytest.mark.parametrize("entry_point", [
    "f); open({marker!r}, 'w'); (f",
    "f\nopen({marker!r}, 'w')",
    "__import__('builtins').open({marker!r}, 'w') and f",
    "lambda",  # a keyword
])
def test_hostile_entry_point_scores_zero_without_running(entry_point, tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(logs, "_WARNED", set())
    marker = tmp_path / "ran"
    entry_point = entry_point.format(marker=str(marker))
    tests = "def check(c):\n    pass\n"
    with caplog.at_level(logging.WARNING, logger=code_module.__name__):
        assert code([_fenced("def f():\n    return 1")], tests=[tests], entry_point=[entry_point]) == [0.0]
    assert not marker.exists()
    assert "not a Python identifier" in caplog.text
    with pytest.raises(ValueError, match="not a Python identifier"):
        build_job("def f():\n    return 1\n", tests, entry_point)


# --- what counts as the program --------------------------------------------------------------

ONE = "def check(c):\n    assert c() == 1\n"


@pytest.mark.parametrize("completion", [
    "<think>So:\n```python\ndef f():\n    return 1\n```\n",  # never closed
    "<think>a</think>ok<think>```python\ndef f():\n    return 1\n```",  # reopened, cut off
    "```python\ndef f():\n    return 1\n```\n<think>and now more thought",  # summary-less
])
def test_unclosed_reasoning_has_no_program_and_scores_zero(completion):
    assert extract_code(completion) == ""
    assert code([completion, _fenced("def f():\n    return 1")], tests=[ONE] * 2,
                entry_point=["f"] * 2) == [0.0, 1.0]


SIZE = 200_000  # 200 KB: a backtracking regex needs minutes on it, a linear scan milliseconds


def _junk(noise: str) -> str:
    return noise * (SIZE // len(noise))


@pytest.mark.parametrize("completion, expected", [
    (_junk("```") + "`", _junk("```") + "`\n"),  # empty inline blocks, the last fence unclosed
    (_junk("```python "), _junk("```python ").rstrip() + "\n"),  # tag lines never end
    (_junk("<answer>"), _junk("<answer>") + "\n"),  # answers never closed: the whole summary
    (_junk("<answer>x") + "</answer>", "x"),  # the innermost block before the only close tag
    (_junk("<answer>") + "\n```python\nx = 1\n```", "x = 1\n"),  # a fence after the junk
])
def test_200kb_of_unclosed_markup_is_parsed(completion, expected):
    assert extract_code(completion) == expected


def test_200kb_of_unclosed_markup_is_scored():
    program = "\n```python\ndef f():\n    return 1\n```"
    completions = [_junk("<answer>") + program, "</think>" + _junk("```") + "`", _junk("<answer>")]
    assert code(completions, tests=[ONE] * 3, entry_point=["f"] * 3) == [1.0, 0.0, 0.0]


# --- evaluation ------------------------------------------------------------------------------


def test_evaluate_correctness_passes_the_prompt_and_every_test_column():
    from model.evaluate import consensus, correctness

    prompt = "from typing import List\n\n\ndef total(xs: List[int]) -> int:\n    \"\"\"Sum.\"\"\"\n"
    rows = [
        {"id": "he", "prompt": prompt, "source": "humaneval", "tests": CHECK_SUM, "entry_point": "total"},
        {"id": "mbpp", "prompt": "Write total(xs).", "source": "mbpp", "test_list": ["assert total([1, 2]) == 3"]},
        {"id": "gsm", "prompt": "What is 1 + 1?", "source": "gsm8k", "answer": "2"},
    ]
    texts = [_fenced("def total(xs: List[int]) -> int:\n    return sum(xs)"),
             _fenced("def total(xs):\n    return sum(xs)"), "<think>1 + 1 = 2</think>\\boxed{2}"]
    assert correctness(rows, texts) == [1.0, 1.0, 1.0]
    assert consensus(rows, texts, [1.0, 1.0, 1.0], k=1) == 1.0


def test_humaneval_tests_without_an_entry_point_still_call_check():
    prompt = "def add(a, b):\n    \"\"\"Sum.\"\"\"\n"
    tests = "def check(candidate):\n    assert candidate(2, 3) == 5\n"
    right, wrong = _fenced("def add(a, b):\n    return a + b"), _fenced("def add(a, b):\n    return 0")
    assert code([right, wrong], prompt=[prompt] * 2, test=[tests] * 2) == [1.0, 0.0]
    assert code([right, wrong], prompt=["Add two numbers."] * 2, test=[tests] * 2, entry_point=[None] * 2) == [0.0, 0.0]
