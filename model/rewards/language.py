"""The language-consistency reward of DeepSeek-R1: the share of reasoning words written
in the target language's script.

Scripts, not languages, are detected (from Unicode character names), so French and English
are indistinguishable while English and Russian, Chinese or Greek are not; that is the mixing
R1 penalises. What counts as a word:

- a maximal run of letters (combining marks included) of one script; a change of script
  splits a run, so `abcабв` is two words. Han runs are not segmented (one run, one word).
- LaTeX commands (`\\frac`) are removed first; digits, punctuation and symbols never count.
- a single Latin or Greek letter (`x`, `θ`) is a math variable and does not count;
  `MATHEMATICAL ...` letters (`𝑥`) are symbols.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import Any

from model.rewards.answers import completion_text

# Language code (the part before any `-`/`_`) -> scripts its words may use.
LANGUAGE_SCRIPTS: dict[str, frozenset[str]] = {
    **{code: frozenset({"Latin"}) for code in (
        "en", "fr", "de", "es", "it", "pt", "nl", "sv", "da", "no", "nb", "fi", "pl", "cs",
        "sk", "ro", "hu", "tr", "id", "ms", "vi", "ca", "hr", "sl", "et", "lv", "lt", "sw")},
    **{code: frozenset({"Cyrillic"}) for code in ("ru", "uk", "bg", "be", "sr", "mk", "kk")},
    "zh": frozenset({"Han"}),
    "ja": frozenset({"Han", "Hiragana", "Katakana"}),
    "ko": frozenset({"Hangul", "Han"}),
    "el": frozenset({"Greek"}),
    **{code: frozenset({"Arabic"}) for code in ("ar", "fa", "ur")},
    "he": frozenset({"Hebrew"}),
    **{code: frozenset({"Devanagari"}) for code in ("hi", "mr", "ne")},
    "th": frozenset({"Thai"}),
    "bn": frozenset({"Bengali"}),
    "ta": frozenset({"Tamil"}),
    "ka": frozenset({"Georgian"}),
    "hy": frozenset({"Armenian"}),
}

_THINK_RE = re.compile(r"(?s)<think>(.*?)(?:</think>|$)")
_LATEX_COMMAND_RE = re.compile(r"\\[A-Za-z]+")
# First word(s) of a Unicode character name -> script; other names give their first word.
_NAME_SCRIPTS = {"CJK": "Han", "KATAKANA-HIRAGANA": "Katakana"}
_VARIABLE_SCRIPTS = {"Latin", "Greek"}


def _char_script(ch: str) -> str | None:
    """Script of one letter (`Latin`, `Cyrillic`, `Han`, ...); None for math letters."""
    name = unicodedata.name(ch, "")
    for prefix in ("FULLWIDTH ", "HALFWIDTH "):
        name = name.removeprefix(prefix)
    first = name.split(" ", 1)[0]
    if not first or first == "MATHEMATICAL":
        return None
    return _NAME_SCRIPTS.get(first, first.capitalize())


def _words(text: str) -> list[tuple[str, str]]:
    """Split text into (word, script) runs of letters of one script (see the module docstring)."""
    words: list[tuple[str, str]] = []
    current, script = "", None
    for ch in _LATEX_COMMAND_RE.sub(" ", text):
        ch_script = _char_script(ch) if ch.isalpha() else None
        if ch_script is None and current and unicodedata.category(ch).startswith("M"):
            current += ch  # a combining mark belongs to the letter before it
            continue
        if ch_script != script or ch_script is None:
            if current and script is not None:
                words.append((current, script))
            current, script = "", ch_script
        if ch_script is not None:
            current += ch
    if current and script is not None:
        words.append((current, script))
    return [(w, s) for w, s in words if not (len(w) == 1 and s in _VARIABLE_SCRIPTS)]


def script_of_word(word: str) -> str | None:
    """Return the script of a word (`Latin`, `Cyrillic`, `Han`, ...), None if it has no letters.

    For a word mixing scripts, the script of most of its letters wins.
    """
    counts: dict[str, int] = {}
    for ch in word:
        script = _char_script(ch) if ch.isalpha() else None
        if script is not None:
            counts[script] = counts.get(script, 0) + 1
    return max(counts, key=counts.__getitem__) if counts else None


def scripts_in(text: str) -> set[str]:
    """Return the set of scripts of the countable words in `text` (empty if there are none)."""
    return {script for _, script in _words(text)}


def reasoning_text(completion: Any) -> str:
    """The `<think>` content of a completion (all blocks joined), else the whole completion."""
    text = completion_text(completion)
    blocks = _THINK_RE.findall(text)
    return "\n".join(blocks) if blocks else text


def target_scripts(language: str) -> frozenset[str]:
    """Scripts allowed for a language code such as `en`, `zh-CN` or `pt_BR`."""
    base = language.strip().lower().replace("_", "-").split("-", 1)[0]
    if base not in LANGUAGE_SCRIPTS:
        raise KeyError(f"unknown language {language!r}; known: {sorted(LANGUAGE_SCRIPTS)}")
    return LANGUAGE_SCRIPTS[base]


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
        words = _words(reasoning_text(completion))
        if not words:
            scores.append(None)
            continue
        scores.append(sum(script in allowed for _, script in words) / len(words))
    return scores
