"""Row filters of cold start and rejection sampling: good rows pass, each broken row is removed
by its own filter, and the counts are exact."""

from __future__ import annotations

import logging
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from data import filters
from data.filters import (
    STEPS,
    EvalIndex,
    correct,
    curate,
    decontaminate,
    dedupe_exact,
    dedupe_ngram,
    keep_if,
    language_scripts,
    length_window,
    no_repetition,
    readable,
    readable_parts,
    reasoning_of,
    single_language,
    to_readable,
)
from data.formatting import r1_zero_completion
from data.loaders import load_gsm8k
from data.synthetic import Noise, base_corpus

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger(__name__)

VOCAB = ("the", "sum", "of", "two", "numbers", "is", "even", "so", "we", "add", "them", "then",
         "check", "each", "digit", "carry", "one", "into", "next", "column", "and", "write",
         "result", "below", "line", "because", "every", "step", "keeps", "total", "same")
CYRILLIC = ("сумма", "пишем", "перенос", "итак", "проверим")
R1_ZERO = re.compile(r"(?s)<think> (.*) </think> <answer> (.*) </answer>")


def prose(seed: int, words: int) -> str:
    """Seeded English-like words: no 8-gram repeats, one script (Latin)."""
    rng = random.Random(seed)
    return " ".join(rng.choice(VOCAB) for _ in range(words))


def row(i: int, reasoning: str, answer: str = "7", *, prompt: str | None = None,
        tagged: bool = True) -> dict:
    completion = (r1_zero_completion(reasoning, answer) if tagged
                  else f"<think> {reasoning} </think> the answer is {answer}")
    return {"id": f"r{i}", "prompt": prompt or f"Question {i}: what is {i} + 7 - {i}?",
            "source": "toy", "answer": "7", "completion": completion}


def toy_judge(completions, answer, **columns):
    """1.0 when the readable summary's answer equals the gold answer, None without a gold."""
    scores = []
    for completion, gold in zip(completions, answer):
        parts = readable_parts(completion)
        scores.append(None if gold is None else float(parts is not None and parts[1] == gold))
    return scores


@pytest.fixture(scope="module")
def corpus() -> list[dict]:
    return base_corpus(2000, mix={"arithmetic": 0.75, "countdown": 0.25}, noise=Noise(), seed=0)


@pytest.fixture(scope="module")
def gsm8k() -> list[dict]:
    return load_gsm8k()


# ----------------------------------------------------------------------------- module


def test_import_is_light_and_points_one_way():
    code = ("import sys, data.filters; bad = [m for m in sys.modules if m.split('.')[0] in "
            "('model', 'flows', 'tasks', 'great_expectations', 'torch')]; sys.exit(bool(bad))")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


# ----------------------------------------------------------------------------- readable


def test_to_readable_rewrites_r1_zero_format():
    raw = "<think>\n 3 + 4 = 7 , so 7 \n</think>\n<answer> 7 </answer>"
    assert to_readable(raw) == "<think> 3 + 4 = 7 , so 7 </think> The answer is \\boxed{7}."
    assert readable_parts(to_readable(raw)) == ("3 + 4 = 7 , so 7", "7")


@pytest.mark.parametrize("completion", [
    "no tags at all, the answer is 7",
    "<think> unclosed reasoning <answer> 7 </answer>",
    "<think>   </think> <answer> 7 </answer>",
    "<think> reasoning </think> the answer is 7",
    "<think> reasoning </think> <answer>  </answer>",
    "<answer> 7 </answer> <think> the answer block comes first </think>",
    "<think> first </think> <think> second </think> <answer> 7 </answer>",
    None,
    [{"role": "assistant", "content": "<think> r </think> <answer> 7 </answer>"}],
])
def test_to_readable_none_without_think_block_or_answer(completion):
    assert to_readable(completion) is None


def test_to_readable_takes_last_answer_after_think():
    raw = "<think> try <answer> 5 </answer> no </think> <answer> 6 </answer> <answer> 7 </answer>"
    assert readable_parts(to_readable(raw)) == ("try <answer> 5 </answer> no", "7")


def test_to_readable_round_trip_on_synthetic_completions(corpus):
    tagged = [r["completion"] for r in corpus if "<answer>" in r["completion"]]
    assert 1000 < len(tagged) < len(corpus)  # the corpus keeps its untagged noise
    for completion in tagged:
        reasoning, answer = R1_ZERO.fullmatch(completion).groups()
        text = to_readable(completion)
        assert readable_parts(text) == (reasoning.strip(), answer.strip())
        assert to_readable(text) == text  # idempotent: readable input stays as it is
        assert reasoning_of(text) == reasoning_of(completion)
    untagged = [r["completion"] for r in corpus if "<answer>" not in r["completion"]]
    assert all(to_readable(c) is None for c in untagged)


