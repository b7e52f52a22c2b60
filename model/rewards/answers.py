"""Final-answer extraction and normalisation shared by rewards, rejection sampling and voting.

`extract_answer` finds what a completion commits to (the last `<answer>` block, else the last
`\\boxed{}`); `answer_key` maps simple equivalent spellings of an answer to one string so that
majority voting counts them together. Neither decides correctness: that is `accuracy`'s job.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

_ANSWER_RE = re.compile(r"(?s)<answer>(.*?)</answer>")
_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\b\s*")
# A bare `\boxed 5` (no braces) is legal LaTeX and appears in model output.
_BARE_BOXED_RE = re.compile(r"\s*([^\s{}$]+)")

_NUMBER_RE = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[+-]?\.\d+")
_LEFT_RIGHT_RE = re.compile(r"\\(?:left|right)(?![a-zA-Z])")
_SPACING_RE = re.compile(r"\\[,;:! ]|~|\s+")
_TEXT_RE = re.compile(r"\\(?:text|textbf|mbox|mathrm)\{([^{}]*)\}")
_DEGREE_RE = re.compile(r"\^\{?\\circ\}?")
_SHORT_FRAC_RE = re.compile(r"\\frac(\d)(\d)")
# `x=5` votes with `5`: a single-variable assignment as the whole answer.
_ASSIGNMENT_RE = re.compile(r"^[a-zA-Z]=(?!.*=)")


def completion_text(completion: Any) -> str:
    """Return the text of a completion given as a string or as chat messages.

    TRL passes conversational completions as `[{"role": "assistant", "content": ...}]`;
    the content of the last message is the completion.
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    return "" if completion is None else str(completion)


def _balanced(text: str, start: int) -> str | None:
    """Return the content of the brace group opening at `text[start]`, or None if unclosed."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i]
    return None


def last_boxed(text: str) -> str | None:
    """Return the content of the last complete `\\boxed{...}` (or `\\fbox{...}`) in `text`.

    Braces are matched, so `\\boxed{\\frac{1}{2}}` gives `\\frac{1}{2}`. A trailing boxed
    that was cut off (unbalanced) is skipped in favour of the previous complete one.
    """
    for match in reversed(list(_BOXED_RE.finditer(text))):
        end = match.end()
        if end < len(text) and text[end] == "{":
            content = _balanced(text, end)
        else:
            bare = _BARE_BOXED_RE.match(text, end)
            content = bare.group(1) if bare else None
        if content is not None:
            return content.strip()
    return None


def extract_answer(completion: Any) -> str | None:
    """Return the final answer a completion commits to, or None if it commits to none.

    Order: the content of the LAST `<answer>...</answer>` (if that content itself holds a
    `\\boxed{}`, the boxed part), else the last `\\boxed{...}`/`\\fbox{...}` anywhere, else None.
    An empty answer block counts as no answer.
    """
    text = completion_text(completion)
    blocks = _ANSWER_RE.findall(text)
    if blocks:
        content = blocks[-1].strip()
        boxed = last_boxed(content)
        content = boxed if boxed is not None else content
        return content or None
    return last_boxed(text) or None


def parse_number(text: str) -> Decimal | None:
    """Parse a plain decimal number (`72`, `-3.5`, `+1,000`, `$18.90`) exactly, else None.

    Commas are accepted only as thousands separators, so `1,2` (a list) is not a number.
    """
    cleaned = _SPACING_RE.sub("", text).replace("\\$", "").replace("$", "")
    cleaned = cleaned.rstrip(".")
    if not _NUMBER_RE.fullmatch(cleaned):
        return None
    try:
        return Decimal(cleaned.replace(",", ""))
    except InvalidOperation:
        return None


def _number_key(value: Decimal) -> str:
    """Canonical text of a number: no exponent, no trailing zeros, `-0` as `0`."""
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def answer_key(text: str | None) -> str:
    """Return a normalised form of an answer for majority voting (not a correctness check).

    Removes spacing, `$`, `\\left`/`\\right`, `\\text{}` wrappers, degree marks, a trailing
    period and a leading `x=`; maps `\\dfrac`/`\\tfrac` to `\\frac` and `\\frac12` to
    `\\frac{1}{2}`; writes plain numbers canonically (`1,000.0` -> `1000`, `+5` -> `5`).
    `None` maps to the empty string.
    """
    if text is None:
        return ""
    key = _LEFT_RIGHT_RE.sub("", text)
    key = _SPACING_RE.sub("", key)
    key = key.replace("\\$", "").replace("$", "").replace("\\%", "%")
    key = key.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    key = _TEXT_RE.sub(r"\1", key)
    key = _DEGREE_RE.sub("", key)
    key = _SHORT_FRAC_RE.sub(r"\\frac{\1}{\2}", key)
    key = _ASSIGNMENT_RE.sub("", key).rstrip(".")
    number = parse_number(key)
    return _number_key(number) if number is not None else key
