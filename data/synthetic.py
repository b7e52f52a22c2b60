"""Seeded synthetic verifiable tasks and the noisy worked-solution corpus for ``base``.

Two task families, each with a checker-friendly gold answer:

- ``arithmetic``: multi-digit addition ("Compute 347 + 589"), answer an integer.
- ``countdown``: reach a target from given numbers with + and - ("Use 3 7 9 to make 13"),
  any expression using each number at most once is correct; rows carry ``numbers``.

Splits are disjoint by problem: a problem's key (e.g. ``347+589``) is hashed
into train (85%), validation (5%) or test (10%); ``hard`` draws from a larger size (more
digits, more numbers) that the train split never contains, for generalisation. Knobs chosen
by looking at results are chosen on validation; the report reads test.

The worked solutions are the "pretraining corpus" of the tiny base model. They
are written by a deliberately fallible solver: a column with a carry coming in
drops it with probability ``forget_carry``, any step is off by one with
probability ``slip``; after a wrong step an explicit
re-check ("wait , 4 + 8 + 1 = 13 ...") repairs it with probability ``fix``,
otherwise the error flows into the final answer. With ``check`` > 0 the solver also
re-checks any step with that probability, whatever its result, and a re-check always
computes the step right: it confirms a right step ("wait , 4 + 8 + 1 = 13 yes .") and
repairs a wrong one. Re-checks then stop being a sign that a slip happened, and a solution
that re-checks more is right more often: thinking longer pays, so pure RL has a reason to
lengthen its answers and re-check (the R1-Zero dynamics of paper 2.2.1). With ``direct`` > 0 a
share of the solutions gives the answer at once ("so 834"), with no steps: right in the corpus, but a tiny
model computing it in one pass gets it wrong far more often than step by step; a share ``unformatted`` of the
completions drops the ``<answer>`` tags. In a corpus of several languages, a share
``code_switch`` of the solutions switches at a random step to another of its languages for
the rest of the reasoning, the script mixing DeepSeek-V3-Base shows and R1-Zero inherits. The forgotten carry is a coin flip the
model learns as such, so sampling at temperature 0.6 does not remove it: the base
model answers correctly only part of the time and reflects rarely, which leaves
pure RL something to select for - the R1-Zero setting in miniature.
"""

from __future__ import annotations

import hashlib
import itertools
import random
from dataclasses import dataclass
from typing import Iterator

from data.formatting import r1_zero_completion

FAMILIES = ("arithmetic", "countdown")
SPLITS = ("train", "validation", "test", "hard")
TEST_SHARE = 0.10
VALIDATION_SHARE = 0.05

# Problem size per split: operand digits for arithmetic, count of numbers for countdown.
SIZES = {
    "arithmetic": {"train": (2, 3), "validation": (2, 3), "test": (2, 3), "hard": (4, 4)},
    "countdown": {"train": (3, 3), "validation": (3, 3), "test": (3, 3), "hard": (4, 4)},
}


@dataclass(frozen=True)
class Noise:
    """How fallible the corpus's solver is."""

    slip: float = 0.05  # any step: the result is off by one
    forget_carry: float = 0.4  # a column with a carry coming in: the carry is dropped
    fix: float = 0.3  # after a wrong step: "wait , <the step redone>" repairs it
    unformatted: float = 0.25  # the answer is given without <answer> tags
    code_switch: float = 0.0  # several corpus languages: the reasoning switches language midway
    check: float = 0.0  # any step: re-checked ("wait , <the step redone> yes") whatever its result
    direct: float = 0.0  # a solution: the answer at once ("so 834"), no steps (a hasty solver)


# The words of the worked solutions, per language. An example is written in one language
# unless it code-switches (Noise.code_switch); a second script gives pure RL the chance to
# drift into mixing languages, as R1-Zero did.
LEXICONS = {
    "en": {"write": "write", "carry": "carry", "so": "so", "wait": "wait", "try": "try",
           "yes": "yes", "no": "no", "answer_is": "the answer is"},
    "ru": {"write": "пишем", "carry": "перенос", "so": "итак", "wait": "подожди", "try": "пробуем",
           "yes": "да", "no": "нет", "answer_is": "ответ"},
}


def lexicon(language: str) -> dict[str, str]:
    """The solver's words in ``language`` (one of LEXICONS)."""
    if language not in LEXICONS:
        raise ValueError(f"unknown corpus language {language!r}; choose from {sorted(LEXICONS)}")
    return LEXICONS[language]


