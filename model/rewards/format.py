"""The format reward: does the completion follow `<think>...</think><answer>...</answer>`?"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from data.completions import completion_text
from data.formatting import THINK_TAGS

# Whole completion (already stripped): reasoning, optional whitespace, answer, nothing else.
_FORMAT_RE = re.compile(r"(?s)<think>(.*?)</think>\s*<answer>(.*?)</answer>")


def format_reward(completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """Score 1.0 iff the stripped completion is `<think>…</think>` then `<answer>…</answer>`,
    both non-empty.

    Whitespace may separate the two blocks; nothing else may appear outside them, and each of
    the four tags must occur exactly once (so a nested or repeated block scores 0.0).
    Dataset columns in `kwargs` are ignored; the reward applies to every row.
    """
    scores: list[float] = []
    for completion in completions:
        text = completion_text(completion).strip()
        # Counting first keeps the regex linear: with one of each tag it cannot backtrack far.
        match = _FORMAT_RE.fullmatch(text) if all(text.count(tag) == 1 for tag in THINK_TAGS) else None
        ok = match is not None and bool(match.group(1).strip()) and bool(match.group(2).strip())
        scores.append(1.0 if ok else 0.0)
    return scores


def readable_format_reward(completions: Sequence[Any], kind: Sequence[Any] | None = None,
                           **kwargs: Any) -> list[float]:
    """Score 1.0 iff the completion is in the readable format of DeepSeek-R1 (paper 2.3.1):
    ``<think>…</think>`` then a summary. A reasoning row's summary is the one line
    ``The answer is \\boxed{…}.`` (the format :func:`data.filters.to_readable` writes); a
    row whose ``kind`` is ``general`` (no verifiable answer) needs any non-blank summary
    and no ``<answer>`` tags."""
    from data.filters import readable_parts

    kinds = kind if kind is not None else [None] * len(completions)
    scores = []
    for completion, row_kind in zip(completions, kinds):
        text = completion_text(completion).strip()
        ok = _general_readable(text) if row_kind == "general" else readable_parts(text)
        scores.append(1.0 if ok else 0.0)
    return scores


_GENERAL_RE = re.compile(r"(?s)<think>(.*?)</think>(.*)")


def _general_readable(text: str) -> bool:
    if text.count("<think>") != 1 or text.count("</think>") != 1 or "<answer>" in text:
        return False
    match = _GENERAL_RE.fullmatch(text)
    return bool(match and match.group(2).strip())
