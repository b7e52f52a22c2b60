"""Data-quality suites: good rows pass, each deliberately broken variant fails its own rule."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from data import loaders
from data.quality import (
    SUITES,
    DataQualityError,
    check_rows,
    scripts_of,
    validate_rows,
    write_checked_jsonl,
)
from data.filters import curate, readable
from data.general import general_sft_rows
from data.synthetic import Noise, base_corpus, make_rows

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus() -> list[dict]:
    return base_corpus(300, mix={"arithmetic": 0.75, "countdown": 0.25}, noise=Noise(), seed=0)


@pytest.fixture(scope="module")
def prompts() -> list[dict]:
    return (make_rows("arithmetic", "train", 50) + make_rows("countdown", "train", 50)
            + loaders.load_gsm8k() + loaders.load_math500() + loaders.load_aime24()
            + loaders.load_humaneval())


CLEAN = Noise(slip=0.0, forget_carry=0.0, fix=0.0, unformatted=0.0)  # every answer right, tagged


@pytest.fixture(scope="module")
def traces() -> list[dict]:
    """Correct readable traces: a noiseless corpus through the readable rewrite."""
    rows, removed = readable(base_corpus(200, mix={"arithmetic": 0.75, "countdown": 0.25},
                                         noise=CLEAN, seed=0))
    assert removed == 0
    return [{k: v for k, v in row.items() if k != "language"} for row in rows]


@pytest.fixture(scope="module")
def sft_mix(traces) -> list[dict]:
    return [{**row, "kind": "reasoning"} for row in traces] + general_sft_rows(100, seed=0)


@pytest.fixture(scope="module")
def prompt_mix() -> list[dict]:
    """All-scenario RL's prompts: reasoning prompts with answers, general ones without."""
    from data.general import general_prompts

    return ([{**row, "kind": "reasoning"} for row in make_rows("arithmetic", "train", 30)]
            + general_prompts(30, seed=0))


def _index(rows: list[dict], source: str) -> int:
    return next(i for i, row in enumerate(rows) if row["source"] == source)


def test_import_does_not_load_great_expectations():
    code = "import sys, data.quality; sys.exit('great_expectations' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


def test_suites_registered_with_one_word_reasons():
    assert set(SUITES) >= {"corpus", "prompts", "sft_mix", "traces"}
    for name, suite in SUITES.items():
        for expectation in suite():
            reason = expectation.meta.get("reason", "")
            assert reason.isalpha(), (name, type(expectation).__name__, reason)


def test_good_corpus_passes_including_untagged_answers(corpus):
    untagged = [r for r in corpus if "<answer>" not in r["completion"]]
    assert untagged, "the corpus should carry its deliberate untagged-answer noise"
    report = check_rows(corpus, "corpus", path="corpus.jsonl")
    assert report.success and report.failures == []
    assert report.n_rows == len(corpus)
    assert report.statistics["unsuccessful_expectations"] == 0
    json.dumps(report.to_dict())  # the report, raw GX result included, is JSON-able


def test_good_prompts_pass_on_synthetic_and_real_rows(prompts):
    assert {r["source"] for r in prompts} == {
        "arithmetic", "countdown", "gsm8k", "math500", "aime24", "humaneval"}
    report = validate_rows(prompts, "prompts")
    assert report.success, report.failures
    assert report.statistics["evaluated_expectations"] == len(SUITES["prompts"]())


def test_code_only_prompts_pass_without_an_answer_column():
    assert validate_rows(loaders.load_humaneval(), "prompts").success


def _set(source: str, field: str, value):
    def mutate(rows: list[dict]) -> int:
        i = _index(rows, source)
        rows[i][field] = value
        return i
    return mutate


def _drop(source: str, field: str):
    def mutate(rows: list[dict]) -> int:
        i = _index(rows, source)
        del rows[i][field]
        return i
    return mutate


def _edit(source: str, field: str, change):
    def mutate(rows: list[dict]) -> int:
        i = _index(rows, source)
        rows[i][field] = change(rows[i][field])
        return i
    return mutate


def _duplicate_id(rows: list[dict]) -> int:
    rows[3]["id"] = rows[2]["id"]
    return 3


