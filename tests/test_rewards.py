"""Rewards on real benchmark data (../shared/data): gold answers must score 1, wrong ones 0.

The files are read directly (json/gzip) so these tests do not depend on data/loaders.py.
"""

from __future__ import annotations

import gzip
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest

from conftest import shared_data
from data.language import math_spans, words
from model.rewards import (
    REWARDS,
    answer_key,
    extract_answer,
    get_reward,
    register,
    script_of_word,
    scripts_in,
)
from model.rewards.accuracy import accuracy, countdown_score
from model.rewards.code import code, extract_code
from model.rewards.format import format_reward
from model.rewards.language import language_consistency


def _read_jsonl(relative: str) -> list[dict]:
    path = shared_data(relative)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _boxed(answer: str) -> str:
    return f"<think>Some reasoning.</think>\nThe final answer is $\\boxed{{{answer}}}$."


def _gsm8k_gold(row: dict) -> str:
    return row["answer"].split("#### ")[-1].strip().replace(",", "")


# --- accuracy: MATH-500 ---------------------------------------------------------------------


def test_math500_gold_scores_one_on_its_own_row():
    rows = _read_jsonl("math500/test.jsonl")
    assert len(rows) == 500
    golds = [r["answer"] for r in rows]
    scores = accuracy([_boxed(g) for g in golds], answer=golds, source=["math500"] * len(rows))
    failed = [(i, golds[i]) for i, s in enumerate(scores) if s != 1.0]
    assert not failed, f"gold answers not verified against themselves: {failed}"


@pytest.mark.parametrize(
    ("pred", "gold"),
    [
        ("0.5", "\\frac{1}{2}"),
        ("\\dfrac{1}{2}", "\\frac{1}{2}"),
        ("1/2", "\\frac12"),
        ("\\sqrt{117}", "3\\sqrt{13}"),
        ("\\text{Evelyn}", "\\text{Evelyn}"),
        ("Evelyn", "\\text{Evelyn}"),
        ("(3, \\pi/2)", "\\left( 3, \\frac{\\pi}{2} \\right)"),
        ("-2, 1", "1,-2"),
        ("\\frac{144}{2}", "72"),
        ("72.0", "72"),
        ("18 dollars", "18"),
        ("x = 5", "x=5"),
    ],
)
def test_equivalent_forms_score_one(pred, gold):
    assert accuracy([f"<answer>{pred}</answer>"], answer=[gold]) == [1.0]


@pytest.mark.parametrize(
    ("pred", "gold"),
    [
        ("\\text{Bob}", "\\text{Evelyn}"),
        ("4.6667", "\\frac{14}{3}"),  # rounding is not equality
        ("q - p", "p - q"),
        ("71", "72"),
        ("1,000", "100"),
    ],
)
def test_different_values_score_zero(pred, gold):
    assert accuracy([f"<answer>{pred}</answer>"], answer=[gold]) == [0.0]


def test_accuracy_works_off_the_main_thread():
    # math-verify's signal.alarm raises off the main thread; the reward must still answer.
    golds = ["\\frac{1}{2}", "3\\sqrt{13}", "\\text{Evelyn}"]
    preds = ["0.5", "\\sqrt{117}", "\\text{Bob}"]
    with ThreadPoolExecutor(max_workers=2) as pool:
        scores = pool.submit(accuracy, [_boxed(p) for p in preds], answer=golds).result()
    assert threading.current_thread() is threading.main_thread()
    assert scores == [1.0, 1.0, 0.0]


def test_accuracy_none_where_it_does_not_apply_and_zero_without_answer():
    scores = accuracy(
        ["\\boxed{5}", "\\boxed{5}", "I do not know", "<answer></answer>"],
        answer=["5", None, "5", "5"],
        tests=[None, "assert True", None, None],
        unknown_column=[1, 2, 3, 4],
    )
    assert scores == [1.0, None, 0.0, 0.0]


# --- accuracy: GSM8K and AIME ---------------------------------------------------------------


def test_gsm8k_every_gold_scores_one_and_a_wrong_number_zero():
    rows = _read_jsonl("gsm8k/test.jsonl")
    assert len(rows) == 1319
    golds = [_gsm8k_gold(r) for r in rows]
    assert all(Decimal(g) == Decimal(g) for g in golds)  # every gold parses as a number
    right = accuracy([f"<think>…</think><answer>{g}</answer>" for g in golds], answer=golds,
                     source=["gsm8k"] * len(golds))
    assert right == [1.0] * len(golds)
    wrong = accuracy([f"<answer>{Decimal(g) + 1}</answer>" for g in golds], answer=golds)
    assert wrong == [0.0] * len(golds)