def test_readable_completions_grade_like_tagged_ones(corpus):
    from model.rewards import accuracy  # the judge stages pass in; data/ itself never imports it

    rows = [r for r in corpus if "<answer>" in r["completion"]]
    columns = {"answer": [r["answer"] for r in rows], "source": [r["source"] for r in rows],
               "numbers": [r.get("numbers") for r in rows]}
    raw = accuracy([r["completion"] for r in rows], **columns)
    rewritten = accuracy([to_readable(r["completion"]) for r in rows], **columns)
    assert rewritten == raw
    assert 0 < sum(raw) < len(raw)  # both right and wrong answers were compared


def test_readable_step_counts_and_does_not_mutate(corpus):
    before = [dict(r) for r in corpus]
    kept, removed = readable(corpus)
    assert removed == sum("<answer>" not in r["completion"] for r in corpus)
    assert len(kept) + removed == len(corpus)
    assert all(readable_parts(r["completion"]) for r in kept)
    assert corpus == before


# ----------------------------------------------------------------------------- predicates


def test_single_language():
    english = row(0, prose(0, 40))
    russian = row(1, " ".join(CYRILLIC * 4) + " 3 + 4 = 7")
    mixed = row(2, prose(2, 40) + " " + " ".join(CYRILLIC[:2]))
    symbols = row(3, "3 + 4 = 7 , 7 - 1 = 6 , x = 6")
    answer_only_mixed = {**english, "completion": english["completion"] + " ответ"}
    rows = [english, russian, mixed, symbols, answer_only_mixed]
    assert keep_if(rows, single_language) == ([english, russian, symbols, answer_only_mixed], 1)
    assert keep_if(rows, single_language, language="en") == (
        [english, symbols, answer_only_mixed], 2)
    assert keep_if(rows, single_language, language="ru") == ([russian, symbols], 3)
    assert single_language(english, language="LATIN") and single_language(english, "en-US")
    assert single_language(row(4, "한국어 漢字 설명"), language="ko")
    assert not single_language(row(4, "한국어 漢字 설명"))


def test_unknown_language_fails_with_the_known_codes():
    with pytest.raises(ValueError, match="unknown language 'klingon'.*'en'"):
        language_scripts("klingon")


def test_length_window_on_reasoning_with_inclusive_bounds():
    rows = [row(i, "x" * size, answer="y" * 500) for i, size in enumerate((9, 10, 20, 21))]
    kept, removed = keep_if(rows, length_window, min_chars=10, max_chars=20)
    assert [r["id"] for r in kept] == ["r1", "r2"] and removed == 2  # the answer does not count
    assert keep_if(rows, length_window, min_chars=10, max_chars=None)[1] == 1


def test_no_repetition_rejects_loops_keeps_rechecks(corpus):
    loop = row(0, prose(0, 30) + " wait , let me check 3 + 4 = 7 again ." * 5)
    lines = row(1, prose(1, 30) + "\n= 7" * 4 + "\nso 7")  # too short a loop for 8-grams
    recheck = row(2, prose(2, 30) + " wait , let me check 3 + 4 = 7 again ." * 3)
    three_lines = row(3, prose(3, 30) + "\n= 7" * 3 + "\nso 7")
    rows = [loop, lines, recheck, three_lines]
    assert keep_if(rows, no_repetition) == ([recheck, three_lines], 2)
    assert keep_if(rows, no_repetition, max_repeats=5) == (rows, 0)
    assert keep_if(corpus, no_repetition)[1] == 0  # real worked solutions are not loops


# ----------------------------------------------------------------------------- duplicates


def test_dedupe_exact_normalises_case_and_whitespace():
    a, b = row(0, prose(0, 40)), row(1, prose(1, 40))
    a_again = {**a, "id": "a2", "prompt": a["prompt"].upper(),
               "completion": "  " + a["completion"].replace(" ", "\n  ")}
    other_prompt = {**a, "id": "a3", "prompt": "another question entirely"}
    kept, removed = dedupe_exact([a, b, a_again, other_prompt, b])
    assert kept == [a, b, other_prompt] and removed == 2