MIXED = "<think> 3 + 4 = 7 , проверка , so 7 </think> <answer> 7 </answer>"
LONG = "<think> " + "1 + 1 = 2 , " * 2000 + "</think> <answer> 2 </answer>"
LONG_THINK = "<think> " + "1 + 1 = 2 , " * 2000 + "</think> "  # a first block only 'format' sees

BROKEN = {  # name: (suite, mutate -> broken row index, rule, column, reason)
    "duplicate-id": ("corpus", _duplicate_id,
                     "expect_column_values_to_be_unique", "id", "identity"),
    "empty-prompt": ("prompts", _set("gsm8k", "prompt", ""),
                     "expect_column_values_to_match_regex", "prompt", "content"),
    "non-integer-arithmetic-answer": ("prompts", _set("arithmetic", "answer", "12.5"),
                                      "expect_column_values_to_match_regex", "answer",
                                      "verifiable"),
    "integer-typed-answer": ("prompts", _set("aime24", "answer", 7),
                             "expect_column_values_to_be_of_type", "answer", "schema"),
    "blank-math500-answer": ("prompts", _set("math500", "answer", "  "),
                             "expect_column_values_to_match_regex", "answer", "gradable"),
    "completion-without-think": ("corpus", _set("arithmetic", "completion", "the answer is 7"),
                                 "expect_column_values_to_match_regex", "completion", "format"),
    "over-long-completion": ("corpus", _set("arithmetic", "completion", LONG),
                             "expect_column_value_lengths_to_be_between", "completion",
                             "length"),
    "mixed-scripts": ("corpus", _set("arithmetic", "completion", MIXED),
                      "expect_column_values_to_be_between", "n_scripts", "language"),
    "bad-countdown-numbers": ("prompts", _set("countdown", "numbers", [3, 0, -2]),
                              "expect_column_values_to_be_in_set", "numbers_ok", "solvable"),
    "countdown-numbers-not-ints": ("prompts", _set("countdown", "numbers", ["3", 4]),
                                   "expect_column_values_to_be_in_set", "numbers_ok",
                                   "solvable"),
    "countdown-without-numbers": ("prompts", _drop("countdown", "numbers"),
                                  "expect_column_values_to_not_be_null", "numbers", "solvable"),
    "code-row-without-tests": ("prompts", _drop("humaneval", "tests"),
                               "expect_column_values_to_not_be_null", "tests", "testable"),
    "code-entry-point-not-identifier": ("prompts", _set("humaneval", "entry_point", "has space"),
                                        "expect_column_values_to_match_regex", "entry_point",
                                        "callable"),
    "trace-duplicate-id": ("traces", _duplicate_id,
                           "expect_column_values_to_be_unique", "id", "identity"),
    "trace-without-think": ("traces", _set("arithmetic", "completion", "The answer is \\boxed{7}."),
                            "expect_column_values_to_match_regex", "completion", "format"),
    "trace-with-answer-tags": ("traces", _edit("arithmetic", "completion",
                                               lambda c: c + " <answer> 7 </answer>"),
                               "expect_column_values_to_not_match_regex", "completion", "readable"),
    "trace-blank-summary": ("traces", _edit("countdown", "completion",
                                            lambda c: c.split("</think>")[0] + "</think>  "),
                            "expect_column_values_to_match_regex", "summary", "summary"),
    "trace-unboxed-answer": ("traces", _edit("countdown", "completion",
                                             lambda c: c.replace("\\boxed{", "{")),
                             "expect_column_values_to_match_regex", "summary", "boxed"),
    "trace-wrong-boxed-answer": ("traces", _edit("arithmetic", "completion",
                                                 lambda c: c.replace("\\boxed{", "\\boxed{9")),
                                 "expect_column_values_to_be_in_set", "boxed_ok", "agreement"),
    "trace-without-answer": ("traces", _drop("arithmetic", "answer"),
                             "expect_column_values_to_not_be_null", "answer", "reward"),
    "trace-mixed-scripts": ("traces", _edit("arithmetic", "completion",
                                            lambda c: c.replace("write", "пишем", 1)),
                            "expect_column_values_to_be_between", "n_scripts", "language"),
    "trace-over-long": ("traces", _edit("arithmetic", "completion", lambda c: LONG_THINK + c),
                        "expect_column_value_lengths_to_be_between", "completion", "length"),
    "mix-duplicate-id": ("sft_mix", _duplicate_id,
                         "expect_column_values_to_be_unique", "id", "identity"),
    "mix-unknown-kind": ("sft_mix", _set("facts", "kind", "chat"),
                         "expect_column_values_to_be_in_set", "kind", "mixture"),
    "mix-without-kind": ("sft_mix", _drop("safety", "kind"),
                         "expect_column_values_to_not_be_null", "kind", "mixture"),
    "mix-general-blank-summary": ("sft_mix", _edit("facts", "completion",
                                                   lambda c: c.split("</think>")[0] + "</think>"),
                                  "expect_column_values_to_match_regex", "summary", "summary"),
    "mix-general-answer-tags": ("sft_mix", _set("instructions", "completion",
                                                "<think> easy </think> <answer> 7 </answer>"),
                                "expect_column_values_to_not_match_regex", "completion",
                                "readable"),
    "mix-reasoning-blank-answer": ("sft_mix", _set("arithmetic", "answer", ""),
                                   "expect_column_values_to_match_regex", "answer", "verifiable"),
    "mix-reasoning-unboxed": ("sft_mix", _edit("countdown", "completion",
                                               lambda c: c.replace("\\boxed", "")),
                              "expect_column_values_to_match_regex", "summary", "boxed"),
    "mix-reasoning-wrong-boxed": ("sft_mix", _edit("arithmetic", "completion",
                                                   lambda c: c.replace("}.", "1}.")),
                                  "expect_column_values_to_be_in_set", "boxed_ok", "agreement"),
    "mix-mixed-scripts": ("sft_mix", _edit("safety", "completion",
                                           lambda c: c.replace("decline", "отказать")),
                          "expect_column_values_to_be_between", "n_scripts", "language"),
    "prompt-mix-unknown-kind": ("prompt_mix", _set("facts", "kind", "chat"),
                                "expect_column_values_to_be_in_set", "kind", "mixture"),
    "prompt-mix-reasoning-without-answer": ("prompt_mix", _set("arithmetic", "answer", ""),
                                            "expect_column_values_to_match_regex", "answer", "verifiable"),
}


