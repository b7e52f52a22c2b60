"""Which writing scripts a text uses: the one table and word splitter of the project.

The language-consistency reward (model/rewards/language.py), the corpus suites'
``n_scripts`` (data/quality.py) and the single-language filter (data/filters.py) all detect
languages here. Scripts, not languages, are detected (from Unicode character names), so French
and English are indistinguishable while English and Russian, Chinese or Greek are not; that is
the mixing R1 penalises. What counts as a word:

- a maximal run of letters (combining marks included) of one script; a change of script
  splits a run, so `abcабв` is two words. Han runs are not segmented (one run, one word).
- LaTeX commands (`\\frac`) are removed first; digits, punctuation and symbols never count.
- a single Latin or Greek letter (`x`, `θ`) is a math variable and does not count;
  `MATHEMATICAL ...` letters (`𝑥`) are symbols.

Scripts are named `Latin`, `Cyrillic`, `Han`, `Hiragana`, ...; :func:`script_label` gives the
coarser upper-case labels of data-quality reports (`LATIN`, `CJK` for Han and both kana).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

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
# Scripts one language writes together, reported as one label (Japanese mixes all three).
_LABELS = {"Han": "CJK", "Hiragana": "CJK", "Katakana": "CJK"}


@lru_cache(maxsize=65_536)
def char_script(ch: str) -> str | None:
    """Script of one letter (`Latin`, `Cyrillic`, `Han`, ...); None for math letters."""
    name = unicodedata.name(ch, "")
    for prefix in ("FULLWIDTH ", "HALFWIDTH "):
        name = name.removeprefix(prefix)
    first = name.split(" ", 1)[0]
    if not first or first == "MATHEMATICAL":
        return None
    return _NAME_SCRIPTS.get(first, first.capitalize())


def words(text: str) -> list[tuple[str, str]]:
    """Split text into (word, script) runs of letters of one script (see the module docstring)."""
    found: list[tuple[str, str]] = []
    current, script = "", None
    for ch in _LATEX_COMMAND_RE.sub(" ", text):
        ch_script = char_script(ch) if ch.isalpha() else None
        if ch_script is None and current and unicodedata.category(ch).startswith("M"):
            current += ch  # a combining mark belongs to the letter before it
            continue
        if ch_script != script or ch_script is None:
            if current and script is not None:
                found.append((current, script))
            current, script = "", ch_script
        if ch_script is not None:
            current += ch
    if current and script is not None:
        found.append((current, script))
    return [(w, s) for w, s in found if not (len(w) == 1 and s in _VARIABLE_SCRIPTS)]


def script_of_word(word: str) -> str | None:
    """Return the script of a word (`Latin`, `Cyrillic`, `Han`, ...), None if it has no letters.

    For a word mixing scripts, the script of most of its letters wins.
    """
    counts: dict[str, int] = {}
    for ch in word:
        script = char_script(ch) if ch.isalpha() else None
        if script is not None:
            counts[script] = counts.get(script, 0) + 1
    return max(counts, key=counts.__getitem__) if counts else None


def scripts_in(text: str) -> set[str]:
    """Return the set of scripts of the countable words in `text` (empty if there are none)."""
    return {script for _, script in words(text)}


def think_text(text: str) -> str:
    """The `<think>` content of a text (all blocks joined, an unclosed last one included),
    else the whole text."""
    blocks = _THINK_RE.findall(text)
    return "\n".join(blocks) if blocks else text


def target_scripts(language: str) -> frozenset[str]:
    """Scripts allowed for a language code such as `en`, `zh-CN` or `pt_BR`.

    Raises:
        KeyError: for a code not in :data:`LANGUAGE_SCRIPTS`, listing the known ones.
    """
    base = language.strip().lower().replace("_", "-").split("-", 1)[0]
    if base not in LANGUAGE_SCRIPTS:
        raise KeyError(f"unknown language {language!r}; known: {sorted(LANGUAGE_SCRIPTS)}")
    return LANGUAGE_SCRIPTS[base]


def script_label(script: str) -> str:
    """The data-quality label of a script: upper case, Han and both kana as `CJK`."""
    return _LABELS.get(script, script.upper())


def scripts_of_label(label: str) -> frozenset[str]:
    """The known scripts a label (`LATIN`, `cjk`, `Cyrillic`) stands for; empty if none."""
    wanted = label.strip().upper()
    known = frozenset().union(*LANGUAGE_SCRIPTS.values())
    return frozenset(s for s in known if script_label(s) == wanted or s.upper() == wanted)
