"""Grading that graders trust: one test per kind of mis-grading found in public bug reports
(math-verify, TRL, open-r1, lm-evaluation-harness), each with the rows that must score 1 and
the rows that must stay 0. The parser is data/completions.py, the normalisation rules
data/answers.py, the equivalence model/rewards/equivalence.py."""

from __future__ import annotations

import logging
import threading

import pytest
import torch

from data.answers import answer_key, exact_value, gold_answer, normalize, same_answer
from data.completions import parse_completion
from model.evaluate import consensus
from model.grpo import group_advantages, score, zero_std_groups
from model.rewards import equivalence, get_reward
from tests.conftest import shared_data

accuracy = get_reward("accuracy")


def graded(pred: str, gold: str) -> float:
    """The accuracy reward of a readable completion whose boxed answer is ``pred``."""
    return accuracy([f"<think> work </think> The answer is \\boxed{{{pred}}}."], answer=[gold])[0]


def language_score(reasoning: str, language: str) -> float:
    """The language reward of a completion whose closed reasoning is ``reasoning``."""
    return get_reward("language_consistency")([f"<think>{reasoning}</think> 5"], language=language)[0]


def kind(*cases):
    return pytest.mark.parametrize(("pred", "gold", "expected"), cases)


@kind(("28", "28\\%", 1.0), ("28\\%", "28", 1.0), ("28 percent", "28\\%", 1.0), ("28%", "28", 1.0),
      ("0.28", "28\\%", 0.0), ("2.8", "28\\%", 0.0), ("280", "28%", 0.0))
def test_percent_is_the_same_rule_on_both_sides(pred, gold, expected):
    assert graded(pred, gold) == expected


@kind(("\\frac{1}{2^{99}}", "\\frac{1}{2^{98}}", 0.0), ("10^{100}+1", "10^{100}", 0.0),
      ("10^{-30}", "2\\cdot 10^{-30}", 0.0), ("2^{-99}", "\\frac{1}{2^{99}}", 1.0),
      ("10^{100}", "10^{100}", 1.0), ("\\pi", "3.1415926536", 1.0), ("\\pi", "3.14", 0.0),
      ("0.3333333", "\\frac{1}{3}", 1.0), ("0.333", "\\frac{1}{3}", 0.0), ("0.5000001", "0.5", 0.0))
def test_tiny_and_huge_values_are_compared_exactly(pred, gold, expected):
    assert graded(pred, gold) == expected


@kind(("2 1/2", "\\frac{5}{2}", 1.0), ("2\\frac{1}{2}", "2.5", 1.0), ("-3 3/4", "-\\frac{15}{4}", 1.0),
      ("2 1/2", "1", 0.0), ("2 \\cdot \\frac{1}{2}", "\\frac{5}{2}", 0.0), ("2 3/2", "\\frac{7}{2}", 0.0))
def test_plain_text_mixed_numbers(pred, gold, expected):
    assert graded(pred, gold) == expected


@pytest.mark.parametrize(("completion", "expected"), [
    ("<think> r </think> **73**", 1.0), ("<think> r </think> <answer> __73__ </answer>", 1.0),
    ("\\boxed{\\textbf{73}}", 1.0), ("<think> r </think> `73`.", 1.0),
    ("<think> r </think> **37**", 0.0), ("<think> r </think> The answer is **73** or 74", 0.0)])
def test_markdown_emphasis_around_the_answer(completion, expected):
    assert accuracy([completion], answer=["73"]) == [expected]


@kind(("3 4", "34", 0.0), ("1 000", "1000", 0.0), ("3, 500", "3500", 0.0), ("12 34", "1234", 0.0),
      ("1,000", "1000", 1.0), ("1{,}000", "1000", 1.0), ("1\\,000", "1000", 1.0), ("3 4", "3 4", 1.0))
def test_separator_clean_up_never_joins_separate_numbers(pred, gold, expected):
    assert graded(pred, gold) == expected