def test_aime_golds_score_one_and_neighbours_zero():
    golds = [r["answer"] for r in _read_jsonl("aime24/test.jsonl")]
    assert accuracy([_boxed(g) for g in golds], answer=golds) == [1.0] * len(golds)
    shifted = [str(int(g) + 1) for g in golds]
    assert accuracy([_boxed(s) for s in shifted], answer=golds) == [0.0] * len(golds)


# --- accuracy: countdown --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "numbers", "target", "expected"),
    [
        ("(25 - 5) * 3 + 4", [25, 5, 3, 4], "64", 1.0),
        ("100 / (7 - 3) + 1", [100, 7, 3, 1], "26", 1.0),  # exact division
        ("(6 / 4) * 4", [6, 4, 4], "6", 1.0),  # duplicates allowed when given twice
        ("8 * 3", [8, 3, 50], "24", 1.0),  # numbers may stay unused
        ("8 * 3 = 24", [8, 3], "24", 1.0),
        ("8 * 8", [8, 3], "64", 0.0),  # reused number
        ("8 + 3", [8, 3], "24", 0.0),  # wrong value
        ("7 / 2 * 2", [7, 2], "7", 0.0),  # 2 used twice
        ("8 / (3 - 3)", [8, 3, 3], "0", 0.0),  # division by zero
        ("2 ** 3", [2, 3], "8", 0.0),
        ("-8 + 32", [8, 32], "24", 0.0),  # unary minus is not allowed
        ("__import__('os').getpid()", [1], "1", 0.0),
        ("x * 3", [8, 3], "24", 0.0),
        ("8.0 * 3", [8, 3], "24", 0.0),
        ("8 * 3 = 25", [8, 3], "25", 0.0),
        ("(8 * 3", [8, 3], "24", 0.0),
    ],
)
def test_countdown(expression, numbers, target, expected):
    assert countdown_score(expression, numbers, target) == expected
    got = accuracy([f"<answer>{expression}</answer>"], answer=[target], source=["countdown"],
                   numbers=[numbers])
    assert got == [expected]


# --- format ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("<think>a\nb</think><answer>5</answer>", 1.0),
        ("  <think>a</think>\n\n<answer>\n5\n</answer>\n", 1.0),
        ("<think></think><answer></answer>", 0.0),  # empty parts commit to nothing
        ("Sure! <think>a</think><answer>5</answer>", 0.0),  # text before
        ("<think>a</think><answer>5</answer> done", 0.0),  # text after
        ("<think>a</think> so <answer>5</answer>", 0.0),  # text between
        ("<think>a</think>", 0.0),  # no answer
        ("<answer>5</answer>", 0.0),  # no reasoning
        ("<think>a</think><answer>5", 0.0),  # unclosed
        ("<think>a</think><think>b</think><answer>5</answer>", 0.0),
        ("<think>a</think><answer>5</answer><answer>6</answer>", 0.0),
        ("<think>a<think>b</think><answer>5</answer>", 0.0),
        ("<answer>5</answer><think>a</think>", 0.0),  # wrong order
    ],
)
def test_format(completion, expected):
    assert format_reward([completion]) == [expected]


# --- code -----------------------------------------------------------------------------------


def _humaneval_columns(rows: list[dict]) -> dict:
    # The file's own column names (`test`, not r1flow's `tests`) and its prompt, as the harness runs it.
    return {"test": [r["test"] for r in rows], "entry_point": [r["entry_point"] for r in rows],
            "prompt": [r["prompt"] for r in rows]}


def test_humaneval_canonical_bodies_continue_the_prompt_and_wrong_bodies_fail():
    rows = _read_jsonl("humaneval/HumanEval.jsonl.gz")
    assert len(rows) == 164
    columns = _humaneval_columns(rows + rows)
    scores = code([r["canonical_solution"] for r in rows] + ["    return None\n"] * len(rows), **columns)
    assert [r["task_id"] for r, s in zip(rows, scores[:164]) if s != 1.0] == []
    assert [r["task_id"] for r, s in zip(rows, scores[164:]) if s != 0.0] == []


def test_code_takes_the_last_python_block():
    completion = (
        "<think>```python\ndef add(a, b):\n    return a - b\n```</think>\n"
        "First try:\n```python\ndef add(a, b):\n    return 0\n```\n"
        "Fixed:\n```python\ndef add(a, b):\n    return a + b\n```\nDone."
    )
    assert "a + b" in extract_code(completion)
    tests = "def check(candidate):\n    assert candidate(2, 3) == 5\n"
    scores = code([completion, completion], tests=[tests, None], entry_point=["add", None])
    assert scores == [1.0, None]


