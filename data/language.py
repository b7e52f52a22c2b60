"""Which writing scripts a text uses: the one table and unit splitter of the project.

The language-consistency reward (model/rewards/language.py), the corpus suites'
``n_scripts`` (data/quality.py) and the single-language filter (data/filters.py) all detect
languages here. Scripts, not languages, are detected (from Unicode character names), so French
and English are indistinguishable while English and Russian, Chinese or Greek are not; that is
the mixing R1 penalises.

R1 (paper 2.3.2) rewards "the proportion of target language words in the CoT". Chinese and
Japanese write no spaces between words, so a run of their letters is a phrase or a sentence, not
a word; counted as one word, 25 Chinese characters weigh as much as one English word. As in
CJK word counts (a word processor counts each CJK character as a word), the unit is:

- one character of Han, Hiragana or Katakana, whichever language is the target;
- a word everywhere else: a maximal run of letters (combining marks included) of one script,
  Hangul included (Korean writes spaces between words); a change of script splits a run, so
  `abcабв` is two words.

What is math notation, not language, and never counts:

- the Latin and Greek letters inside a closed math span (`$…$`, `$$…$$`, `\\(…\\)`,
  `\\[…\\]`), except in a `\\text{…}`-like argument, LaTeX's own mark for prose in math. Letters
  of other scripts in a span still count: no script but math's own can be hidden there. An
  opener without its closer is literal text, so a lone `$` hides nothing after it.
- LaTeX commands (`\\frac`); digits, punctuation and symbols; a single Latin or Greek letter
  (`x`, `θ`, `𝑥`, a variable); the function names of :data:`MATH_WORDS` (`sin x`, `log n`).

What cannot hide a word: format characters (a zero-width joiner inside `w\u200de` is deleted,
so it is the word `we`), `MATHEMATICAL` letters (`𝐭𝐡𝐞` is the Latin word `the`), and letters
spaced out (three or more single letters separated by spaces, `t h e`, are one word).

Everything runs in time linear in the text's length (one pass per step, regexes without nested
quantifiers). Scripts are named `Latin`, `Cyrillic`, `Han`, `Hiragana`, ...; :func:`script_label`
gives the coarser upper-case labels of data-quality reports (`LATIN`, `CJK` for Han and both kana).
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
    "zh": frozenset({"Han", "Bopomofo"}),
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

_LATEX_COMMAND_RE = re.compile(r"\\([A-Za-z]+)")
# LaTeX commands that are notation: removed. Any other backslash-word (`\then`) is a word.
LATEX_COMMANDS = frozenset("""
    frac dfrac tfrac cfrac sqrt cdot times div pm mp circ infty partial nabla sum prod int oint lim
    left right big Big bigg Bigg begin end text textbf textit textrm mathrm mathbf mathit mathbb
    mathcal mathsf mbox operatorname boxed fbox displaystyle quad qquad hspace vspace newline
    le leq ge geq ne neq approx sim simeq cong equiv propto to gets rightarrow leftarrow
    Rightarrow Leftarrow leftrightarrow Leftrightarrow implies iff mapsto forall exists nexists in
    notin ni subset subseteq supset supseteq cup cap setminus emptyset varnothing mid nmid parallel
    perp angle triangle square cdots ldots dots vdots ddots overline underline hat bar vec tilde dot
    ddot widehat overrightarrow binom dbinom tbinom choose over lfloor rfloor lceil rceil langle
    rangle vert Vert lvert rvert lbrace rbrace deg gcd lcm max min det mod bmod pmod sin cos tan cot
    sec csc arcsin arccos arctan sinh cosh tanh log ln lg exp alpha beta gamma delta epsilon
    varepsilon zeta eta theta vartheta iota kappa lambda mu nu xi pi varpi rho varrho sigma
    varsigma tau upsilon phi varphi chi psi omega Gamma Delta Theta Lambda Xi Pi Sigma Upsilon Phi
    Psi Omega ell hbar prime therefore because label ref cite item color""".split())
# The tokens math spans open and close on: a backslash with the character it escapes (`\$` is
# a dollar, `\(` opens math, `\\` is a line break) or one or two dollars. No nested quantifier.
_MATH_TOKEN_RE = re.compile(r"\\.|\$\$?", re.DOTALL)
_MATH_CLOSERS = {"$$": "$$", "$": "$", "\\(": "\\)", "\\[": "\\]"}
_LETTER_RUN_RE = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{3,}(?![A-Za-z])")
# LaTeX's prose-in-math commands: their arguments are language even inside a span.
_TEXT_COMMAND_RE = re.compile(r"\\(?:text(?:bf|it|rm|sf|tt|normal)?|mbox)\s*\{")
# Function names written as words outside LaTeX (`sin x`, `log n`): notation, not English.
MATH_WORDS = frozenset({
    "sin", "cos", "tan", "cot", "sec", "csc", "arcsin", "arccos", "arctan", "sinh", "cosh",
    "tanh", "log", "ln", "lg", "exp", "max", "min", "gcd", "lcm", "mod", "det", "lim"})
# First word(s) of a Unicode character name -> script; other names give their first word.
_NAME_SCRIPTS = {"CJK": "Han", "KATAKANA-HIRAGANA": "Katakana", "IDEOGRAPHIC": "Han"}  # 々 〆 are Han
# Scripts of math notation: their single letters are variables and math spans hide them.
_VARIABLE_SCRIPTS = {"Latin", "Greek"}
# Scripts written without spaces between words: each character is a unit.
_CHARACTER_SCRIPTS = {"Han", "Hiragana", "Katakana", "Bopomofo"}
# Latin notation that is not English in any reasoning: unit abbreviations (5cm, 3 kg).
UNIT_ABBREVIATIONS = frozenset("mm cm km kg mg ml ft mph kph kmh hr hrs sec min lb lbs oz yd mi gal".split())
# Scripts one language writes together, reported as one label (Japanese mixes all three).
_LABELS = {"Han": "CJK", "Hiragana": "CJK", "Katakana": "CJK"}


@lru_cache(maxsize=65_536)
# Format characters (zero-width space/joiner, direction marks, soft hyphen) split no word:
# "w\u200de" is the word "we", not two single letters.
class _Invisible(dict):
    """A ``str.translate`` table, filled as characters are met: format characters are deleted,
    and a symbol that is a letter in disguise (``ⓣ``, ``⒯``, ``🅃``) becomes that letter."""

    def __missing__(self, code: int) -> int | str | None:
        ch = chr(code)
        category = unicodedata.category(ch)
        letters = [c for c in unicodedata.normalize("NFKC", ch) if c.isalpha()] if category == "So" else []
        self[code] = None if category == "Cf" else letters[0] if len(letters) == 1 else code
        return self[code]


_INVISIBLE = _Invisible()
# Three or more single letters spaced out ("t h e") are a word spelled out, not variables.
_SPACED_LETTERS_RE = re.compile(r"(?<![^\W\d_])[^\W\d_](?:[ \t.\-_·\d][^\W\d_](?![^\W\d_])){2,}")


def char_script(ch: str) -> str | None:
    """Script of one letter (`Latin`, `Cyrillic`, `Han`, ...); None for math letters."""
    name = unicodedata.name(ch, "")
    for prefix in ("FULLWIDTH ", "HALFWIDTH "):
        name = name.removeprefix(prefix)
    first = name.split(" ", 1)[0]
    if first == "MATHEMATICAL":  # 𝐭𝐡𝐞 is "the" in bold: its base letter's script
        base = unicodedata.normalize("NFKC", ch)
        return char_script(base) if base != ch and base.isalpha() else None
    if not first:
        return None
    return _NAME_SCRIPTS.get(first, first.capitalize())


def words(text: str) -> list[tuple[str, str]]:
    """Split text into its countable (unit, script) pairs, in order: a character of Han or
    kana, a word of any other script; math notation left out (see the module docstring)."""
    text = _SPACED_LETTERS_RE.sub(_join_letters, without_math(text.translate(_INVISIBLE)))
    found = _runs(_LATEX_COMMAND_RE.sub(_command, text))
    return [(w, s) for w, s in found if _is_language(w, s)]


def _join_letters(match: re.Match) -> str:
    return "".join(ch for ch in match.group(0) if ch.isalpha())


def _command(match: re.Match) -> str:
    """A known LaTeX command is notation (a space); an unknown one is its word (`\\then`)."""
    return " " if match.group(1) in LATEX_COMMANDS else " " + match.group(1)


def _runs(text: str) -> list[tuple[str, str]]:
    """(run, script) of each maximal run of letters of one script; Han and kana one per letter."""
    found: list[tuple[str, str]] = []
    current, script = "", None
    for ch in text:
        ch_script = char_script(ch) if ch.isalpha() else None
        if ch_script is None and current and unicodedata.category(ch).startswith("M"):
            current += ch  # a combining mark belongs to the letter before it
            continue
        if ch_script != script or ch_script is None or ch_script in _CHARACTER_SCRIPTS:
            if current and script is not None:
                found.append((current, script))
            current, script = "", ch_script
        if ch_script is not None:
            current += ch
    if current and script is not None:
        found.append((current, script))
    return found


def _is_language(word: str, script: str) -> bool:
    """False for a math variable (one Latin or Greek letter), a function name (`sin`) and a unit
    abbreviation (`cm`). Point names (`AB`, `ABC`) count as Latin words: treating short capitals
    as notation would let a policy write `WE ADD THE` unseen."""
    if script not in _VARIABLE_SCRIPTS:
        return True
    return len(word) > 1 and word.lower() not in MATH_WORDS and word.lower() not in UNIT_ABBREVIATIONS


def without_math(text: str) -> str:
    """`text` with the notation of its closed math spans blanked: of a span's content only its
    `\\text{…}` arguments and its letters of scripts other than Latin and Greek are kept."""
    pieces: list[str] = []
    last = 0
    for start, end in math_spans(text):
        pieces += [text[last:start], _span_language(text[start:end])]
        last = end
    pieces.append(text[last:])
    return "".join(pieces)


def math_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of the content of each closed `$…$`, `$$…$$`, `\\(…\\)`, `\\[…\\]` span.

    An opener without its closer is literal text and the scan goes on right after it, so an
    unclosed `$` hides nothing. Linear: a closed span's tokens are read once, and a failed
    search for a closer (to the end of the text) happens at most once per kind of opener,
    since after it no closer of that kind is left.
    """
    tokens = list(_MATH_TOKEN_RE.finditer(text))
    spans: list[tuple[int, int]] = []
    unclosable: set[str] = set()
    i = 0
    while i < len(tokens):
        closer = _MATH_CLOSERS.get(tokens[i].group())
        if closer is None or closer in unclosable:
            i += 1
            continue
        j = i + 1
        while j < len(tokens) and tokens[j].group() != closer:
            j += 1
        if j == len(tokens):
            unclosable.add(closer)
            i += 1
            continue
        spans.append((tokens[i].end(), tokens[j].start()))
        i = j + 1
    return spans