def split_of(key: str) -> str:
    """``train``, ``validation`` or ``test`` for a problem key, by a stable hash (never
    ``hard``): the test problems are those they were before the validation split existed."""
    bucket = int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) % 1000
    if bucket < TEST_SHARE * 1000:
        return "test"
    return "validation" if bucket < (TEST_SHARE + VALIDATION_SHARE) * 1000 else "train"


# ----------------------------------------------------------------------------- arithmetic


def _arithmetic_problem(rng: random.Random, size: tuple[int, int]) -> dict:
    def number() -> int:
        digits = rng.randint(*size)
        return rng.randint(10 ** (digits - 1), 10**digits - 1)

    a, b = number(), number()
    return {"key": f"{a}+{b}", "prompt": f"Compute {a} + {b}", "answer": str(a + b), "terms": [a, b]}


def _column_step(x: int, y: int, carry: int, total: int, w: dict[str, str]) -> str:
    plus = " + 1" if carry else ""
    carry_out = f" {w['carry']} 1" if total >= 10 else ""
    return f"{x} + {y}{plus} = {total} , {w['write']} {total % 10}{carry_out} ."


def solve_arithmetic(terms: list[int], rng: random.Random, noise: Noise, language: str = "en") -> tuple[str, str]:
    """Column addition from the right, one step per column; returns (reasoning, answer)."""
    steps, result = _arithmetic_steps(terms, rng, noise, lexicon(language))
    return " ".join(steps), result


def _arithmetic_steps(terms: list[int], rng: random.Random, noise: Noise, w: dict[str, str]) -> tuple[list[str], str]:
    a, b = terms
    xs, ys = str(a)[::-1], str(b)[::-1]
    width = max(len(xs), len(ys))
    carry, written, steps = 0, [], []
    for i in range(width):
        x = int(xs[i]) if i < len(xs) else 0
        y = int(ys[i]) if i < len(ys) else 0
        true = x + y + carry
        shown_carry, total = carry, true
        if carry and rng.random() < noise.forget_carry:
            shown_carry, total = 0, x + y
        elif rng.random() < noise.slip:
            total = max(0, true + rng.choice((-1, 1)))
        steps.append(_column_step(x, y, shown_carry, total, w))
        if noise.check and rng.random() < noise.check:  # drawn only when on: check 0 keeps the old corpus
            redone = _column_step(x, y, carry, true, w)
            steps.append(f"{w['wait']} , " + (redone[:-2] + f" {w['yes']} ." if total == true else redone))
            total = true
        elif total != true and rng.random() < noise.fix:
            steps.append(f"{w['wait']} , " + _column_step(x, y, carry, true, w))
            total = true
        written.append(total % 10)
        carry = 1 if total >= 10 else 0
    if carry:
        steps.append(f"{w['write']} 1 .")
        written.append(1)
    result = str(int("".join(map(str, reversed(written)))))
    steps.append(f"{w['so']} {result}")
    return steps, result


# ----------------------------------------------------------------------------- countdown

# + and - only: every intermediate value is a one- or two-digit sum or difference the tiny
# model also practises in `arithmetic`, so the search (which numbers, which order) is the
# hard part. The accuracy reward accepts * and / too.
OPS = ("+", "-")
COUNTDOWN_MAX = 15  # numbers are drawn from 1..COUNTDOWN_MAX


def _apply(op: str, x: int, y: int) -> int:
    return x + y if op == "+" else x - y if op == "-" else x * y


def _chain_values(numbers: tuple[int, ...], ops: tuple[str, ...]) -> list[int] | None:
    """Intermediate values of ((n0 op n1) op n2) ...; None if any is not positive."""
    values, acc = [], numbers[0]
    for op, x in zip(ops, numbers[1:]):
        acc = _apply(op, acc, x)
        if acc <= 0:
            return None
        values.append(acc)
    return values


def render_chain(numbers: tuple[int, ...], ops: tuple[str, ...]) -> str:
    """The chain as an infix expression, parenthesised where precedence needs it."""
    text, last = str(numbers[0]), None
    for op, x in zip(ops, numbers[1:]):
        if op == "*" and last in ("+", "-"):
            text = f"( {text} )"
        text, last = f"{text} {op} {x}", op
    return text


def _countdown_problem(rng: random.Random, size: tuple[int, int]) -> dict:
    n = rng.randint(*size)
    while True:
        numbers = tuple(rng.randint(1, COUNTDOWN_MAX) for _ in range(n))
        ops = tuple(rng.choice(OPS) for _ in range(n - 1))
        values = _chain_values(numbers, ops)
        if values and 2 <= values[-1] and values[-1] not in numbers:
            target = values[-1]
            shown = sorted(numbers)
            return {
                "key": f"{' '.join(map(str, shown))}->{target}",
                "prompt": f"Use {' '.join(map(str, shown))} to make {target}",
                "answer": str(target),
                "numbers": shown,
            }