@kind(("2i", "2", 0.0), ("2 i", "2", 0.0), ("2e", "2", 0.0), ("2x", "2", 0.0), ("2\\pi", "2", 0.0),
      ("2 pi", "2", 0.0), ("5 m", "5", 0.0), ("10 million", "10", 0.0), ("3 thousand", "3", 0.0),
      ("10 million", "10000000", 1.0), ("1.5 billion", "1,500,000,000", 1.0),
      ("18 dollars", "18", 1.0), ("5\\text{ cm}^2", "5", 1.0), ("\\$18.90", "18.9", 1.0),
      ("3 square feet", "3", 1.0), ("12cm", "12", 1.0))
def test_unit_stripping_spares_constants_variables_and_magnitudes(pred, gold, expected):
    assert graded(pred, gold) == expected


@kind(("90°", "90^\\circ", 1.0), ("−3", "-3", 1.0), ("½", "\\frac{1}{2}", 1.0), ("x²", "x^2", 1.0),
      ("２８", "28", 1.0), ("2π", "2\\pi", 1.0), ("√2", "\\sqrt{2}", 1.0), ("3×4", "12", 1.0),
      ("91°", "90^\\circ", 0.0), ("x³", "x^2", 0.0), ("−3", "3", 0.0), ("⅓", "\\frac{1}{2}", 0.0))
def test_unicode_symbols_are_mapped(pred, gold, expected):
    assert graded(pred, gold) == expected


@pytest.mark.parametrize(("completion", "gold", "expected"), [
    ("The solutions are \\boxed{3} and \\boxed{5}.", "3, 5", 1.0),
    ("<think> r </think> $x=\\boxed{-2}$ or $x=\\boxed{7}$", "-2, 7", 1.0),
    ("<think> r </think> \\boxed{1}, \\boxed{2}, \\boxed{3}", "1,2,3", 1.0),
    ("<think> r </think> \\boxed{5} or maybe \\boxed{6}", "6", 0.0),  # a hedge commits to both
    ("The solutions are \\boxed{3} and \\boxed{5}.", "3", 0.0),
    ("<think> r </think> \\boxed{3} and \\boxed{5} and \\boxed{7}", "3, 5", 0.0)])
def test_an_answer_split_across_several_boxes(completion, gold, expected):
    assert accuracy([completion], answer=[gold]) == [expected]


@pytest.mark.parametrize(("completion", "gold", "expected"), [
    ("<think> 2+3 = \\boxed{5}? no, it asks 2*3 </think> The answer is 6.", "5", 0.0),
    ("<think> <answer>5</answer> no </think> <answer> 6 </answer>", "5", 0.0),
    ("<think> \\boxed{5} </think>", "5", 0.0),
    ("<think> 2+3 = \\boxed{5}? no, 2*3 </think> The answer is \\boxed{6}.", "6", 1.0),
    ("chat template opened the block </think> \\boxed{6}", "6", 1.0)])
def test_the_answer_is_never_taken_from_inside_the_reasoning(completion, gold, expected):
    assert accuracy([completion], answer=[gold]) == [expected]


@pytest.mark.parametrize("completion", [
    "<think> first try: \\boxed{5}, so", "<think> <answer> 5 </answer> and",
    "<think> a </think> <think> \\boxed{5}", "<think>" + " \\boxed{5}" * 100])
def test_truncated_reasoning_scores_zero(completion):
    assert accuracy([completion], answer=["5"]) == [0.0]
    assert parse_completion(completion).closed is False


def test_equal_rewards_give_exactly_zero_advantage_and_count_as_zero_std():
    weights = {"accuracy": 1.0, "readable_format": 0.5, "language_consistency": 0.5}  # reasoning_rl
    cases = ["<think> we add the two numbers and check it again slowly </think> The answer is \\boxed{7}.",
             "<think> считаем и затем we add them up carefully </think> The answer is \\boxed{8}.",
             "<think> 3+4 </think> \\boxed{7}"]
    for text in cases:
        rewards, _ = score([text] * 8, {"answer": ["7"] * 8}, weights)
        assert torch.equal(group_advantages(rewards, 8), torch.zeros(8))
        assert zero_std_groups(rewards, 8).tolist() == [True]
    for noisy in ([0.7 + 1e-9 * i for i in range(8)], [1.0, 1.0 + 2e-7, 1.0, 1.0]):
        rewards = torch.tensor(noisy, dtype=torch.float32)
        for scale in ("group", "batch", "none"):
            assert torch.equal(group_advantages(rewards, len(noisy), scale_rewards=scale), torch.zeros(len(noisy)))
    different = torch.tensor([1.0, 1.0, 1.0, 0.999])  # a real difference still counts
    assert not zero_std_groups(different, 4).item() and group_advantages(different, 4).abs().max() > 0.5


