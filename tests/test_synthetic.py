"""Synthetic tasks: seeded, disjoint splits, gold answers the checker accepts."""

from __future__ import annotations

import random

import pytest

from data.synthetic import Noise, base_corpus, make_rows, solve_arithmetic, solve_countdown, split_of
from data.tasks import load_task
from model.rewards import get_reward


def test_rows_are_seeded_and_ids_unique():
    a = make_rows("arithmetic", "test", 50, seed=1)
    assert a == make_rows("arithmetic", "test", 50, seed=1)
    assert a != make_rows("arithmetic", "test", 50, seed=2)
    assert len({r["id"] for r in a}) == 50


def test_splits_are_disjoint_by_problem():
    for family in ("arithmetic", "countdown"):
        train = {r["prompt"] for r in make_rows(family, "train", 2000)}
        test = {r["prompt"] for r in make_rows(family, "test", 150)}
        hard = {r["prompt"] for r in make_rows(family, "hard", 150)}
        validation = {r["prompt"] for r in make_rows(family, "validation", 150)}
        assert len(validation) >= 100  # countdown with 3 numbers: 108 problems hash to validation
        assert not train & test and not train & hard and not test & hard
        assert not validation & (train | test | hard)


def test_validation_takes_a_twentieth_of_the_problems_and_leaves_test_as_it_was():
    keys = [f"{a}+{b}" for a in range(10, 200) for b in range(10, 60)]
    shares = {s: sum(split_of(k) == s for k in keys) / len(keys) for s in ("train", "validation", "test")}
    assert abs(shares["validation"] - 0.05) < 0.01 and abs(shares["test"] - 0.10) < 0.01
    import hashlib

    old_test = [k for k in keys if int(hashlib.sha1(k.encode()).hexdigest()[:8], 16) % 1000 < 100]
    assert [k for k in keys if split_of(k) == "test"] == old_test  # the published test problems


def test_training_on_the_validation_split_is_refused():
    from data.tasks import check_training_set

    with pytest.raises(ValueError, match="reads the validation split, which evaluation and tuning score"):
        check_training_set("arithmetic_validation", "train")
    with pytest.raises(ValueError, match="validation split"):
        check_training_set("synthetic", "validation")


def test_hard_split_is_harder():
    easy = max(len(r["answer"]) for r in make_rows("arithmetic", "test", 100))
    hard = min(len(r["answer"]) for r in make_rows("arithmetic", "hard", 100))
    assert hard >= easy
    assert all(len(r["numbers"]) == 4 for r in make_rows("countdown", "hard", 20))


def test_noiseless_solver_is_always_right():
    accuracy = get_reward("accuracy")
    clean = Noise(slip=0.0, forget_carry=0.0, fix=0.0, unformatted=0.0)
    rng = random.Random(0)
    for family in ("arithmetic", "countdown"):
        rows = make_rows(family, "train", 200)
        texts = []
        for row in rows:
            if family == "arithmetic":
                a, b = (int(x) for x in row["prompt"].removeprefix("Compute ").split(" + "))
                _, answer = solve_arithmetic([a, b], rng, clean)
            else:
                _, answer = solve_countdown(row["numbers"], int(row["answer"]), rng, clean)
            texts.append(f"<answer> {answer} </answer>")
        columns = {k: [r.get(k) for r in rows] for k in ("answer", "source", "numbers")}
        assert accuracy(texts, **columns) == [1.0] * len(rows), family


def test_corpus_is_noisy_as_configured():
    rows = base_corpus(3000, mix={"arithmetic": 0.75, "countdown": 0.25}, noise=Noise(slip=0.05, forget_carry=0.4, fix=0.3, unformatted=0.25))
    assert all(split_of(_key(r)) == "train" for r in rows if r["source"] == "arithmetic")
    accuracy = get_reward("accuracy")(
        [r["completion"] for r in rows], answer=[r["answer"] for r in rows],
        source=[r["source"] for r in rows], numbers=[r.get("numbers") for r in rows])
    correct = sum(accuracy) / len(rows)
    reflecting = sum("wait ," in r["completion"] for r in rows) / len(rows)
    untagged = sum("<answer>" not in r["completion"] for r in rows) / len(rows)
    assert 0.2 < correct < 0.6  # wrong often enough for RL to have something to fix
    assert 0.02 < reflecting < 0.3  # reflection is rare, not absent
    assert 0.22 < untagged < 0.28


def _key(row):
    return row["prompt"].removeprefix("Compute ").replace(" ", "")


def test_load_task_names():
    assert len(load_task("countdown_test", split="test", limit=10)) == 10
    rows = load_task("synthetic", split="train", limit=40, mix={"arithmetic": 3, "countdown": 1})
    assert sum(r["source"] == "countdown" for r in rows) == 10
    assert len(load_task("gsm8k", split="test", limit=5)) == 5


def test_small_problem_space_ends_instead_of_hanging():
    rows = make_rows("countdown", "test", 100_000)
    assert 50 < len(rows) < 1000