@pytest.mark.parametrize("name", list(BROKEN))
def test_broken_variant_fails_its_rule(name, request):
    suite, mutate, rule, column, reason = BROKEN[name]
    rows = [dict(row) for row in request.getfixturevalue(suite)]  # fixtures are named as suites
    broken = mutate(rows)
    with pytest.raises(DataQualityError) as info:
        check_rows(rows, suite, path=f"artifacts/{name}.jsonl")
    err = info.value
    assert err.suite == suite and err.path == f"artifacts/{name}.jsonl"
    assert {f.column for f in err.failures} == {column}, "only the broken column's rules fail"
    failure = next(f for f in err.failures if (f.rule, f.reason) == (rule, reason))
    assert broken in [ex["row"] for ex in failure.examples]
    message = str(err)
    for part in (f"artifacts/{name}.jsonl", rule, repr(column), f"[{reason}]",
                 f"row {broken} id={rows[broken]['id']!r}"):
        assert part in message


def test_examples_are_capped_at_five(corpus):
    rows = [dict(row, answer="many") if i < 8 else dict(row) for i, row in enumerate(corpus)]
    with pytest.raises(DataQualityError) as info:
        check_rows(rows, "corpus", path="corpus.jsonl")
    (failure,) = info.value.failures
    assert failure.unexpected_count == 8
    assert [ex["row"] for ex in failure.examples] == [0, 1, 2, 3, 4]
    assert str(info.value).count("'many'") == 5


def test_empty_dataset_fails():
    report = validate_rows([], "prompts")
    assert not report.success
    assert [(f.rule, f.reason) for f in report.failures] == [
        ("expect_table_row_count_to_be_between", "nonempty")]


def test_unknown_suite_names_the_registered_ones(corpus):
    with pytest.raises(ValueError, match="corpus"):
        validate_rows(corpus, "no-such-suite")


def test_scripts_of_counts_the_reasoning_only():
    assert scripts_of("<think> so x = π , 7 </think> <answer> 7 </answer>") == ["LATIN"]
    assert scripts_of("<think> hello мир </think>") == ["CYRILLIC", "LATIN"]
    assert scripts_of("<think> hello world </think> привет") == ["LATIN"]
    assert scripts_of("<think> ひらがな と カタカナ と 漢字 </think>") == ["CJK"]
    assert scripts_of("<think> 3 + 4 = 7 </think>") == []