def _try_line(numbers, ops, rng: random.Random, noise: Noise, w: dict[str, str]) -> tuple[str, int]:
    """One attempt, step by step, possibly with a slip; returns (text, claimed value)."""
    parts, acc = [], numbers[0]
    for op, x in zip(ops, numbers[1:]):
        true = _apply(op, acc, x)
        shown = true + rng.choice((-1, 1)) if rng.random() < noise.slip else true
        parts.append(f"{acc} {op} {x} = {shown}")
        if noise.check and rng.random() < noise.check:  # drawn only when on: check 0 keeps the old corpus
            parts.append(f"{w['wait']} , {acc} {op} {x} = {true}" + (f" {w['yes']}" if shown == true else ""))
            shown = true
        elif shown != true and rng.random() < noise.fix:
            parts.append(f"{w['wait']} , {acc} {op} {x} = {true}")
            shown = true
        acc = shown
    return " , ".join(parts), acc


def solve_countdown(numbers: list[int], target: int, rng: random.Random, noise: Noise,
                    language: str = "en") -> tuple[str, str]:
    """A few wrong tries, then (usually) a right one; returns (reasoning, expression)."""
    steps, answer = _countdown_steps(numbers, target, rng, noise, lexicon(language))
    return " ".join(steps), answer


def _countdown_steps(numbers: list[int], target: int, rng: random.Random, noise: Noise,
                     w: dict[str, str]) -> tuple[list[str], str]:
    # Two steps per try, the try and its verdict, so that a code switch can fall between them.
    chains = [
        (perm, ops)
        for perm in set(itertools.permutations(numbers))
        for ops in itertools.product(OPS, repeat=len(numbers) - 1)
        if _chain_values(perm, ops)
    ]
    chains.sort()
    rng.shuffle(chains)
    right = [c for c in chains if _chain_values(*c)[-1] == target]
    wrong = [c for c in chains if _chain_values(*c)[-1] != target]
    n_wrong = min(len(wrong), 3, int(rng.expovariate(0.9)))
    plan = wrong[:n_wrong] + right[:1] + wrong[n_wrong:n_wrong + 2]
    steps, answer = [], render_chain(*plan[-1])
    for perm, ops in plan:
        text, claimed = _try_line(perm, ops, rng, noise, w)
        found = claimed == target
        steps += [f"{w['try']} {text} .", f"{w['yes'] if found else w['no']} ."]
        answer = render_chain(perm, ops)
        if found:
            break
    return steps, answer


# ----------------------------------------------------------------------------- rows


def problems(family: str, split: str, seed: int, *, distinct: bool = True) -> Iterator[dict]:
    """A seeded stream of problems of ``family`` in ``split`` (each key once if ``distinct``);
    it ends only when 20,000 draws in a row found nothing new."""
    if family not in FAMILIES:
        raise ValueError(f"unknown task family {family!r}; choose from {FAMILIES}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {SPLITS}")
    make = _arithmetic_problem if family == "arithmetic" else _countdown_problem
    rng = random.Random(f"{family}/{split}/{seed}")
    seen: set[str] = set()
    size = SIZES[family][split]
    misses = 0
    while misses < 20_000:  # a small problem space (countdown test) runs out of new keys
        problem = make(rng, size)
        key = problem["key"]
        if (distinct and key in seen) or (split != "hard" and split_of(key) != split):
            misses += 1
            continue
        misses = 0
        if distinct:
            seen.add(key)
        yield problem


def make_rows(family: str, split: str, n: int, seed: int = 0) -> list[dict]:
    """``n`` rows of one family and split in the project's row schema."""
    rows = []
    for i, problem in zip(range(n), problems(family, split, seed)):
        row = {"id": f"{family}-{split}-{i:05d}", "prompt": problem["prompt"],
               "answer": problem["answer"], "source": family}
        if family == "countdown":
            row["numbers"] = problem["numbers"]
        rows.append(row)
    return rows


def _solution_steps(problem: dict, family: str, rng: random.Random, noise: Noise,
                    language: str) -> tuple[list[str], str]:
    if family == "arithmetic":
        return _arithmetic_steps(problem["terms"], rng, noise, lexicon(language))
    return _countdown_steps(problem["numbers"], int(problem["answer"]), rng, noise, lexicon(language))