def test_second_language_leaves_problems_and_slips_unchanged():
    mix = {"arithmetic": 0.75, "countdown": 0.25}
    english = base_corpus(300, mix=mix, noise=Noise())
    both = base_corpus(300, mix=mix, noise=Noise(), languages={"en": 0.5, "ru": 0.5})
    assert [r["prompt"] for r in english] == [r["prompt"] for r in both]
    ru = [r for r in both if r["language"] == "ru"]
    assert 100 < len(ru) < 200
    assert all("write" not in r["completion"] and "пишем" in r["completion"]
               for r in ru if r["source"] == "arithmetic")
    from data.quality import check_rows

    check_rows(both, "corpus")  # every example is written in one script


def _mixed(row) -> bool:
    from data.quality import scripts_of

    return len(scripts_of(row["completion"])) > 1


def test_code_switch_switches_midway_and_leaves_the_rest_unchanged():
    mix, languages = {"arithmetic": 0.75, "countdown": 0.25}, {"en": 0.5, "ru": 0.5}
    plain = base_corpus(1000, mix=mix, noise=Noise(), languages=languages)
    switching = base_corpus(1000, mix=mix, noise=Noise(code_switch=0.2), languages=languages)
    switched = [r for r in switching if r["code_switched"]]
    assert 150 < len(switched) < 250
    assert all(_mixed(r) == r["code_switched"] for r in switching)  # a switch always mixes scripts
    for before, after in zip(plain, switching):
        assert before["prompt"] == after["prompt"] and before["language"] == after["language"]
        if not after["code_switched"]:
            assert before["completion"] == after["completion"]
        elif "<answer>" in after["completion"]:  # the same slips: the same final answer
            assert before["completion"].split("</think>")[1] == after["completion"].split("</think>")[1]
    for row in switched:  # starts in the row's language, ends in the other
        words = row["completion"].removeprefix("<think> ").split()
        first = next(w for w in words if w.isalpha())
        assert (first in ("write", "try")) == (row["language"] == "en"), row["completion"]
    from data.quality import check_rows

    check_rows(switching, "corpus")  # declared switches pass the corpus's language rule


def test_code_switch_needs_a_second_language():
    mix = {"arithmetic": 0.75, "countdown": 0.25}
    english = base_corpus(300, mix=mix, noise=Noise())
    assert base_corpus(300, mix=mix, noise=Noise(code_switch=0.5)) == english
    assert "code_switched" not in english[0]
    two = base_corpus(300, mix=mix, noise=Noise(), languages={"en": 0.5, "ru": 0.5})
    assert "code_switched" not in two[0] and not any(_mixed(r) for r in two)


def test_with_check_on_re_checking_solutions_are_right_more_often():
    """Noise.check: a re-check of any step, always computed right. The corpus then shows that
    re-checking pays, the reason pure RL has to lengthen answers (issue 13's world)."""
    rows = base_corpus(3000, mix={"arithmetic": 1.0}, noise=Noise(check=0.3, unformatted=0.0))
    correct = get_reward("accuracy")([r["completion"] for r in rows], answer=[r["answer"] for r in rows],
                                     source=[r["source"] for r in rows])
    checked = [c for r, c in zip(rows, correct) if "wait ," in r["completion"]]
    unchecked = [c for r, c in zip(rows, correct) if "wait ," not in r["completion"]]
    assert sum(checked) / len(checked) > sum(unchecked) / len(unchecked) + 0.1
    assert any(" yes ." in r["completion"] for r in rows)  # right steps are confirmed too
    every = base_corpus(300, mix={"arithmetic": 1.0}, noise=Noise(check=1.0, slip=0.3, unformatted=0.0))
    assert get_reward("accuracy")([r["completion"] for r in every], answer=[r["answer"] for r in every]) == [1.0] * 300
    assert base_corpus(200, mix={"arithmetic": 0.5, "countdown": 0.5}, noise=Noise(check=0.0)) == \
        base_corpus(200, mix={"arithmetic": 0.5, "countdown": 0.5}, noise=Noise())


def test_hasty_answers_open_with_a_word_and_are_right_in_the_corpus():
    """Noise.direct: "so <answer>" with no steps; the mode shows at the first token (a word,
    never a digit), and a code-switched solution is always a worked one."""
    import re

    rows = base_corpus(2000, mix={"arithmetic": 0.75, "countdown": 0.25}, noise=Noise(direct=0.5, code_switch=0.2),
                       languages={"en": 0.8, "ru": 0.2})
    hasty = [r for r in rows if r["completion"].split("<think>")[1].split()[0] in ("so", "итак")]
    assert 0.3 < len(hasty) / len(rows) < 0.5  # 0.5 of the solutions that do not switch language
    for r in hasty:
        said = r["completion"].split("<think>")[1].split("</think>")[0].split(maxsplit=1)[1].strip()
        assert re.fullmatch(r"[0-9 +-]+", said), r
        assert eval(said) == int(r["answer"]), r  # digits, spaces, + and - only: an integer sum
        assert not r["code_switched"]
