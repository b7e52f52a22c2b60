"""The language-consistency reward of DeepSeek-R1: the share of reasoning words written
in the target language's script.

Script detection and what counts as a word live in data/language.py (one table shared with
the data-quality suites and the cold-start filters); the names below are re-exported from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from data.language import (  # noqa: F401 (re-exported: the reward's public names)
    LANGUAGE_SCRIPTS,
    script_of_word,
    scripts_in,
    target_scripts,
    think_text,
    words,
)
from data.completions import completion_text


def reasoning_text(completion: Any) -> str:
    """The `<think>` content of a completion (all blocks joined), else the whole completion."""
    return think_text(completion_text(completion))


def language_consistency(
    completions: Sequence[Any],
    language: str | Sequence[str | None] | None = "en",
    **kwargs: Any,
) -> list[float | None]:
    """Score each completion by the share of its reasoning words in the target script.

    Args:
        completions: model outputs; the `<think>` content is scored if present.
        language: one code for all rows (`"en"`), or a column with a code per row (a None
            entry falls back to `"en"`).
        **kwargs: other dataset columns, ignored.

    Returns:
        A share in [0, 1] per row, None where the reasoning has no countable words.
    """
    scores: list[float | None] = []
    for i, completion in enumerate(completions):
        code = language if isinstance(language, str) or language is None else language[i]
        allowed = target_scripts(code or "en")
        found = words(reasoning_text(completion))
        if not found:
            scores.append(None)
            continue
        scores.append(sum(script in allowed for _, script in found) / len(found))
    return scores