def test_code_exiting_before_the_tests_fails():
    tests = "def check(candidate):\n    assert False\n"
    for body in ("import sys\nsys.exit(0)", "import os\nos._exit(0)"):
        assert code([f"def f():\n    pass\n{body}\n"], tests=[tests], entry_point=["f"]) == [0.0]


# --- language consistency --------------------------------------------------------------------


def test_language_consistency():
    english = "<think>First add x and y, then divide by \\frac{1}{2}.</think><answer>3</answer>"
    half = "<think>we compute сумму, затем</think><answer>3</answer>"
    no_words = "<think>1 + 2 = 3, x = θ</think><answer>3</answer>"
    assert language_consistency([english, half, no_words]) == [1.0, 0.5, None]
    assert language_consistency([half], language=["ru"]) == [0.5]
    assert language_consistency(["<think>我们先计算 sum</think>"], language="zh") == [5 / 6]
    assert language_consistency(["plain text without tags"], language=["en-US"]) == [1.0]
    with pytest.raises(KeyError, match="known"):
        language_consistency(["text"], language="xx")


def test_scripts():
    assert script_of_word("hello") == "Latin"
    assert script_of_word("привет") == "Cyrillic"
    assert script_of_word("计算") == "Han"
    assert script_of_word("ひらがな") == "Hiragana"
    assert script_of_word("λόγος") == "Greek"
    assert script_of_word("123+4") is None
    assert scripts_in("Let x = 2, тогда 计算 y.") == {"Latin", "Cyrillic", "Han"}
    assert scripts_in("1 + 2 = 3") == set()


ENGLISH_4 = "First we add them"  # 4 English words
CHINESE_25 = "我们先把这两个数相加，然后再检查一下这个结果是否正确。"  # 25 Han characters


@pytest.mark.parametrize(
    ("reasoning", "language", "share"),
    [
        pytest.param(f"{ENGLISH_4} {CHINESE_25}", "en", 4 / 29, id="mixed-en"),
        pytest.param(f"{ENGLISH_4} {CHINESE_25}", "zh", 25 / 29, id="mixed-zh"),
        pytest.param(f"{ENGLISH_4} {CHINESE_25}", "ja", 25 / 29, id="kanji-is-japanese"),
        pytest.param("We check これはテストです", "ja", 8 / 10, id="kana-kanji"),
        pytest.param("We check これはテストです", "en", 2 / 10, id="kana-en"),
        pytest.param("We check 한국어 문장 입니다", "ko", 3 / 5, id="hangul-words"),
        pytest.param("We check 한국어 문장 입니다", "en", 2 / 5, id="hangul-en"),
        pytest.param("Then we add the two numbers", "en", 1.0, id="english-stays"),
        pytest.param("我们先计算", "zh", 1.0, id="chinese-whole"),
        pytest.param("we compute сумму, затем", "en", 0.5, id="cyrillic-stays-words"),
    ],
)
def test_language_counts_cjk_per_character(reasoning, language, share):
    """Han and kana count per character on both sides of the ratio; other scripts per word."""
    assert len([ch for ch in CHINESE_25 if ch.isalpha()]) == 25
    assert language_consistency([f"<think>{reasoning}</think>"], language=language) == [
        pytest.approx(share)]


def test_words_units():
    assert words("日本語です") == [("日", "Han"), ("本", "Han"), ("語", "Han"),
                                   ("で", "Hiragana"), ("す", "Hiragana")]
    assert words("한국어 문장") == [("한국어", "Hangul"), ("문장", "Hangul")]
    assert words("hello мир") == [("hello", "Latin"), ("мир", "Cyrillic")]


@pytest.mark.parametrize(
    ("reasoning", "language", "share"),
    [
        pytest.param("所以 $x^2+y^2=r^2$ 成立", "zh", 1.0, id="dollar-span"),
        pytest.param("所以 $$\\sum_{i} a_i b_i$$ 成立", "zh", 1.0, id="display-span"),
        pytest.param("所以 \\(\\sin x + \\cos y\\) 和 \\[ab + bc\\] 成立", "zh", 1.0, id="paren-span"),
        pytest.param("先求 sin x 和 log n 与 gcd 的值", "zh", 1.0, id="function-words"),
        pytest.param("先求 \\frac{1}{2} \\sqrt{x} 的值", "zh", 1.0, id="latex-commands"),
        pytest.param("Since $x$ is even", "en", 1.0, id="english-stays"),
        pytest.param("其中 $\\text{where } x$", "zh", 2 / 3, id="text-is-prose"),
        pytest.param("We get $ это не формула $", "en", 2 / 5, id="span-hides-no-cyrillic"),
        pytest.param("We get $" + " слово" * 500, "en", 2 / 502, id="unclosed-dollar"),
        pytest.param("Итак \\( we compute the sum", "ru", 1 / 5, id="unclosed-paren"),
        pytest.param("It costs \\$5 and then \\$7", "en", 1.0, id="escaped-dollar"),
    ],
)
def test_language_ignores_math_notation(reasoning, language, share):
    """Math is not language; a math span never hides another script, an unclosed one nothing."""
    assert language_consistency([f"<think>{reasoning}</think>"], language=language) == [
        pytest.approx(share)]