def test_dedupe_ngram_removes_one_word_change_in_long_completion():
    long_a, long_b = row(0, prose(0, 300)), row(1, prose(1, 300))
    words = long_a["completion"].split()
    words[150] = "elephant"
    near_a = {**long_a, "id": "near", "completion": " ".join(words)}
    assert dedupe_exact([long_a, near_a])[1] == 0
    kept, removed = dedupe_ngram([long_a, long_b, near_a])
    assert kept == [long_a, long_b] and removed == 1
    assert dedupe_ngram([long_a, long_b, near_a], threshold=1.0)[1] == 0
    empty = {**long_a, "id": "empty", "prompt": "", "completion": ""}
    assert dedupe_ngram([empty, dict(empty)])[1] == 0  # nothing to compare: kept


def _ngram_set(r: dict, n: int) -> set:
    tokens = re.findall(r"\w+|[^\w\s]", (r["prompt"] + "\n" + r["completion"]).lower())
    return set(zip(*(tokens[k:] for k in range(n)))) if len(tokens) >= n else {tuple(tokens)}


def test_dedupe_ngram_matches_exhaustive_search(corpus):
    """Planted near-duplicates at several edit distances: LSH + verification keeps exactly the
    rows an O(n^2) search keeps."""
    rng = random.Random(0)
    base = [row(i, " ".join(r["completion"] for r in corpus[i * 8:(i + 1) * 8]))
            for i in range(120)]
    rows = list(base)
    for i in range(120):
        words = base[i]["completion"].split()
        for _ in range(rng.choice((1, 2, 4, 8, 16))):
            words[rng.randrange(len(words))] = rng.choice(VOCAB)
        rows.insert(rng.randrange(len(rows) + 1), {**base[i], "id": f"edit{i}",
                                                     "completion": " ".join(words)})
    sets = [_ngram_set(r, 8) for r in rows]
    expected = []
    for i, s in enumerate(sets):
        if all(len(s & sets[j]) / len(s | sets[j]) < 0.8 for j in expected):
            expected.append(i)
    kept, removed = dedupe_ngram(rows)
    assert [r["id"] for r in kept] == [rows[i]["id"] for i in expected]
    assert 30 < removed < 120 and removed == len(rows) - len(expected)
    position = {r["id"]: i for i, r in enumerate(rows)}
    planted = [(sets[position[f"r{i}"]], sets[position[f"edit{i}"]]) for i in range(120)]
    assert any(0.5 < len(a & b) / len(a | b) < 0.8 for a, b in planted)  # similar, yet kept


def test_dedupe_ngram_on_20k_rows(record_property):
    rows = base_corpus(20_000, mix={"arithmetic": 0.75, "countdown": 0.25}, noise=Noise(), seed=1)
    start = time.perf_counter()
    kept, removed = dedupe_ngram(rows)
    elapsed = time.perf_counter() - start
    record_property("dedupe_ngram_20k_seconds", round(elapsed, 2))
    log.info("dedupe_ngram on %d rows: %.2f s, removed %d", len(rows), elapsed, removed)
    assert removed >= dedupe_exact(rows)[1]  # every exact duplicate is also a near one
    assert len(kept) + removed == len(rows)


# ----------------------------------------------------------------------------- contamination


def test_decontaminate_against_gsm8k_test(gsm8k, corpus):
    question = gsm8k[0]["prompt"]
    span = " ".join(question.split()[1:11])  # ten consecutive words of a real test question
    leaked = row(0, prose(0, 40), prompt=f"Farm riddle. {span.upper()}? Explain the count.")
    clean = row(1, prose(1, 40), prompt="A farmer has 16 hens that lay eggs every day; how many?")
    short = row(2, prose(2, 40), prompt="  What is 2+3 ?")
    eval_prompts = [r["prompt"] for r in gsm8k] + ["What is 2 + 3?"]
    for n in (8, 10):
        assert decontaminate([leaked, clean, short], eval_prompts, n=n) == ([clean], 2)
    nine_words = row(3, prose(3, 40), prompt=" ".join(question.split()[1:10]) + " then stop")
    assert decontaminate([nine_words], eval_prompts, n=10)[1] == 0
    assert decontaminate([nine_words], eval_prompts, n=8)[1] == 1
    index = EvalIndex(eval_prompts, n=10)
    assert decontaminate(corpus, index) == (corpus, 0)  # synthetic train prompts are clean


# ----------------------------------------------------------------------------- correctness