@pytest.mark.parametrize(("samples", "gold", "expected"), [
    (["3", "0.5", "\\frac{1}{2}", "3", "1/2"], "\\frac{1}{2}", 1.0),
    (["\\sqrt{117}", "7", "3\\sqrt{13}", "7", "\\sqrt{117}"], "3\\sqrt{13}", 1.0),
    (["28\\%", "5", "28", "5", "**28**"], "28", 1.0),
    (["7", "1/2", "7", "0.5", "7"], "\\frac{1}{2}", 0.0),  # 3 votes beat 2
    (["4", "5", "5", "4", "6"], "5", 0.0),  # a tie goes to the answer seen first
    (["5", "4", "4", "5", "6"], "5", 1.0)])
def test_cons_at_k_votes_equivalent_spellings_together(samples, gold, expected):
    rows = [{"prompt": "p", "answer": gold}]
    texts = [f"<think> r </think> \\boxed{{{s}}}" for s in samples]
    correct = accuracy(texts, answer=[gold] * len(samples))
    assert consensus(rows, texts, correct, k=len(samples)) == expected


def test_dataset_native_gold_columns(caplog):
    gsm8k = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72"
    math = "so the sum is $\\boxed{\\frac{3}{4}}$."
    assert accuracy(["\\boxed{72}", "\\boxed{71}"], answer=[gsm8k] * 2) == [1.0, 0.0]
    assert accuracy(["\\boxed{72}", "\\boxed{0.75}", "\\boxed{1}"], solution=[gsm8k, math, math]) == [1.0, 1.0, 0.0]
    assert accuracy(["#### 1,000"], answer=["1000"]) == [1.0]
    assert gold_answer("#### 1,234") == "1,234" and gold_answer(math) == "\\frac{3}{4}"
    caplog.set_level(logging.WARNING, logger="model.rewards.accuracy")
    for _ in range(2):
        assert accuracy(["\\boxed{72}"], gold=["72"]) == [None]
    assert [r.getMessage() for r in caplog.records].count(caplog.records[0].getMessage()) == 1
    assert "answer, solution" in caplog.records[0].getMessage() and "gold" in caplog.records[0].getMessage()


@pytest.mark.parametrize("attack", [
    "\\boxed{" * 40_000, "<answer>" * 25_000, "<think>" * 25_000, "{" * 200_000 + "\\boxed{5}",
    "</think>" + "\\boxed{" * 40_000 + "1", "</think>" + "\\boxed{\\boxed{" * 20_000 + "}" * 40_000,
    "</think> <answer>" * 20_000 + "```" * 10_000])
def test_answer_extraction_stays_linear_on_200_kb_of_unclosed_markup(attack):
    assert len(attack) >= 150_000
    assert accuracy([attack], answer=["5"])[0] in (0.0, 1.0)
    assert get_reward("format")([attack]) == [0.0]
    assert get_reward("readable_format")([attack]) == [0.0]


def test_math_verify_is_bounded_off_the_main_thread(monkeypatch, capfd, caplog):
    monkeypatch.setattr(equivalence, "TIMEOUT_S", 1.0)
    caplog.set_level(logging.WARNING, logger="model.rewards.equivalence")
    slow = "10^{10^{10}}"  # sympy would build a ten-billion-digit integer
    results = {}

    def grade():
        results["huge"] = graded(slow, "5")
        results["power"] = graded("(x+1)^{100000}", "x^{100000}")  # sympy expands for seconds
        results["tower"] = graded("10^{10^{10}}", "10^{10^{10}}+1")
        results["long"] = graded("+".join(["x^{2}"] * 1200), "y")  # 6,000 characters

    worker = threading.Thread(target=grade)
    worker.start()
    worker.join(timeout=120)
    assert not worker.is_alive() and results == {"huge": 0.0, "power": 0.0, "tower": 0.0, "long": 0.0}
    out, err = capfd.readouterr()
    assert "x^{2}+x^{2}" not in out + err and slow not in out and "100000" not in out
    assert all(len(r.getMessage()) < 200 for r in caplog.records)