def worked_solution(problem: dict, family: str, rng: random.Random, noise: Noise, language: str = "en", *,
                    switch_to: str | None = None, switch_at: float = 0.5) -> str:
    """The fallible solver's completion for one problem (R1-Zero format, sometimes untagged).

    With ``switch_to``, the steps from ``switch_at`` (a fraction in [0, 1)) of the way through
    are written in that language instead, with at least one step on each side (every solution
    has two or more steps); an untagged answer is then worded in ``switch_to`` too. The slips
    and the rng's draws are those of the unswitched solution.
    """
    # A hasty answer has one step, nothing to switch language in: a switching solution is worked.
    if switch_to is None and noise.direct and rng.random() < noise.direct:  # drawn only when on
        return _direct_solution(problem, family, rng, noise, language)
    state = rng.getstate()
    steps, answer = _solution_steps(problem, family, rng, noise, language)
    if switch_to is not None:
        lexicon(switch_to)
        end = rng.getstate()
        rng.setstate(state)  # replay the same draws in the other language's words
        switched, _ = _solution_steps(problem, family, rng, noise, switch_to)
        rng.setstate(end)
        cut = 1 + int(switch_at * (len(steps) - 1))
        steps, language = steps[:cut] + switched[cut:], switch_to
    reasoning = " ".join(steps)
    if rng.random() < noise.unformatted:
        return f"<think> {reasoning} </think> {lexicon(language)['answer_is']} {answer}"
    return r1_zero_completion(reasoning, answer)


def _direct_solution(problem: dict, family: str, rng: random.Random, noise: Noise, language: str) -> str:
    """The hasty solver's completion: "so <answer>", no steps. The corpus's answer is right; a
    model that writes it must compute it in one pass, which a tiny model does far worse than
    step by step: the base's short answers are its unreliable ones. The opening word, never
    a digit, tells this mode from the worked one at the first token."""
    answer = problem["answer"]
    if family == "countdown":
        chains = [(perm, ops) for perm in sorted(set(itertools.permutations(problem["numbers"])))
                  for ops in itertools.product(OPS, repeat=len(problem["numbers"]) - 1)
                  if (values := _chain_values(perm, ops)) and values[-1] == int(answer)]
        answer = render_chain(*rng.choice(chains))
    reasoning = f"{lexicon(language)['so']} {answer}"
    if rng.random() < noise.unformatted:
        return f"<think> {reasoning} </think> {lexicon(language)['answer_is']} {answer}"
    return r1_zero_completion(reasoning, answer)


def _switch_target(rng: random.Random, language: str, languages: dict[str, float],
                   share: float) -> str | None:
    """Another language of the corpus to switch to with probability ``share``, else None."""
    others = {code: w for code, w in languages.items() if code != language and w > 0}
    if not others or share <= 0 or rng.random() >= share:
        return None
    return rng.choices(list(others), list(others.values()))[0]


def base_corpus(n: int, *, mix: dict[str, float], noise: Noise, seed: int = 0,
                languages: dict[str, float] | None = None) -> list[dict]:
    """``n`` pretraining documents (prompt, completion) from train-split problems only, each
    written in one language drawn from ``languages`` (shares; default English only).

    With two or more languages and ``noise.code_switch > 0``, that share of the documents
    switches language midway (:func:`worked_solution`) and every row carries
    ``code_switched``; otherwise rows have no such column and are as without the knob.
    """
    unknown = set(mix) - set(FAMILIES)
    if unknown:
        raise ValueError(f"corpus mix: unknown families {sorted(unknown)}; choose from {FAMILIES}")
    languages = languages or {"en": 1.0}
    for language in languages:
        lexicon(language)
    rng = random.Random(f"corpus/{seed}")
    # Streams of their own, so that adding a language or code switching leaves the problems
    # and slips unchanged.
    language_rng = random.Random(f"corpus-language/{seed}")
    switch_rng = random.Random(f"corpus-switch/{seed}")
    can_switch = len(languages) > 1 and noise.code_switch > 0
    codes, shares = zip(*languages.items())
    streams = {family: problems(family, "train", seed + 1, distinct=False) for family in mix}
    families, weights = zip(*mix.items())
    rows = []
    for i in range(n):
        family = rng.choices(families, weights)[0]
        problem = next(streams[family])
        language = language_rng.choices(codes, shares)[0]
        switch_to = _switch_target(switch_rng, language, languages, noise.code_switch) if can_switch else None
        completion = worked_solution(problem, family, rng, noise, language,
                                     switch_to=switch_to, switch_at=switch_rng.random() if switch_to else 0.5)
        row = {"id": f"corpus-{i:06d}", "prompt": problem["prompt"], "answer": problem["answer"],
               "completion": completion, "source": family, "language": language}
        if can_switch:
            row["code_switched"] = switch_to is not None
        rows.append(row)
    return rows