def test_correct_keeps_only_full_score_and_passes_columns():
    good, wrong = readable([row(0, prose(0, 40)), row(1, prose(1, 40), answer="8")])[0]
    unjudged = {**good, "id": "r2", "answer": None}
    seen = {}

    def judge(completions, **columns):
        seen.update(columns)
        return toy_judge(completions, **columns)

    assert correct([good, wrong, unjudged], judge) == ([good], 2)
    assert set(seen) == {"id", "prompt", "source", "answer"}
    assert seen["answer"] == ["7", "7", None]
    assert correct([], judge) == ([], 0)
    with pytest.raises(ValueError, match="2 scores for 3 rows"):
        correct([good, wrong, unjudged], lambda completions, **_: [1.0, 1.0])


# ----------------------------------------------------------------------------- pipeline


def _bad_rows() -> dict[str, list[dict]]:
    """Rows that each break exactly one step, by the step that must remove them."""
    good = row(100, prose(100, 300))
    words = good["completion"].split()
    words[200] = "elephant"
    return {
        "readable": [row(1, prose(1, 40), tagged=False)],
        "correct": [row(2, prose(2, 40), answer="8")],
        "single_language": [row(3, prose(3, 40) + " " + " ".join(CYRILLIC[:2]))],
        "length_window": [row(4, "3 + 4 = 7"), row(5, prose(5, 600))],
        "no_repetition": [row(6, prose(6, 30) + " so we add them again ." * 6)],
        "dedupe_exact": [{**good, "id": "exact", "prompt": good["prompt"].upper(),
                          "completion": good["completion"].replace(" ", "  ")}],
        "dedupe_ngram": [{**good, "id": "near", "completion": " ".join(words)}],
        "decontaminate": [row(7, prose(7, 40), prompt="Eval question: what is seven plus "
                                                     "three minus two times one ?")],
    }


def test_curate_counts_each_filter_exactly():
    goods = [row(100, prose(100, 300))] + [row(i, prose(i, 60)) for i in range(10, 14)]
    bad = _bad_rows()
    rows = goods[:1] + [r for rs in bad.values() for r in rs] + goods[1:]
    kept, counts = curate(rows, steps=list(STEPS), judge=toy_judge, language="en",
                          eval_prompts=["What is seven plus three minus two times one?"],
                          min_chars=40, max_chars=2500)
    assert counts == {step: len(bad[step]) for step in STEPS}
    assert list(counts) == list(STEPS)
    assert [r["id"] for r in kept] == [r["id"] for r in goods]
    assert all(readable_parts(r["completion"]) for r in kept)


def test_curate_runs_steps_in_the_given_order():
    a = row(0, prose(0, 60))
    rows = [a, {**a, "id": "a2", "completion": a["completion"].replace("<answer> 7", "<answer>7")}]
    # the two differ only inside the answer tags, which the readable rewrite strips
    assert curate(rows, steps=["dedupe_exact"])[1] == {"dedupe_exact": 0}
    kept, counts = curate(rows, steps=["readable", "dedupe_exact"])
    assert counts == {"readable": 0, "dedupe_exact": 1} and kept[0]["id"] == "r0"
    untagged = row(1, prose(1, 60), tagged=False)
    assert curate([untagged], steps=["dedupe_exact", "readable"])[1] == {
        "dedupe_exact": 0, "readable": 1}


@pytest.mark.parametrize("kwargs, message", [
    ({"steps": ["readable", "tokenize"]}, "unknown curation steps \\['tokenize'\\]"),
    ({"steps": ["readable", "readable"]}, "more than once"),
    ({"steps": ["correct"]}, "needs a judge"),
    ({"steps": ["decontaminate"]}, "needs eval_prompts"),
    ({"steps": ["single_language"], "language": "xx"}, "unknown language"),
])
def test_curate_checks_its_configuration_before_running(kwargs, message):
    with pytest.raises(ValueError, match=message):
        curate([row(0, prose(0, 40))], **kwargs)


def test_curate_logs_counts(caplog):
    with caplog.at_level(logging.INFO, logger=filters.__name__):
        curate([row(0, prose(0, 40), tagged=False)], steps=["readable"])
    assert "curate readable: removed 1 of 1 rows" in caplog.text


def test_curate_accepts_a_prebuilt_eval_index():
    index = EvalIndex(["What is seven plus three minus two times one?"], n=4)
    leaked = row(0, prose(0, 40), prompt="so: seven plus three minus two")
    kept, counts = curate([leaked, row(1, prose(1, 40))], steps=["decontaminate"],
                          eval_prompts=index, ngram=8)
    assert counts == {"decontaminate": 1} and kept[0]["id"] == "r1"