def test_every_normalisation_rule_is_idempotent_and_keys_agree():
    for text in ["28\\%", "2 1/2", "**73**", "1{,}000", "90°", "10 million", "$\\$18.90$", "x = 5",
                 "\\left( 3, \\frac{\\pi}{2} \\right)", "3, 500", "\\text{(C)}", "5\\text{ cm}^2"]:
        assert normalize(normalize(text)) == normalize(text)
    assert answer_key("0.5") == answer_key("\\frac{1}{2}") == answer_key("1/2") == answer_key("\\dfrac12")
    assert answer_key("3, 500") != answer_key("3500") and answer_key("3 4") != answer_key("34")
    assert exact_value("1,000") is not None and exact_value("3, 500") is None


def test_math500_golds_match_themselves_and_no_other_row():
    from data.loaders import load_math500

    golds = [row["answer"] for row in load_math500(shared_data("math500/test.jsonl"))]
    assert len(golds) == 500
    completions = [f"<think> r </think> The answer is \\boxed{{{g}}}." for g in golds]
    assert accuracy(completions, answer=golds) == [1.0] * 500
    others = []
    for i, gold in enumerate(golds):  # the next row whose answer is not the same by the rules alone
        others.append(next(golds[k % 500] for k in range(i + 1, i + 500)
                           if answer_key(golds[k % 500]) != answer_key(gold) and not same_answer(golds[k % 500], gold)))
    assert accuracy([f"\\boxed{{{o}}}" for o in others], answer=golds) == [0.0] * 500


def test_all_gsm8k_golds_parse():
    from data.loaders import load_gsm8k

    rows = load_gsm8k(shared_data("gsm8k/test.jsonl"))
    assert len(rows) == 1319
    assert all(exact_value(normalize(gold_answer(row["solution"]))) is not None for row in rows)
    scores = accuracy([f"\\boxed{{{row['answer']}}}" for row in rows], solution=[row["solution"] for row in rows])
    assert scores == [1.0] * 1319


def _grade_in_daemon(_):
    from model.rewards.equivalence import equivalent

    return equivalent("\\sqrt{117}", "3\\sqrt{13}"), equivalent("2i", "2"), equivalent("\\frac{1}{2^{99}}", "2^{-98}")


def test_a_daemonic_process_grades_in_process():
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(1) as pool:  # its workers may not have children
        assert pool.map(_grade_in_daemon, [0]) == [(True, False, False)]


# Found by attacking the grader as a policy under RL would (each a 1.0 for a wrong answer before).
@kind(("\\infty", "72", 0.0), ("-\\infty", "5", 0.0), ("\\frac{1}{0}", "5", 0.0), ("\\log 0", "5", 0.0),
      ("\\infty", "-\\infty", 0.0), ("\\infty", "\\infty", 1.0), ("(-\\infty, 5)", "(-\\infty, 5)", 1.0))
def test_infinity_equals_only_itself(pred, gold, expected):
    assert graded(pred, gold) == expected


@kind(("10^{100}+\\sqrt{2}", "10^{100}", 0.0), ("5 + 10^{-70}\\sqrt{2}", "5", 0.0),
      ("\\pi(1+10^{-70})", "\\pi", 0.0), ("\\sqrt{10^{100}+1}", "10^{50}", 0.0),
      ("\\sqrt{5+2\\sqrt{6}}", "\\sqrt{2}+\\sqrt{3}", 1.0), ("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}", 1.0))
def test_a_tiny_irrational_difference_is_a_difference(pred, gold, expected):
    assert graded(pred, gold) == expected


