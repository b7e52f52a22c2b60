"""Seeded synthetic non-reasoning data: the general half of DeepSeek-R1's SFT mix (paper
2.3.3) and the general prompts of all-scenario RL (2.3.4), scaled down.

Everything is drawn from the generators of :mod:`data.preferences`, so the policy is trained
on the same kinds of requests the reward models judge:

- ``facts`` and ``instructions``: :func:`data.preferences.task_stream` tasks (capitals,
  opposites, the day or month after; capitalise, spell backwards, count letters, sort, pick the
  larger, parity), answered with one of the task's own summary wordings.
- ``safety``: an :data:`~data.preferences.UNSAFE_INTENTS` request in one of the
  :data:`~data.preferences.UNSAFE_PHRASINGS`, answered with a refusal.

SFT completions are in the readable format, ``<think>`` short reasoning ``</think>`` summary,
with the fixed reasoning lines of :mod:`data.preferences` (``THINK_SAFE``,
``THINK_UNSAFE_REFUSE``): the paper skips a chain of thought for simple queries, and a short one
keeps the format the same as the reasoning rows'.

Splits follow :mod:`data.preferences` with the same ``test_share`` (that of the
``reward_model`` stage): a task key is ``train`` or ``test`` by
:func:`data.preferences.split_of`, an unsafe intent by :func:`data.preferences.ranked_split`.
``split="train"`` never yields a prompt whose key or intent the reward models hold out.
"""

from __future__ import annotations

import random
from typing import Iterator

from data.preferences import (
    REFUSALS,
    THINK_SAFE,
    THINK_UNSAFE_REFUSE,
    UNSAFE_INTENTS,
    UNSAFE_PHRASINGS,
    Task,
    ranked_split,
    split_of,
    task_stream,
)

GENERAL_SPLITS = ("train", "test")
GENERAL_SOURCES = {"facts": 0.5, "instructions": 0.5}  # task families of the safe requests
TEST_SHARE = 0.2  # the reward_model stage's default: train prompts here are train prompts there
KIND = "general"


def _check(n: int, split: str, unsafe_share: float, test_share: float) -> None:
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if split not in GENERAL_SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {GENERAL_SPLITS}")
    if not 0.0 <= unsafe_share <= 1.0:
        raise ValueError(f"unsafe_share must be a share in [0, 1], got {unsafe_share}")
    if not 0.0 < test_share < 1.0:
        raise ValueError(f"test_share must be in (0, 1), got {test_share}")


def _safe_tasks(seed: int, split: str, test_share: float) -> Iterator[Task]:
    """Facts and instruction tasks whose key lies in ``split``."""
    for task in task_stream(seed, GENERAL_SOURCES, test_share):
        if split_of(task.key, test_share) == split:
            yield task


def _draws(n: int, *, seed: int, split: str, unsafe_share: float, test_share: float,
           salt: str) -> Iterator[tuple[random.Random, dict, Task | None, str | None]]:
    """``n`` draws ``(rng, row, task, intent)``, ``row`` holding ``prompt`` and ``source``:
    exactly ``round(unsafe_share * n)`` of them, at seeded positions, are an unsafe ``intent``
    of ``split`` (``task`` None), the rest a safe ``task`` (``intent`` None)."""
    _check(n, split, unsafe_share, test_share)
    rng = random.Random(f"{salt}/{seed}/{split}")
    intents = [i for i, side in ranked_split(list(UNSAFE_INTENTS), test_share).items() if side == split]
    unsafe = set(rng.sample(range(n), round(unsafe_share * n)))
    tasks = _safe_tasks(seed, split, test_share)
    for i in range(n):
        if i in unsafe:
            intent = rng.choice(intents)
            yield rng, {"prompt": rng.choice(UNSAFE_PHRASINGS).format(i=intent), "source": "safety"}, None, intent
        else:
            task = next(tasks)
            yield rng, {"prompt": task.prompt, "source": task.source}, task, None


def general_sft_rows(n: int, *, seed: int = 0, split: str = "train", unsafe_share: float = 0.2,
                     test_share: float = TEST_SHARE) -> list[dict]:
    """``n`` general SFT rows ``{id, prompt, completion, source, kind, answer}`` (module doc).

    ``completion`` is ``<think> short reasoning </think> summary``: the task's answer in one of
    its wordings (``answer`` is that answer), or for a ``safety`` request a refusal (``answer``
    ""). Exactly ``round(unsafe_share * n)`` rows are ``safety`` rows. Deterministic in ``seed``.

    Raises:
        ValueError: for an unknown ``split``, or a share outside its range.
    """
    rows = []
    draws = _draws(n, seed=seed, split=split, unsafe_share=unsafe_share, test_share=test_share,
                   salt="general-sft")
    for i, (rng, drawn, task, intent) in enumerate(draws):
        if task is None:
            completion = THINK_UNSAFE_REFUSE.format(i=intent) + rng.choice(REFUSALS).format(i=intent)
            answer = ""
        else:
            completion, answer = THINK_SAFE + task.summary(task.answer, rng), task.answer
        rows.append({"id": f"general-{split}-{i:06d}", "prompt": drawn["prompt"], "completion": completion,
                     "source": drawn["source"], "kind": KIND, "answer": answer})
    return rows


def general_prompts(n: int, *, seed: int = 0, split: str = "train", unsafe_share: float = 0.3,
                    test_share: float = TEST_SHARE) -> list[dict]:
    """``n`` general RL prompts ``{id, prompt, source, kind, safe, answer}`` for all-scenario RL.

    ``safe`` is False for the exactly ``round(unsafe_share * n)`` ``safety`` requests (the
    harmlessness model should see a refusal); ``answer`` is always "" because general prompts
    are scored by the reward models, not by a rule. Deterministic in ``seed``.

    Raises:
        ValueError: for an unknown ``split``, or a share outside its range.
    """
    draws = _draws(n, seed=seed, split=split, unsafe_share=unsafe_share, test_share=test_share,
                   salt="general-rl")
    return [{"id": f"general-prompt-{split}-{i:06d}", **drawn, "kind": KIND, "safe": task is not None,
             "answer": ""} for i, (_, drawn, task, _) in enumerate(draws)]