def test_write_checked_jsonl_writes_rows_and_report(corpus, tmp_path):
    out, reports = tmp_path / "base" / "corpus.jsonl", tmp_path / "quality"
    report = write_checked_jsonl(corpus, out, "corpus", report_dir=reports)
    assert report.success
    assert [r for _, r in loaders.read_jsonl(out)] == corpus
    assert json.loads((reports / "corpus.json").read_text())["success"] is True
    assert (reports / "corpus.html").stat().st_size > 0


def test_failed_write_keeps_previous_file_and_writes_report(corpus, tmp_path):
    out, reports = tmp_path / "corpus.jsonl", tmp_path / "quality"
    write_checked_jsonl(corpus, out, "corpus")
    before = out.read_bytes()
    rows = [dict(row) for row in corpus]
    rows[7]["id"] = rows[6]["id"]
    with pytest.raises(DataQualityError, match="expect_column_values_to_be_unique"):
        write_checked_jsonl(rows, out, "corpus", report_dir=reports)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.jsonl", "quality"]
    saved = json.loads((reports / "corpus.json").read_text())
    assert saved["success"] is False and saved["path"] == str(out)
    assert [f["rule"] for f in saved["failures"]] == ["expect_column_values_to_be_unique"]
    html = (reports / "corpus.html").read_text()
    assert "expect_column_values_to_be_unique" in html and "identity" in html
    assert "must be unique" in html and rows[7]["id"] in html


def test_good_prompt_mix_passes_with_answerless_general_prompts(prompt_mix):
    assert {r["kind"] for r in prompt_mix} == {"reasoning", "general"}
    assert check_rows(prompt_mix, "prompt_mix").success


def test_good_readable_rows_pass(traces, sft_mix):
    assert {r["source"] for r in traces} == {"arithmetic", "countdown"}
    assert check_rows(traces, "traces").success
    assert {r["kind"] for r in sft_mix} == {"reasoning", "general"}
    assert any(r["answer"] == "" for r in sft_mix)  # refusals have no short answer
    assert check_rows(sft_mix, "sft_mix").success


def test_boxed_answer_agrees_up_to_spelling(traces):
    i = _index(traces, "arithmetic")
    row = {**traces[i], "answer": "1000",
           "completion": "<think> 999 + 1 = 1000 </think> The answer is \\boxed{1,000.0}."}
    assert check_rows([row], "traces").success
    with pytest.raises(DataQualityError, match="boxed '1001', answer '1000'"):
        check_rows([{**row, "completion": row["completion"].replace("1,000.0", "1001")}], "traces")


def test_cold_start_output_passes_traces_and_unrewritten_rows_fail(corpus):
    """cold_start writes readable rows: the traces suite holds them to that format, which the
    corpus suite (R1-Zero format, untagged noise allowed) does not."""
    from model.rewards import get_reward

    kept, _ = curate(corpus, steps=["readable", "correct", "single_language", "dedupe_exact"],
                     judge=get_reward("accuracy"), language="en")
    assert len(kept) > 50 and check_rows(kept, "traces").success
    raw = {row["id"]: row["completion"] for row in corpus}
    rows = [dict(row) for row in kept]
    rows[4]["completion"] = raw[rows[4]["id"]]  # the R1-Zero completion, not rewritten
    assert validate_rows(rows, "corpus").success
    with pytest.raises(DataQualityError) as info:
        check_rows(rows, "traces")
    assert ("expect_column_values_to_not_match_regex", "readable") in [
        (f.rule, f.reason) for f in info.value.failures]


def test_corpus_lets_declared_code_switches_through():
    rows = base_corpus(300, mix={"arithmetic": 0.75, "countdown": 0.25},
                       noise=Noise(code_switch=0.3), languages={"en": 0.5, "ru": 0.5})
    assert check_rows(rows, "corpus").success
    i = next(i for i, row in enumerate(rows) if row["code_switched"])
    rows[i] = {**rows[i], "code_switched": False}
    with pytest.raises(DataQualityError, match=r"n_scripts.*\[language\]"):
        check_rows(rows, "corpus")