@kind(("\\neq 5", "5", 0.0), ("x \\not= 5", "5", 0.0), ("\\approx 5", "5", 0.0), ("x \\to 5", "5", 0.0),
      ("5 = 6", "6", 0.0), ("5 \\lor 6", "6", 0.0), ("x = 5 \\text{ or } x = 6", "6", 0.0), ("\\pm 5", "5", 0.0),
      ("\\boxed{5} \\text{ or } 6", "5", 0.0), ("5, -5", "\\pm 5", 1.0), ("x \\le 5", "x \\leq 5", 1.0))
def test_a_relation_the_gold_lacks_is_not_the_gold(pred, gold, expected):
    assert graded(pred, gold) == expected


@kind(("silent", "listen", 0.0), ("\\text{night}", "\\text{thing}", 0.0), ("\\text{Celia}", "\\text{Alice}", 0.0),
      ("X", "x", 0.0), ("\\text{Monday}", "monday", 1.0), ("\\text{(C)}", "C", 1.0), ("Evelyn", "\\text{Evelyn}", 1.0))
def test_text_answers_are_compared_as_text(pred, gold, expected):
    assert graded(pred, gold) == expected


@kind(("2.0000001", "2", 0.0), ("1000000.9", "1000000", 0.0), ("0.5000001", "\\frac{1}{2}", 0.0),
      ("(0.5000001)", "0.5", 0.0), ("\\frac{2.0000001}{2}", "1.0", 0.0), ("2.50", "\\frac{5}{2}", 1.0),
      ("0.3333333", "\\frac{1}{3}", 1.0), ("1." + "0" * 440 + "1", "1." + "0" * 440 + "2", 0.0))
def test_no_tolerance_against_a_terminating_value(pred, gold, expected):
    assert graded(pred, gold) == expected


@kind(("5 millions", "5", 0.0), ("5 lakh", "5", 0.0), ("5 bn", "5", 0.0), ("5 tens", "5", 0.0), ("5K", "5", 0.0),
      ("5 millions", "5000000", 1.0), ("2 crore", "20000000", 1.0), ("5K", "5000", 1.0),
      ("12345678901234567890123456789 million", "12345678901234567890123456788 million", 0.0))
def test_magnitude_words_scale_exactly(pred, gold, expected):
    assert graded(pred, gold) == expected


@kind(("y=2", "x=2", 0.0), ("a=3", "b = 3", 0.0), ("x=2", "x = 2", 1.0), ("x=2", "2", 1.0), ("2", "y=2", 1.0))
def test_assignments_to_different_variables_differ(pred, gold, expected):
    assert graded(pred, gold) == expected


@kind(("7\u200b2", "72", 1.0), ("\u200f72", "72", 1.0), ("€5", "5", 1.0), ("5£", "5", 1.0), ("1e3", "1000", 1.0),
      ("1.5e3", "1500", 1.0), ("\u201072", "-72", 1.0), ("1e3", "100", 0.0), ("2e", "2", 0.0))
def test_invisible_characters_currency_and_scientific_notation(pred, gold, expected):
    assert graded(pred, gold) == expected


@pytest.mark.parametrize(("completion", "gold", "expected"), [
    ("<think> r </think> **5**, **6**", "6", 0.0), ("<think> r </think> **5**, **6**", "5, 6", 1.0),
    ("<answer></answer> \\boxed{5}", "5", 1.0), ("<think> r </think> Final answer: 5.", "5", 1.0),
    ("<think> r </think> #### Final Answer\nThe answer is 5.", "5", 1.0), ("\\boxed{2**3}", "23", 0.0)])
def test_summary_shapes(completion, gold, expected):
    assert accuracy([completion], answer=[gold]) == [expected]


def test_golds_from_solutions_and_numbers():
    heading = "## Solution\n\n#### Final Answer\n$\\boxed{5}$"
    assert gold_answer(heading) == "5" and gold_answer("so \\boxed{x=3}, then \\boxed{5}") == "5"
    assert gold_answer(1e-7) == "0.0000001" and gold_answer(72) == "72" and gold_answer(True) is None
    assert accuracy(["\\boxed{0.0000001}", "\\boxed{10000000000000000}"], answer=[1e-7, 1e16]) == [1.0, 1.0]


