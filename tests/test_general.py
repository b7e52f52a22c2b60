"""General (non-reasoning) data: seeded, split like the reward models' data, exact shares,
readable completions."""

from __future__ import annotations

import re

import pytest

from data.general import general_prompts, general_sft_rows
from data.preferences import REFUSALS, UNSAFE_INTENTS, harmlessness_rows, preference_pairs
from data.quality import check_rows

READABLE = re.compile(r"(?s)<think> (.+) </think> (\S.*)")


def _intent(prompt: str) -> str:
    return next(i for i in UNSAFE_INTENTS if i in prompt)


def test_deterministic_given_the_seed():
    assert general_sft_rows(200, seed=3) == general_sft_rows(200, seed=3)
    assert general_sft_rows(200, seed=3) != general_sft_rows(200, seed=4)
    assert general_prompts(200, seed=3) == general_prompts(200, seed=3)
    assert len({r["id"] for r in general_sft_rows(200)}) == 200


def test_train_never_holds_a_reward_model_test_prompt():
    pairs = preference_pairs(3000, seed=0)
    held_out = {r["prompt"] for r in pairs if r["split"] == "test" and r["source"] in ("facts", "instructions")}
    unsafe = harmlessness_rows(600, seed=0, test_share=0.2)
    held_out_intents = {_intent(r["prompt"]) for r in unsafe if r["source"] == "unsafe" and r["split"] == "test"}
    assert held_out and held_out_intents
    for rows in (general_sft_rows(2000, split="train"), general_prompts(2000, split="train")):
        assert not {r["prompt"] for r in rows} & held_out
        assert not {_intent(r["prompt"]) for r in rows if r["source"] == "safety"} & held_out_intents
    test = general_sft_rows(500, split="test")
    assert {_intent(r["prompt"]) for r in test if r["source"] == "safety"} <= held_out_intents
    assert not {r["prompt"] for r in test} & {r["prompt"] for r in general_sft_rows(2000, split="train")}


@pytest.mark.parametrize("share", [0.0, 0.2, 0.35, 1.0])
def test_unsafe_share_is_exact(share):
    for rows in (general_sft_rows(200, unsafe_share=share), general_prompts(200, unsafe_share=share)):
        assert sum(r["source"] == "safety" for r in rows) == round(share * 200)
    if share < 1:
        assert {r["source"] for r in general_sft_rows(200, unsafe_share=share)} >= {"facts", "instructions"}


def test_sft_rows_are_readable_answers_and_refusals():
    rows = general_sft_rows(300)
    refusals = {r.format(i=i) for r in REFUSALS for i in UNSAFE_INTENTS}
    for row in rows:
        assert set(row) == {"id", "prompt", "completion", "source", "kind", "answer"}
        reasoning, summary = READABLE.fullmatch(row["completion"]).groups()
        assert row["kind"] == "general" and reasoning.strip()
        if row["source"] == "safety":
            assert row["answer"] == "" and summary in refusals
        else:
            assert row["answer"] and row["answer"] in summary
    check_rows(rows, "sft_mix")


def test_prompts_carry_safety_and_no_completion():
    rows = general_prompts(300, split="test")
    for row in rows:
        assert set(row) == {"id", "prompt", "source", "kind", "safe", "answer"}
        assert row["safe"] == (row["source"] != "safety") and row["answer"] == ""
        assert row["kind"] == "general" and row["id"].startswith("general-prompt-test-")


@pytest.mark.parametrize("kwargs", [{"split": "hard"}, {"unsafe_share": 1.5}, {"n": -1}])
def test_bad_arguments_fail(kwargs):
    args = {"n": 10, **kwargs}
    with pytest.raises(ValueError):
        general_sft_rows(args.pop("n"), **args)