def test_math_spans_are_linear_and_closed():
    assert math_spans("$a$$b$") == [(1, 5)]  # `$$` inside `$…$` does not close it
    assert math_spans("$$x$$ $y$") == [(2, 3), (7, 8)]
    assert math_spans("\\(a\\) \\$ $c") == [(2, 3)]  # escaped and unclosed dollars are text
    # Adversarial inputs: quadratic work here would take minutes, linear takes milliseconds.
    for text in ("$" * 100_001, "\\(" * 50_000, "$" + "\\text{" * 50_000 + "$",
                 "$\\text{" + "{" * 100_000 + "$", "$ a" * 50_000):
        words(text)


@pytest.mark.parametrize(
    ("completion", "language", "share"),
    [
        pytest.param("<think>思考过程</think> The answer is 7", "zh", 1.0, id="summary-ignored"),
        pytest.param("<think>We reason</think> 答案是七", "en", 1.0, id="summary-ignored-en"),
        pytest.param("思考</think> The answer is 7", "zh", 1.0, id="template-open-tag"),
        pytest.param("<think>old</think> <think>先思考 then", "zh", 3 / 4, id="unclosed-last"),
        pytest.param("答案 is seven", "en", 2 / 4, id="untagged-whole"),
    ],
)
def test_language_reads_reasoning_through_the_parser(completion, language, share):
    """The reward reads data.completions.parse_completion(...).reasoning_or_text."""
    assert language_consistency([completion], language=language) == [pytest.approx(share)]



# --- answers and registry ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("<answer>4</answer> and later <answer>5</answer>", "5"),
        # several boxes are one answer (math-verify's boxed="all"): a hedge commits to both
        ("\\boxed{3} then \\boxed{\\frac{1}{\\sqrt{2}}}", "3, \\frac{1}{\\sqrt{2}}"),
        ("\\fbox{7}", "7"),
        ("<answer>The answer is \\boxed{9}</answer>", "9"),
        ("\\boxed{1} and a cut-off \\boxed{\\frac{1}{2}", "1"),
        ("no final answer here", None),
    ],
)
def test_extract_answer(completion, expected):
    assert extract_answer(completion) == expected


def test_answer_key_groups_equivalent_spellings():
    assert answer_key("\\dfrac{1}{2}") == answer_key("\\frac12") == answer_key(" \\frac{1}{2} ")
    assert answer_key("1,000.0") == answer_key("$1000$") == answer_key("1000.")
    assert answer_key("\\left( 3, \\frac{\\pi}{2} \\right)") == answer_key("(3,\\frac{\\pi}{2})")
    assert answer_key("x = 5") == "x=5" != answer_key("y = 5")  # the variable stays; vote() groups x=5 with 5
    assert answer_key("1,2") != answer_key("12")
    assert answer_key("\\frac{1}{2}") != answer_key("\\frac{1}{3}")


def test_registry():
    assert set(REWARDS) >= {"accuracy", "format", "code", "language_consistency"}
    assert get_reward("format")(["<think>a</think><answer>b</answer>"]) == [1.0]
    with pytest.raises(KeyError) as excinfo:
        get_reward("no_such_reward")
    for name in ("accuracy", "format", "code", "language_consistency"):
        assert name in str(excinfo.value)

    @register("test_constant")
    def constant(completions, **kwargs):
        return [1.0] * len(completions)

    try:
        assert get_reward("test_constant")(["x"], answer=["y"]) == [1.0]
        with pytest.raises(ValueError, match="already registered"):
            register("test_constant")(lambda completions, **kwargs: [])
    finally:
        del REWARDS["test_constant"]


def test_readable_format_of_general_rows_needs_a_summary_not_a_boxed_answer():
    from model.rewards import get_reward

    reward = get_reward("readable_format")
    texts = ["<think> the capital of france . </think> Paris is the capital of France.",
             "<think> the capital of france . </think>  ",
             "<think> x </think> <answer> Paris </answer>",
             "<think> 2 + 2 = 4 </think> The answer is \\boxed{4}."]
    assert reward(texts, kind=["general"] * 4) == [1.0, 0.0, 0.0, 1.0]
    assert reward(texts, kind=["reasoning"] * 4) == [0.0, 0.0, 0.0, 1.0]
    assert reward(texts) == [0.0, 0.0, 0.0, 1.0]