def _span_language(math: str) -> str:
    """The language of a math span's content, the rest blanked (length kept): Latin and Greek
    letters are notation, except runs of three or more that are not a command or a function
    name (`$then we add$` is prose)."""
    kept = [" " if ch.isalpha() and char_script(ch) in _VARIABLE_SCRIPTS else ch for ch in math]
    for run in _LETTER_RUN_RE.finditer(math):
        if run.group().lower() not in MATH_WORDS and run.group() not in LATEX_COMMANDS:
            kept[run.start():run.end()] = run.group()
    for start, end in _text_arguments(math):
        kept[start:end] = math[start:end]
    return "".join(kept)


def _text_arguments(math: str) -> list[tuple[int, int]]:
    """(start, end) of the outermost `\\text{…}`-like arguments of a math span, braces matched;
    an argument cut off before its closing brace runs to the end. Linear: nested ones are
    skipped, so each character is read once."""
    found: list[tuple[int, int]] = []
    covered = 0
    for match in _TEXT_COMMAND_RE.finditer(math):
        if match.start() < covered:
            continue
        depth, i = 1, match.end()
        while i < len(math) and depth:
            depth += {"{": 1, "}": -1}.get(math[i], 0)
            i += 1
        found.append((match.end(), i - 1 if depth == 0 else i))
        covered = i
    return found


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
    """Return the set of scripts of the countable units in `text` (empty if there are none)."""
    return {script for _, script in words(text)}


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
