"""The one parser of model completions: reasoning, summary and final answer.

Every reward, filter, data-quality suite, evaluation metric and cons@k vote reads a completion
through :func:`parse_completion`, so "the reasoning" and "the answer" mean one thing project-wide.

A completion is split at its LAST ``</think>``:

- ``reasoning``: everything before it, ``<think>`` tags removed. A completion whose chat
  template put ``<think>`` in the prompt has only the closing tag; that is a closed block too.
- ``summary``: everything after it; only the summary is graded, so an answer tried and
  abandoned inside the reasoning never counts (paper 2.2.2: the answer follows the reasoning).
- An opened but unclosed block (``<think>`` after the last ``</think>``, or no ``</think>`` at
  all) is truncated reasoning: ``closed`` is False, the summary is empty and there is no answer.
- A completion without think tags is all summary (a base model's output, a bare answer).

The final ``answer`` is taken from the summary, first rule that applies:

1. the last non-empty ``<answer>…</answer>`` block (R1-Zero's Table-1 format); its boxes, if it
   holds any;
2. the top-level ``\\boxed{…}`` / ``\\fbox{…}`` of the summary. Several boxes with different
   content are one answer listed in order (``\\boxed{3} and \\boxed{5}`` is ``3, 5``), so a
   completion that hedges with two boxes commits to both, and is graded as such;
3. a GSM8K-style ``#### N`` line (the last one; a markdown heading ``#### Final Answer`` is not);
4. a bare answer: what follows a label on the last line (``Answer:``, ``Final answer:``,
   ``The answer is``, ``So the final answer is``) or the line after an answer heading
   (``**Final Answer**``, ``### Answer``), or the whole summary, when it is wrapped in markdown
   emphasis (``**73**``) or is short and holds no prose (no word of three or more letters
   outside LaTeX commands).

Everything here runs in time linear in the completion's length: tags are found with
``str.rfind``/``str.find`` and braces matched in one pass with a stack, never with a regex
that can backtrack over an adversarial string (20 KB of unclosed ``\\boxed{`` is the classic).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
BOX_COMMANDS = ("\\boxed", "\\fbox")
MAX_BARE_CHARS = 40  # a bare answer is a number or a short expression, not a sentence

_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")  # no nested quantifier: linear
_PROSE_RE = re.compile(r"(?<!\\)(?<![A-Za-z])[A-Za-z]{3,}")
# Emphasis around the whole text; its content may not hold the delimiter (**5**, **6** is a list).
_EMPHASIS_RE = re.compile(r"(\*\*|__|\*|_|`)((?:(?!\1).)+)\1", re.DOTALL)
GSM8K_MARK = "####"
# "Answer: 5", "Final answer: 5", "The final answer is 5" (Minerva's "... I hope it is correct.")
_LABEL_RE = re.compile(r"(?<![A-Za-z])(?:\*\*)?(?:(?:so|thus|hence|therefore),?\s+)?(?:the\s+)?(?:final\s+)?answer(?:\*\*)?"
                       r"\s*(?:is\b\s*:?|[:：])\s*(.+?)(?:\.?\s*I hope it is correct\.?)?$", re.IGNORECASE)
# A heading on its own line with the answer on the next: "**Final Answer**", "### Answer", "Answer:".
_HEADING_RE = re.compile(r"(?:#+\s*)?(?:\*\*)?(?:final\s+)?answer(?:\*\*)?\s*[:：]?\s*(?:\*\*)?", re.IGNORECASE)


@dataclass(frozen=True)
class Completion:
    """A completion split into its parts (see the module docstring for the rules).

    Attributes:
        text: the whole completion text.
        tagged: it has a think tag (``<think>`` or ``</think>``).
        closed: its reasoning is closed (always True when untagged).
        reasoning: the reasoning, tags removed and stripped; ``""`` when untagged.
        summary: the stripped text after the last ``</think>``; the whole text when untagged;
            ``""`` when the reasoning is unclosed.
        answer: the final answer of the summary (stripped, non-empty), else None.
    """

    text: str
    tagged: bool
    closed: bool
    reasoning: str
    summary: str
    answer: str | None

    @property
    def reasoning_or_text(self) -> str:
        """What language and repetition checks read: the reasoning, or the whole text untagged."""
        return self.reasoning if self.tagged else self.text


def completion_text(completion: Any) -> str:
    """The text of a completion given as a string or as chat messages.

    TRL passes conversational completions as ``[{"role": "assistant", "content": ...}]``; the
    content of the last message is the completion. None is ``""``.
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    return "" if completion is None else str(completion)


def parse_completion(completion: Any) -> Completion:
    """Split a completion (string or chat messages) into reasoning, summary and answer.

    Linear in the length of the text; never raises.
    """
    text = completion_text(completion)
    close = text.rfind(THINK_CLOSE)
    opened = text.rfind(THINK_OPEN)
    tagged = close >= 0 or opened >= 0
    if not tagged:
        return Completion(text, False, True, "", text.strip(), final_answer(text))
    if opened > close:  # no </think>, or a new block opened after the last one: truncated
        return Completion(text, True, False, _strip_tags(text[opened + len(THINK_OPEN):]), "", None)
    summary = text[close + len(THINK_CLOSE):].strip()
    return Completion(text, True, True, _strip_tags(text[:close]), summary, final_answer(summary))


def _strip_tags(text: str) -> str:
    return text.replace(THINK_OPEN, " ").replace(THINK_CLOSE, " ").strip()