def test_infinity_does_not_win_votes():
    assert equivalence.vote(["\\infty", "3", "4", "4", "5"]) == (2, [0, 1, 2, 2, 4])


@pytest.mark.parametrize(("reasoning", "language", "expected"), [
    ("我们 " + " ".join(["w\u200de a\u200dd\u200dd"] * 5) + " 然后", "zh", 2 / 7),  # zero-width joiners
    ("我们 w\u200be a\u200bd\u200bd 然后", "zh", 4 / 6),
    ("我们 t h e n 然后", "zh", 4 / 5),  # letters spaced out
    ("我们 𝐭𝐡𝐞𝐧 然后", "zh", 4 / 5),  # mathematical bold
    ("we add κ α ι τ ο here", "en", 3 / 4),
    ("so 𝑥 = 2 and we stop", "en", 1.0)])  # one math letter is still a variable
def test_another_language_cannot_be_hidden(reasoning, language, expected):
    assert language_score(reasoning, language) == pytest.approx(expected)


@kind(("1 " + "a" * 2_000 + "!", "1", 0.0), ("1 " + "a" * 900, "1", 0.0), ("\\frac{1}{2} blah", "\\frac{1}{2}", 0.0),
      ("72 apples and pears", "72", 0.0), ("\\sin x", "\\sin{x}", 1.0), ("72 apples", "72", 0.0))  # a count noun is not a unit
def test_prose_the_gold_lacks_is_not_skipped(pred, gold, expected):
    assert graded(pred, gold) == expected


# The second attack round: each a 1.0 for a wrong answer, a crash or a 0.0 for a common spelling.
@kind(("5 is not correct", "5", 0.0), ("5 wrong", "5", 0.0), ("5 less", "5", 0.0), ("5 squared", "5", 0.0),
      ("6 approximately", "6", 0.0), ("5 \\text{ cm wrong}", "5", 0.0), ("5 million dollars", "5000000", 1.0),
      ("6 m/s", "6", 1.0), ("6 km/h", "6", 1.0), ("6°C", "6", 1.0), ("\\text{6 cm}", "6", 1.0),
      ("15\\ \\mathrm{cm^2}", "15", 1.0), ("90\\degree", "90", 1.0), ("5\\text{ m}", "5", 1.0))
def test_only_units_are_dropped_after_a_number(pred, gold, expected):
    assert graded(pred, gold) == expected


@kind(("5 \\Longrightarrow 6", "6", 0.0), ("5 \\mapsto 6", "6", 0.0), ("5 \\therefore 6", "6", 0.0),
      ("5 \\foo 6", "6", 0.0), ("6 \\foo 5", "5", 0.0), ("\\lesssim 6", "6", 0.0),
      ("\\frac{\\pi}{2}", "\\frac{\\pi}{2}", 1.0), ("2\\sqrt{3}", "\\sqrt{12}", 1.0))
def test_a_command_math_verify_would_skip_is_not_skipped(pred, gold, expected):
    assert graded(pred, gold) == expected


@kind(("\\frac{1}{2}^{3}", "\\frac{1}{23}", 0.0), ("x_{1}^{2}", "x_{12}", 0.0), ("\\frac{1}{2}^{3}", "\\frac18", 1.0),
      ("{10}^{6}", "1000000", 1.0), ("x²³", "x^{23}", 1.0))
def test_only_unicode_superscripts_merge(pred, gold, expected):
    assert graded(pred, gold) == expected


@kind(("3 \\, 4", "34", 0.0), ("3~ 4", "34", 0.0), ("1\\quad 000", "1000", 0.0), ("5 \\text{ } 6", "56", 0.0),
      ("5 \\text{ and } 6", "56", 0.0), ("11111111100", "11,\\! 111,\\! 111,\\! 100", 1.0),
      ("\\begin{pmatrix}-2\\\\-14\\\\-7\\end{pmatrix}", "\\begin{pmatrix} -2 \\\\ -14 \\\\ -7 \\end{pmatrix}", 1.0))
