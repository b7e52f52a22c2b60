"""The format reward: does the completion follow `<think>...</think><answer>...</answer>`?"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from model.rewards.answers import completion_text

# Whole completion (already stripped): reasoning, optional whitespace, answer, nothing else.
_FORMAT_RE = re.compile(r"(?s)<think>(.*?)</think>\s*<answer>(.*?)</answer>")
_TAGS = ("<think>", "</think>", "<answer>", "</answer>")


def format_reward(completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """Score 1.0 iff the stripped completion is `<think>…</think>` then `<answer>…</answer>`.

    Whitespace may separate the two blocks; nothing else may appear outside them, and each of
    the four tags must occur exactly once (so a nested or repeated block scores 0.0).
    Dataset columns in `kwargs` are ignored; the reward applies to every row.
    """
    scores: list[float] = []
    for completion in completions:
        text = completion_text(completion).strip()
        ok = _FORMAT_RE.fullmatch(text) is not None and all(text.count(tag) == 1 for tag in _TAGS)
        scores.append(1.0 if ok else 0.0)
    return scores


def readable_format_reward(completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """Score 1.0 iff the completion is in the readable cold-start format of DeepSeek-R1:
    ``<think>…</think>`` then one summary line ``The answer is \\boxed{…}.`` (paper 2.3.1;
    the format :func:`data.filters.to_readable` writes)."""
    from data.filters import readable_parts

    return [1.0 if readable_parts(completion_text(c).strip()) else 0.0 for c in completions]