def final_answer(summary: str) -> str | None:
    """The answer a summary commits to by the rules of the module docstring, else None."""
    block = last_block(summary, ANSWER_OPEN, ANSWER_CLOSE)
    if block is not None and block.strip():  # an empty block commits to nothing: read on
        boxed = boxed_answer(block)
        return boxed if boxed is not None else block.strip()
    boxed = boxed_answer(summary)
    if boxed is not None:
        return boxed
    marked = after_mark(summary)
    return marked if marked is not None else bare_answer(summary)


def after_mark(text: str, mark: str = GSM8K_MARK) -> str | None:
    """The stripped rest of the line after the last ``mark`` (GSM8K's ``#### 72``), else None."""
    start = text.rfind(mark)
    if start < 0:
        return None
    rest = text[start + len(mark):].split("\n", 1)[0].strip()
    return rest if rest and not _PROSE_RE.search(rest) else None  # "#### Final Answer" is a heading


def last_block(text: str, open_tag: str, close_tag: str) -> str | None:
    """Content of the last ``open_tag … close_tag`` block (the innermost one before the last
    close tag), or None when there is no closed block."""
    end = text.rfind(close_tag)
    if end < 0:
        return None
    start = text.rfind(open_tag, 0, end)
    return None if start < 0 else text[start + len(open_tag):end]


def _closing_braces(text: str) -> dict[int, int]:
    """Index of each ``{`` -> index of its matching ``}`` (unmatched ones absent); one pass."""
    stack: list[int] = []
    pairs: dict[int, int] = {}
    for i, ch in enumerate(text):
        if ch == "{":
            stack.append(i)
        elif ch == "}" and stack:
            pairs[stack.pop()] = i
    return pairs


def closing_brace(text: str, start: int) -> int | None:
    """Index of the ``}`` matching the ``{`` at ``text[start]``; None if it is never closed."""
    if text[start:start + 1] != "{":
        return None
    end = _closing_braces(text[start:]).get(0)
    return None if end is None else start + end


def boxes(text: str) -> list[str]:
    """Contents of the top-level complete ``\\boxed{…}``/``\\fbox{…}`` of ``text``, in order.

    Braces are matched (``\\boxed{\\frac{1}{2}}`` gives ``\\frac{1}{2}``); a box cut off before
    its closing brace is skipped; a box inside another box is part of the outer one's content.
    ``\\boxed 5`` (no braces, legal LaTeX) gives ``5``.
    """
    starts = [m.end() for m in _BOX_RE.finditer(text)]
    if not starts:
        return []
    pairs = _closing_braces(text)
    found: list[str] = []
    covered = -1  # end of the last box taken: boxes before it are nested in it
    for start in starts:
        if start <= covered:
            continue
        i = start
        while i < len(text) and text[i] in " \t":
            i += 1
        if i < len(text) and text[i] == "{":
            end = pairs.get(i)
            if end is None:
                continue
            found.append(_unwrap(text[i + 1:end].strip()))
            covered = end
        else:
            j = i
            while j < len(text) and not text[j].isspace() and text[j] not in "{}$":
                j += 1
            if j > i:
                found.append(text[i:j])
                covered = j
    return found


def _unwrap(content: str) -> str:
    """``\\boxed{\\boxed{5}}`` is ``5``: a box whose whole content is one box is unwrapped."""
    for _ in range(3):  # bounded: each level costs a pass over the content
        head = _BOX_RE.match(content)
        if head is None:
            break
        brace = content.find("{", head.end())
        if brace < 0 or content[head.end():brace].strip() or not content.endswith("}"):
            break
        if _closing_braces(content).get(brace) != len(content) - 1:
            break
        content = content[brace + 1:-1].strip()
    return content


def last_boxed(text: str) -> str | None:
    """Content of the last complete top-level box of ``text`` (see :func:`boxes`), else None."""
    found = boxes(text)
    return found[-1] if found else None


def boxed_answer(text: str) -> str | None:
    """The boxes of ``text`` as one answer: their distinct non-empty contents in order, joined
    by ``", "``; None without a non-empty box."""
    distinct = list(dict.fromkeys(b for b in boxes(text) if b))
    return ", ".join(distinct) if distinct else None


def strip_emphasis(text: str) -> str:
    """``text`` without markdown emphasis around all of it (``**73**``, ``__73__``, ``*73*``,
    `` `73` ``); unchanged otherwise."""
    wrapped = _EMPHASIS_RE.fullmatch(text)
    return wrapped.group(2).strip() if wrapped else text


def bare_answer(summary: str) -> str | None:
    """The summary as the answer: after a label on its last line or an answer heading (module
    docstring, rule 4), or the whole of it when emphasis-wrapped or short and prose-free."""
    text = summary.strip().rstrip(".").strip()
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    if len(lines) >= 2 and _HEADING_RE.fullmatch(lines[-2]):
        text = lines[-1]
    for _ in range(2):  # "Final Answer: The final answer is 6"
        label = None
        for label in _LABEL_RE.finditer(text.rsplit("\n", 1)[-1].strip()):
            pass  # the last label of the line
        if label:
            text = label.group(1).strip().strip("*_").strip().rstrip(".").strip().strip("$").strip()
    unwrapped = strip_emphasis(text)
    if unwrapped != text:
        return unwrapped or None
    if not text or len(text) > MAX_BARE_CHARS or "\n" in text or _PROSE_RE.search(text):
        return None
    return text


def extract_answer(completion: Any) -> str | None:
    """The final answer of a completion (``parse_completion(completion).answer``)."""
    return parse_completion(completion).answer