def test_spacing_runs_and_row_breaks(pred, gold, expected):
    assert graded(pred, gold) == expected


@kind(("1" * 320 + ".5", "\\frac{1}{3}", 0.0), ("1e9999", "5", 0.0), ("0.\\overline{3}", "\\frac13", 1.0),
      ("0.1\\overline{6}", "\\frac{1}{6}", 1.0), ("6\\text{.}", "6", 1.0), ("\\color{red}6", "6", 1.0))
def test_huge_numbers_repeating_decimals_and_trimmings(pred, gold, expected):
    assert graded(pred, gold) == expected


@pytest.mark.parametrize(("completion", "expected"), [
    ("<think> r </think> The final answer is $6$.", 1.0),
    ("Final Answer: The final answer is 6. I hope it is correct.", 1.0),
    ("<think> r </think> The final answer is 7.", 0.0)])
def test_final_answer_sentences(completion, expected):
    assert accuracy([completion], answer=["6"]) == [expected]


def test_votes_keep_the_variable_and_survive_huge_answers():
    assert equivalence.vote(["y=2", "x=2", "x=2"])[0] == 1
    assert equivalence.vote(["1e9999", "5", "5"])[0] == 1
    assert gold_answer(float("nan")) is None and accuracy(["\\boxed{NaN}"], answer=[float("nan")]) == [None]


@pytest.mark.parametrize(("completion", "reward", "expected"), [
    ("<think> r </think> The answer is \\boxed{5}. 这是中文的总结 {}.", "readable_format", 0.0),
    ("<think> r </think> The answer is \\boxed{5}. Also maybe \\boxed{6}.", "readable_format", 0.0),
    ("<think> r </think> The answer is \\boxed{\\frac{1}{2}}.", "readable_format", 1.0),
    ("<think></think><answer></answer>", "format", 0.0), ("<think> r </think><answer> </answer>", "format", 0.0),
    ("<think> r </think> <answer> 5 </answer>", "format", 1.0)])
def test_format_rewards_need_their_parts(completion, reward, expected):
    assert get_reward(reward)([completion]) == [expected]


@pytest.mark.parametrize(("reasoning", "expected"), [
    ("我们 \\then \\we \\add \\the \\numbers 然后", 4 / 9), ("我们 t.h.e.n 然后", 4 / 5), ("我们 ⓣⓗⓔⓝ 然后", 4 / 5),
    ("我们 $then we add the numbers$ 然后", 4 / 8), ("我们 $\\frac{a}{b} + \\sin x$ 然后", 1.0)])
def test_language_cannot_hide_in_commands_symbols_or_math(reasoning, expected):
    assert language_score(reasoning, "zh") == pytest.approx(expected)


# The third attack round: other instances of the issue's kinds.
@kind(("3141590.0", "10^6\\pi", 0.0), ("1414213.0", "1000000\\sqrt{2}", 0.0), ("3.14159", "\\pi", 0.0),
      ("3141592.654", "10^6\\pi", 1.0), ("1.414214", "\\sqrt{2}", 1.0), ("33333.33", "\\frac{100000}{3}", 1.0),
      ("33333.3", "\\frac{100000}{3}", 0.0))
def test_a_decimal_must_round_the_value_at_its_written_precision(pred, gold, expected):
    assert graded(pred, gold) == expected


@kind(("28\\text{\\%}", "28", 1.0), ("28\\text{ percent}", "28\\%", 1.0), ("28", "28\\text{\\%}", 1.0),
      ("3 \\text{ thousand dollars}", "3000", 1.0), ("5\\pi \\text{ radians}", "5\\pi", 1.0),
      ("\\pi \\text{ cm}", "\\pi", 1.0), ("3 \\text{ thousand dollars}", "3", 0.0))
def test_units_and_percent_written_in_text(pred, gold, expected):
    assert graded(pred, gold) == expected


@kind(("90º", "90^\\circ", 1.0), ("90˚", "90^\\circ", 1.0), ("√(13)", "\\sqrt{13}", 1.0), ("1011₂", "1011_2", 1.0),
      ("5⁄2", "\\frac52", 1.0), ("101_2", "101_3", 0.0), ("3r^2", "3R^2", 0.0), ("1011₂", "1011_3", 0.0))
