"""The language-consistency reward of DeepSeek-R1: the share of the reasoning's units written
in the target language's script.

The paper (2.3.2) counts "the proportion of target language words in the CoT". Chinese and
Japanese have no word delimiters, so there a character is the unit, as in CJK word counts: each
Han, Hiragana or Katakana character counts once, on either side of the ratio (an English
reasoning with 4 words and 25 Chinese characters scores 4/29, not 4/5). Other scripts, Hangul
included, count by words. Math notation is not language: math spans, LaTeX commands, single
Latin or Greek letters and function names such as `sin` do not count.

What counts lives in data/language.py (one table shared with the data-quality suites and the
cold-start filters); the names below are re-exported from it. The reasoning is read through
data.completions.parse_completion, the project's one parser: the `<think>` content (a truncated,
unclosed block included), or the whole text when the completion has no think tags; the summary
after `</think>` never counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from data.completions import parse_completion
from data.language import (  # noqa: F401 (re-exported: the reward's public names)
    LANGUAGE_SCRIPTS,
    script_of_word,
    scripts_in,
    target_scripts,
    words,
)



def language_consistency(
    completions: Sequence[Any],
    language: str | Sequence[str | None] | None = "en",
    **kwargs: Any,
) -> list[float | None]:
    """Score each completion by the share of its reasoning's units in the target script.

    Args:
        completions: model outputs; their reasoning is scored (see the module docstring).
        language: one code for all rows (`"en"`), or a column with a code per row (a None
            entry falls back to `"en"`).
        **kwargs: other dataset columns, ignored.

    Returns:
        A share in [0, 1] per row, None where the reasoning has no countable units.
    """
    scores: list[float | None] = []
    for i, completion in enumerate(completions):
        code = language if isinstance(language, str) or language is None else language[i]
        allowed = target_scripts(code or "en")
        found = words(parse_completion(completion).reasoning_or_text)
        if not found:
            scores.append(None)
            continue
        scores.append(sum(script in allowed for _, script in found) / len(found))
    return scores