def test_more_unicode_and_what_a_base_or_a_case_changes(pred, gold, expected):
    assert graded(pred, gold) == expected


@kind(("6 - 5 i", "6 - 5i", 1.0), ("3 + 4 i", "3+4i", 1.0), ("6 - 5\\cdot i", "6-5i", 1.0), ("4 i", "4", 0.0),
      ("\\begin{bmatrix} -2 \\\\ -14 \\end{bmatrix}", "\\begin{pmatrix} -2 \\\\ -14 \\end{pmatrix}", 1.0),
      ("\\begin{vmatrix} 1 & 2 \\\\ 3 & 4 \\end{vmatrix}", "\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}", 0.0),
      ("x=3, x=5", "3, 5", 1.0), ("x=1, x=-2", "1,-2", 1.0), ("x=3, y=5", "3, 5", 0.0))
def test_complex_numbers_matrices_and_solution_lists(pred, gold, expected):
    assert graded(pred, gold) == expected


@pytest.mark.parametrize(("summary", "expected"), [
    ("The answer is 6.", 1.0), ("So the answer is 6", 1.0), ("The answer is: 6", 1.0), ("The answer is $6$.", 1.0),
    ("Therefore, the answer is **6**.", 1.0), ("**Final Answer**\n\n6", 1.0), ("### Answer\n**6**", 1.0), ("_6_", 1.0),
    ("The answer is 7.", 0.0), ("The answer is 6 or 7", 0.0), ("the answer is not 6 but 7", 0.0)])
def test_answer_sentences_and_headings(summary, expected):
    assert accuracy([f"<think> r </think> {summary}"], answer=["6"]) == [expected]


def test_a_truncated_continuation_of_a_prompts_think_is_not_graded():
    from types import SimpleNamespace

    from model.rollout import decode_completions

    tokenizer = SimpleNamespace(pad_token_id=0, eos_token_id=9, decode=lambda ids, **_: "".join(
        {1: "<think>", 2: "\n", 3: "Q", 4: "\\boxed{5}", 5: " wait", 6: "</think>", 7: " \\boxed{5}"}[i] for i in ids))
    rollout = SimpleNamespace(prompt_ids=torch.tensor([[3, 1, 2], [0, 3, 3]]), prompt_mask=torch.tensor([[1, 1, 1], [0, 1, 1]]),
                              completion_ids=torch.tensor([[4, 5, 0], [4, 0, 0]]), completion_mask=torch.tensor([[1, 1, 0], [1, 0, 0]]))
    texts = decode_completions(tokenizer, rollout, [9])
    assert texts == ["<think>\\boxed{5} wait", "\\boxed{5}"]
    assert accuracy(texts, answer=["5", "5"]) == [0.0, 1.0]


def test_votes_unite_groups_an_answer_joins():
    assert equivalence.vote(["0.3333333", "0.33333333", "7", "7", "\\frac13"]) == (0, [0, 0, 2, 2, 0])


def test_numpy_golds_and_yaml_12_numbers():
    import numpy as np

    from infra.config import load_yaml

    assert accuracy(["\\boxed{0.5}", "\\boxed{3}"], answer=[np.float64(0.5), np.int64(3)]) == [1.0, 1.0]
    assert load_yaml("a: 017\nb: 1:30\nc: 1e-3\nd: 0x1f") == {"a": 17, "b": "1:30", "c": 0.001, "d": 31}


@pytest.mark.parametrize(("reasoning", "language", "expected"), [
    ("人々は時々それを使う", "ja", 1.0), ("所以答案是5cm", "zh", 1.0), ("ㄅㄆㄇ we", "zh", 3 / 4),
    ("计算 AB、BC 和 CA 的长度", "zh", 6 / 9), ("我们 WE ADD THE 然后", "zh", 4 / 7)])
def test_language_units_for_units_and_ideographs(reasoning, language, expected):
    assert language_score(reasoning, language) == pytest.approx(expected)
