"""One set of rules that normalise a final answer, applied to prediction and gold alike.

:func:`normalize` rewrites the spellings that graders disagree on into one form, and
:func:`exact_value` reads the answers that are plain numbers as exact fractions, so that most
comparisons need no computer algebra (model/rewards/equivalence.py falls back to math-verify for
the rest). Each rule below has a test of what it must accept AND of what it must not
(tests/test_answers.py); the bug reports they come from are against math-verify, TRL, open-r1,
lm-evaluation-harness and HumanEval harnesses.

- Unicode: ``−`` (and other minus signs), ``×``, ``÷``, ``·``, ``π``, ``∞``, ``°``, ``√``,
  ``≤``/``≥``/``≠``, ``±``, runs of superscript digits (``x²³`` is ``x^{23}``), vulgar fractions
  (``½``) and full-width forms become their LaTeX/ASCII form; format characters (zero-width
  space, direction marks) and currency signs (``€``, ``£``, ``¥``, ``₹``, ``\\$``) are dropped.
- Emphasis: markdown ``**73**``, ``__73__``, ``*73*``, `` `73` `` (``**5**, **6**`` is
  ``5, 6``), ``\\textbf{}``/``\\mathbf{}`` wrappers and ``\\color{}`` are removed.
- Delimiters and spacing: ``$``, ``\\(``, ``\\)``, ``\\[``, ``\\]``, ``\\left``/``\\right``,
  ``\\displaystyle``, ``\\!``; ``\\,``, ``\\;``, ``~``, ``\\quad`` are spaces, and a space is kept
  only between two words or numbers (``( 3, 5 )`` is ``(3,5)``); ``\\dfrac``/``\\tfrac``
  are ``\\frac`` and ``\\frac12`` is ``\\frac{1}{2}``. A trailing period is dropped.
- Separators: a comma (or ``{,}``, ``\\,``, ``,\\!``) is a thousands separator only between a
  1-3 digit group and groups of exactly three digits (``1,000``; ``1{,}000``). A space, or any
  run of spacing commands, never is: ``3 4`` and ``3 \\, 4`` stay two numbers, not ``34``.
- Percent and degrees: ``\\%``, ``%``, ``percent``, ``^\\circ``, ``\\degree``, ``degrees`` (and a
  ``C``/``F`` after them) after a number are dropped on both sides, so ``28\\%`` equals ``28``
  either way round (not ``0.28``).
- Units: the longest run of up to three :data:`UNITS` after a number is dropped (``18 dollars``,
  ``5\\text{ cm}^2``, ``3 square feet``, ``6 km/h``, ``5 million dollars`` keeps ``million``);
  any other word stays (``5 wrong``, ``5 halves``, ``72 apples``) and then fails against a gold
  without it. Constants and variables keep their letters (``2i``, ``2e``, ``2x``, ``2\\pi``); a
  single letter is a unit only inside ``\\text{}`` (``5\\text{ m}``; ``5 m`` is 5 times m).
- Magnitudes: ``10 million`` is ``10000000`` (``thousand``, ``million``, ``billion``,
  ``trillion``, ``quadrillion``, ``hundred``, ``dozen``, ``lakh``, ``crore``, plurals, ``bn``,
  ``mn`` and a glued ``K``/``M``/``B``), exactly, never ``10``.
- Numbers: ``1.5e3`` (exponent up to three digits) and ``0.1\\overline{6}`` are exact values.
- Mixed numbers: ``2 1/2`` and ``2\\frac{1}{2}`` are ``\\frac{5}{2}`` (a proper fraction after a
  whole number); ``2 \\cdot \\frac{1}{2}`` is not a mixed number.
- A whole answer ``x = 5`` (one variable, one ``=``) is ``5`` (:func:`same_answer` still tells
  ``x = 5`` from ``y = 5``); ``(C)`` is ``C``; ``\\leq`` is ``\\le``.

:func:`same_answer` then decides what it can without computer algebra, and refuses what
math-verify would wrongly accept (see its docstring).

Everything is linear in the answer's length; answers longer than :data:`MAX_ANSWER_CHARS` are
not normalised and equal only the same text.
"""

from __future__ import annotations

import math
import numbers
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from decimal import Decimal
from fractions import Fraction
from typing import Any

from data.completions import after_mark, boxes, strip_emphasis

MAX_ANSWER_CHARS = 1_000  # MATH-500's longest gold is ~60 chars; longer is not an answer
MAX_DIGITS = 400  # longer plain numbers are compared as text (string to integer is quadratic)
MIN_DIGITS = 7  # significant digits a decimal needs to stand for a value it rounds (1/3, pi)

_UNICODE = {
    "\u2212": "-", "\u2013": "-", "\u00d7": "\\times ", "\u00f7": "\\div ", "\u00b7": "\\cdot ",
    "\u22c5": "\\cdot ", "\u03c0": "\\pi ", "\u221e": "\\infty ", "\u00b0": "^\\circ ",
    "\u2264": "\\le ", "\u2265": "\\ge ", "\u2260": "\\ne ", "\u00b1": "\\pm ", "\u2213": "\\mp ",
    "\u00a0": " ", "\u2009": "\\,", "\u202f": "\\,", "\u2032": "'", "\u2217": "*",
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\ufe63": "-", "\uff0d": "-",
    "\u20ac": "", "\u00a3": "", "\u00a5": "", "\u20b9": "",  # currency signs, like \$
    "\u00ba": "^\\circ ", "\u02da": "^\\circ ", "\u2208": "\\in ", "\u2044": "/", "\u221b": "\\sqrt[3]",
    "\u221c": "\\sqrt[4]",
}
_SUBSCRIPTS = dict(zip("₀₁₂₃₄₅₆₇₈₉", "0123456789"))
_SUBSCRIPT_OPEN = "\x00_{"
_SUPERSCRIPT_OPEN = "\x00^{"  # marks a superscript made here until its run is complete
_SUPERSCRIPTS = dict(zip("⁰¹²³⁴⁵⁶⁷⁸⁹⁻⁺", "0123456789-+"))
_SQRT_RE = re.compile(r"√\s*(\d+|\{|\([^()]*\))")
# Bold/underline markers next to a word, not between two: **5**, **6** is 5, 6; 2**3 stays.
_MARKDOWN_RE = re.compile(r"(?<![\w)}])(?:\*\*|__)(?=\S)|(?<=\S)(?:\*\*|__)(?![\w({\\])")
_WRAPPER_RE = re.compile(r"\\(?:textbf|mathbf|boldsymbol|bm|emph|textit|mathit)\{([^{}]*)\}|\\color\{[^{}]*\}")
_TEXT_RE = re.compile(r"\\(?:text|mbox|mathrm|textrm|textnormal|operatorname)\s*\{([^{}]*)\}")
_DELIMITERS_RE = re.compile(r"\\[()\[\]]|\\\$|\$|\\displaystyle|\\left(?![a-zA-Z])|\\right(?![a-zA-Z])|\\!")
_SPACES_RE = re.compile(r"(?:(?<!\\)\\[,;: ]|~|\\q?quad(?![a-zA-Z])|\\(?:text|mbox)\s*\{\s*\}|\s)+")
_MATRIX_RE = re.compile(r"(?<=\\begin\{)[bB]?matrix(?=\})|(?<=\\end\{)[bB]?matrix(?=\})")
_LONG_RELATION_RE = re.compile(r"\\(le|ge|ne)q(?![A-Za-z])")
_FRAC_RE = re.compile(r"\\[dt]frac(?![a-zA-Z])")
_SHORT_FRAC_RE = re.compile(r"\\frac\s*(\d)\s*(\d)")
_THIN_SEPARATOR_RE = re.compile(r"(?<=\d)(?:\{,\}|,\\!\s?|\\,|\{\\,\})(?=\d{3}(?!\d))")
_PERCENT_RE = re.compile(r"(?:(?<=[\d}.)])|(?<=\\pi))\s*(?:\\%|%|\s+percent)$", re.IGNORECASE)
_DEGREE_RE = re.compile(r"(?:(?<=[\d}.)])|(?<=\\pi))\s*(?:\^\s*\{?\s*\\circ\s*\}?|\\circ|\\degree|\s+degrees?)"
                        r"(?:\s*(?:\\text\{\s*)?[CF]\}?)?$")
_TEXT_UNIT_RE = re.compile(r"(?:(?<=[\d}.)])|(?<=\\pi))\s*\\(?:text|mbox|mathrm|textrm)\s*\{\s*([A-Za-z][A-Za-z ./]{0,30}?)"
                           r"(?:\^\{?\d\}?)?\s*\}(?:\^\{?\d\}?)?$")
# Each word ends where its letters do, so the words of a unit split one way only (no backtracking).
_WORD_UNIT_RE = re.compile(r"(?:(?<=[\d}.)])|(?<=\\pi))\s+((?:[A-Za-z]{1,15}(?:/[A-Za-z]{1,5})?(?![A-Za-z/])\.?\s*){1,3})"
                           r"(?:\^\{?\d\}?)?$")
_GLUED_UNIT_RE = re.compile(r"(?<=\d)(?:cm|mm|km|kg|mg|ml|mL|ft|hrs?|mph|sec|min)(?:\^\{?\d\}?)?$")
_MAGNITUDES = {"hundred": 100, "dozen": 12, "thousand": 10**3, "million": 10**6, "billion": 10**9,
               "trillion": 10**12, "quadrillion": 10**15, "lakh": 10**5, "crore": 10**7,
               "bn": 10**9, "mn": 10**6}
_SUFFIXES = {"k": 10**3, "K": 10**3, "M": 10**6, "B": 10**9}  # glued to the number only: 5K, 2M
_MAGNITUDE_RE = re.compile(
    r"^([+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?)(?:\s*(" + "|".join(_MAGNITUDES) + r")s?|((?-i:[kKMB])))$",
    re.IGNORECASE)
# The units a number may carry (a plural adds s or es). Nothing else after a number is dropped:
# "5 wrong", "5 less", "5 halves", "5 squared" keep their words, and a word the gold lacks fails.
UNITS = frozenset("""
    mm cm km meter metre centimeter centimetre millimeter millimetre kilometer kilometre inch inches
    foot feet ft yard yd mile mi sq square cubic acre hectare liter litre ml milliliter gallon gal
    quart pint cup cc gram kg kilogram mg milligram pound lb lbs ounce oz ton tonne second sec min
    minute hour hr hrs day week month year yr decade century mph kph kmh km/h m/s ft/s dollar cent
    euro yen yuan rupee rs usd eur penny pennies degree deg radian rad celsius fahrenheit kelvin
    byte kb mb gb bit unit point""".split())
_LETTER_UNITS = frozenset("mgslhkcf")  # single letters are units only in \text{}: 5\text{ m}
_MIXED_RE = re.compile(r"^([+-]?)(\d+)\s+(\d+)\s*/\s*(\d+)$|^([+-]?)(\d+)\s*\\frac\{(\d+)\}\{(\d+)\}$")
_ASSIGNMENT_RE = re.compile(r"^[A-Za-z]\s*=(?!.*=)\s*")
_ASSIGNED_RE = re.compile(r"^([A-Za-z])\s*=(?!.*=)")
_CHOICE_RE = re.compile(r"^\(([A-Za-z])\)$")
_NUMBER_RE = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[+-]?\.\d+")
_REPEATING_RE = re.compile(r"([+-]?)(\d*)\.(\d*)\\overline\{(\d{1,50})\}")
_SCIENTIFIC_RE = re.compile(r"([+-]?(?:\d+(?:\.\d+)?|\.\d+))[eE]([+-]?\d{1,3})")  # 1.5e3; 2e stays
_FRACTION_RE = re.compile(r"([+-]?)\\frac\{([+-]?\d+)\}\{([+-]?\d+)\}|([+-]?\d+)\s*/\s*([+-]?\d+)")
_COEFFICIENT_RE = re.compile(r"(?<=\d)(?: ?\\cdot ?| )(?=[A-Za-z](?![A-Za-z/]))")
_LOOSE_SPACE_RE = re.compile(r"(?<!\w) | (?!\w)")
_COMMA_RE = re.compile(r" ?, ?")
_TIGHT_COMMA_RE = re.compile(r",(?! |\d)|(?<=\D),(?=\d)")
# What unit stripping left of "<number> <letters>": a constant or variable times the number.
_NUMBER_TIMES_NAME_RE = re.compile(r"[+-]?[\d.,]+\s*\\?[A-Za-z]+")
_COMMAND_RE = re.compile(r"\\([A-Za-z]+)")
# The LaTeX commands a prediction may use that its gold does not: they only spell a value.
VALUE_COMMANDS = frozenset("""
    frac sqrt cdot times div pi infty circ sin cos tan cot sec csc arcsin arccos arctan sinh cosh
    tanh log ln exp binom dbinom tbinom choose overline begin end pmatrix bmatrix matrix cases
    alpha beta gamma delta epsilon varepsilon zeta eta theta vartheta kappa lambda mu nu xi rho sigma
    tau phi varphi chi psi omega Gamma Delta Theta Lambda Xi Pi Sigma Phi Psi Omega""".split())
_SUBSCRIPT_RE = re.compile(r"_\{?([A-Za-z0-9]+)\}?")
_LETTER_RE = re.compile(r"(?<![A-Za-z])[A-Za-z](?![A-Za-z])")
_WORD_RE = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{2,}")
_MATH_NAMES = frozenset({"pi", "sin", "cos", "tan", "cot", "sec", "csc", "log", "ln", "exp", "sqrt", "inf",
                         "infty", "mod", "max", "min", "gcd", "lcm", "det", "lim", "arcsin", "arccos", "arctan"})
_SPLIT_DIGITS_RE = re.compile(r"\d\s+\d")
# Relations and connectives: a prediction that adds one the gold lacks says something else
# (`\neq 5`, `5 = 6`, `5 or 6`, `\approx 5`), whatever math-verify extracts from it.
_RELATION_RE = re.compile(r"\\(?:n?eq|neq|ne|not|neg|approx|sim|simeq|cong|propto|to|rightarrow|Rightarrow|"
                          r"implies|iff|lor|land|vee|wedge|mid|cup|cap|equiv|[lc]?dots|ldots|le|ge|leq|geq|"
                          r"lt|gt|pm|mp|boxed|fbox)(?![A-Za-z])|:=|[=<>]|\b(?:or|and)\b")


@dataclass(frozen=True)
class Number:
    """An answer that is a plain number: its exact value, and whether it was written as a
    decimal with a fractional part (the only kind a tolerance may apply to)."""

    value: Fraction
    decimal: bool

    def rounds(self, other) -> bool:
        """Whether this decimal is ``other`` (an exact value, a float for an irrational one)
        correctly rounded at its written precision, with at least :data:`MIN_DIGITS`
        significant digits: ``0.3333333`` rounds 1/3, ``3141590.0`` does not round 10^6 π."""
        text = _plain(self.value)
        places = len(text.partition(".")[2])
        digits = len(text.replace("-", "").replace(".", "").lstrip("0"))
        return digits >= MIN_DIGITS and abs(Fraction(other) - self.value) <= Fraction(1, 2 * 10**places)


def gold_answer(raw: Any) -> str | None:
    """The answer in a dataset's own gold column: a solution's last box (``solution`` as TRL and
    MATH name it), else GSM8K's ``… #### 72`` (``72``), else the text. A number (a float from a
    JSON column) is written out in full: ``1e-07`` is ``0.0000001``."""
    if raw is None or isinstance(raw, bool):
        return None
    if isinstance(raw, numbers.Integral):
        return str(int(raw))
    if isinstance(raw, numbers.Real):  # a float column, numpy's included
        value = float(raw)
        return format(Decimal(repr(value)), "f") if math.isfinite(value) else None  # NaN: missing
    text = str(raw)
    found = boxes(text) if "\\boxed" in text or "\\fbox" in text else []
    if found and found[-1]:
        return found[-1]
    marked = after_mark(text)
    return marked if marked is not None else text.strip() or None


def _unicode(text: str) -> str:
    out = []
    for ch in text:
        if unicodedata.category(ch) == "Cf":  # zero-width and direction marks: 7\u200b2 is 72
            continue
        if ch in _UNICODE:
            out.append(_UNICODE[ch])
        elif ch in _SUPERSCRIPTS:  # a run of superscripts is one exponent: x²³ is x^{23}
            if out and out[-1].startswith(_SUPERSCRIPT_OPEN):
                out[-1] = out[-1][:-1] + _SUPERSCRIPTS[ch] + "}"
            else:
                out.append(_SUPERSCRIPT_OPEN + _SUPERSCRIPTS[ch] + "}")
        elif ch in _SUBSCRIPTS:  # 1011₂ is 1011_{2}
            if out and out[-1].startswith(_SUBSCRIPT_OPEN):
                out[-1] = out[-1][:-1] + _SUBSCRIPTS[ch] + "}"
            else:
                out.append(_SUBSCRIPT_OPEN + _SUBSCRIPTS[ch] + "}")
        elif "\uff01" <= ch <= "\uff5e":  # full-width ASCII
            out.append(chr(ord(ch) - 0xFEE0))
        elif unicodedata.category(ch) == "No" and unicodedata.name(ch, "").startswith("VULGAR FRACTION"):
            value = Fraction(unicodedata.numeric(ch)).limit_denominator(100)
            out.append(f"\\frac{{{value.numerator}}}{{{value.denominator}}}")
        else:
            out.append(ch)
    text = "".join(out).replace(_SUPERSCRIPT_OPEN, "^{").replace(_SUBSCRIPT_OPEN, "_{")
    return _SQRT_RE.sub(_sqrt, text)


def _sqrt(match: re.Match) -> str:
    """√2 is \\sqrt{2}, √(x+1) is \\sqrt{x+1}, √{…} keeps its group."""
    radicand = match.group(1)
    if radicand == "{":
        return "\\sqrt{"
    return "\\sqrt{" + (radicand[1:-1] if radicand.startswith("(") else radicand) + "}"


def _spacing(text: str) -> str:
    """Spaces kept only where they matter: between two words or numbers, and after a list
    comma. ``3, 500`` (a list) stays apart from ``3,500`` (a thousands separator). A number
    times one letter is written together (``5 i``, ``5\\cdot i`` are ``5i``)."""
    text = _SPACES_RE.sub(" ", text).strip()
    text = _COEFFICIENT_RE.sub("", text)
    text = _TIGHT_COMMA_RE.sub(", ", _COMMA_RE.sub(lambda m: ", " if " " in m.group(0) else ",", text))
    return ", ".join(_LOOSE_SPACE_RE.sub("", part) for part in text.split(", "))


def _strip_units(text: str) -> str:
    """Drop one trailing percent sign, degree mark or unit after a number (see module doc)."""
    for pattern in (_PERCENT_RE, _DEGREE_RE, _GLUED_UNIT_RE):
        stripped = pattern.sub("", text)
        if stripped != text:
            return stripped
    for pattern, single_letters in ((_TEXT_UNIT_RE, True), (_WORD_UNIT_RE, False)):
        match = pattern.search(text)
        if not match:
            continue
        words = match.group(1).replace(".", " ").split()
        for k in range(len(words)):  # the longest suffix of units: "million dollars" drops "dollars"
            if all(_is_unit(w, single_letters) for w in words[k:]):
                return (text[:match.start()] + " " + " ".join(words[:k])).strip()
    return text


def _is_unit(word: str, single_letters: bool) -> bool:
    """A unit of :data:`UNITS` (plural too); a single letter only inside ``\\text{}``."""
    lower = word.lower()
    if len(word) == 1:
        return single_letters and lower in _LETTER_UNITS
    return lower in UNITS or (lower.endswith("es") and lower[:-2] in UNITS) or (lower.endswith("s") and lower[:-1] in UNITS)


def _magnitude(text: str) -> str:
    match = _MAGNITUDE_RE.match(text)
    if not match:
        return text
    scale = _MAGNITUDES[match.group(2).lower()] if match.group(2) else _SUFFIXES[match.group(3)]
    return _plain(Fraction(match.group(1).replace(",", "")) * scale)  # exact: no 28-digit rounding


def _mixed(text: str) -> str:
    match = _MIXED_RE.match(text)
    if not match:
        return text
    groups = match.groups()
    sign, whole, num, den = groups[:4] if groups[1] is not None else groups[4:]
    whole, num, den = int(whole), int(num), int(den)
    if den == 0 or num >= den:
        return text  # not a proper fraction: 2\frac{3}{2} is a product, left to math-verify
    return f"{'-' if sign == '-' else ''}\\frac{{{whole * den + num}}}{{{den}}}"


@lru_cache(maxsize=65_536)
def normalize(answer: str | None) -> str:
    """The answer rewritten by the rules of the module docstring (``""`` for None).

    Idempotent: ``normalize(normalize(a)) == normalize(a)``.
    """
    if answer is None:
        return ""
    text = str(answer)
    if len(text) > MAX_ANSWER_CHARS:
        return text.strip()  # not an answer: compared as text, never cut (a cut can change it)
    text = _THIN_SEPARATOR_RE.sub(",", _unicode(text).strip())  # before \! goes: 11,\! 111 is 11111
    for _ in range(3):  # wrappers may nest: **$\textbf{73}$**
        before = text
        text = text.strip().rstrip(".").strip()
        text = _MARKDOWN_RE.sub("", strip_emphasis(text))
        text = _WRAPPER_RE.sub(r"\1", _DELIMITERS_RE.sub("", text))
        if text == before:
            break
    text = _spacing(_FRAC_RE.sub("\\\\frac", text))
    text = _SHORT_FRAC_RE.sub(r"\\frac{\1}{\2}", text)
    text = _LONG_RELATION_RE.sub(r"\\\1", text)  # \leq is \le
    text = _MATRIX_RE.sub("pmatrix", text)  # bmatrix, Bmatrix, matrix: one spelling (vmatrix differs)
    text = text.strip().rstrip(".").strip()
    whole = _TEXT_RE.fullmatch(text)
    text = whole.group(1).strip().rstrip(".").strip() if whole else text  # \text{6 cm}, \text{Evelyn}
    for _ in range(4):  # "5 \text{cm}^2", "28\%" and "90^\circ" may stack
        stripped = _strip_units(text).strip()
        if stripped == text:  # then a unit in words: 28\text{ percent}, 3\text{ thousand dollars}
            stripped = _spacing(_TEXT_RE.sub(r" \1 ", text))
        if stripped == text:
            break
        text = stripped
    text = _TEXT_RE.sub(r"\1", text).strip().rstrip(".").strip()
    text = _ASSIGNMENT_RE.sub("", _shared_assignment(text))
    choice = _CHOICE_RE.fullmatch(text)
    text = choice.group(1) if choice else text
    return _mixed(_magnitude(text)).strip()


def _shared_assignment(text: str) -> str:
    """``x=3, x=5`` is ``3, 5``: a list whose items all assign the same variable."""
    items = text.split(", ")
    heads = {m.group(1) if (m := _ASSIGNED_RE.match(item)) else None for item in items}
    if len(items) < 2 or len(heads) != 1 or None in heads:
        return text
    return ", ".join(_ASSIGNMENT_RE.sub("", item) for item in items)


def _plain(value: Fraction) -> str:
    """Canonical text of a number, exactly: no exponent, no trailing zeros, ``-0`` as ``0``; a
    fraction whose decimal does not terminate as ``p/q``."""
    if value.denominator == 1:
        return str(value.numerator)
    if not _terminates(value.denominator):
        return f"{value.numerator}/{value.denominator}"
    places = 0
    while (value * 10**places).denominator != 1:
        places += 1
    digits = str(abs(value.numerator * 10**places // value.denominator)).rjust(places + 1, "0")
    text = f"{digits[:-places]}.{digits[-places:]}".rstrip("0")
    return ("-" if value < 0 else "") + text


def _terminates(denominator: int) -> bool:
    for p in (2, 5):
        while denominator % p == 0:
            denominator //= p
    return denominator == 1


def exact_value(answer: str | None) -> Number | None:
    """The exact value of a normalised answer that is a plain number or fraction, else None.

    ``72``, ``-3.5``, ``1,000``, ``\\frac{1}{2}``, ``-\\frac{3}{4}``, ``3/4`` (and, through
    :func:`normalize`, ``$18.90``, ``2 1/2``, ``10 million``, ``28\\%``). A zero denominator or a
    number longer than :data:`MAX_DIGITS` characters is None.
    """
    if answer is None or len(answer) > MAX_DIGITS:
        return None
    text = answer.strip()
    if _NUMBER_RE.fullmatch(text):
        value = Fraction(text.replace(",", ""))
        return Number(value, "." in text and value.denominator != 1)
    repeating = _REPEATING_RE.fullmatch(text)
    if repeating:  # 0.1\overline{6} = 1/6
        sign, whole, head, cycle = repeating.groups()
        shift = Fraction(1, 10 ** len(head))
        value = int(whole or 0) + Fraction(int(head or 0)) * shift + Fraction(int(cycle), 10 ** len(cycle) - 1) * shift
        return Number(-value if sign == "-" else value, False)
    scientific = _SCIENTIFIC_RE.fullmatch(text)
    if scientific:
        value = Fraction(scientific.group(1)) * Fraction(10) ** int(scientific.group(2))
        return Number(value, value.denominator != 1 and "." in scientific.group(1))
    match = _FRACTION_RE.fullmatch(text)
    if not match:
        return None
    sign, num, den = (match.group(1), match.group(2), match.group(3)) if match.group(2) is not None \
        else ("", match.group(4), match.group(5))
    if int(den) == 0:
        return None
    value = Fraction(int(num), int(den))
    return Number(-value if sign == "-" else value, False)


def answer_key(answer: str | None) -> str:
    """One string per spelling of an answer: the normalised text, plain numbers canonically
    (``0.5``, ``\\frac{1}{2}`` and ``1/2`` all give ``0.5``; ``1/3`` gives ``1/3``).

    Equal keys are equivalent answers; different keys may still be (``\\sqrt{117}`` and
    ``3\\sqrt{13}``): model/rewards/equivalence.py decides those.
    """
    text = normalize(answer)
    number = exact_value(text)
    key = _plain(number.value) if number is not None else text
    variable = _assigned(answer)
    return f"{variable}={key}" if variable else key


def same_answer(pred: str | None, gold: str | None) -> bool | None:
    """Whether answer ``pred`` equals ``gold`` by these rules alone: True, False, or None
    (undecided: computer algebra has to judge).

    - Exact values compare exactly. A decimal may stand for a fraction whose decimal does not
      terminate when it is that fraction correctly rounded, to at least :data:`MIN_DIGITS`
      significant digits (``0.3333333`` and ``\\frac{1}{3}``; :meth:`Number.rounds`);
      ``2.0000001`` is not ``2``.
    - Digits split by a space (``3 4``) are never a number; a number is never a word (``five``)
      or a multiple of a name (``2i``, ``5 m``, ``2\\pi``).
    - Text (letters and spaces only: ``\\text{Monday}``) equals only the same text, case aside for
      words; it never reaches math-verify, which reads a word as a product of letters (anagrams).
    - ``x = 5`` and ``y = 5`` differ (both assign, to different variables).
    - A prediction with a relation, connective, word or LaTeX command (other than
      :data:`VALUE_COMMANDS`) the gold lacks (``\\neq 5``, ``5 = 6``,
      ``5 or 6``, ``\\approx 5``, a box left inside the answer, ``1 apples!``) is not the gold.
    """
    a, b = normalize(pred), normalize(gold)
    if not a or not b:
        return False
    if a == b:
        return _assigned(pred) == _assigned(gold) or not (_assigned(pred) and _assigned(gold))
    x, y = exact_value(a), exact_value(b)
    if x is not None and y is not None:
        if x.value == y.value:
            return True
        exact = y if x.decimal else x
        if x.decimal == y.decimal or _terminates(exact.value.denominator):
            return False
        return (x if x.decimal else y).rounds(exact.value)
    if _SPLIT_DIGITS_RE.search(a) or _SPLIT_DIGITS_RE.search(b) or max(len(a), len(b)) > MAX_ANSWER_CHARS:
        return False
    if _NUMBER_RE.fullmatch(a) and _NUMBER_RE.fullmatch(b):
        return False  # two plain numbers too long to read exactly: only equal text is equal
    if _plain_text(a) or _plain_text(b):
        return len(a) > 1 and a.casefold() == b.casefold()
    if (x is None) != (y is None) and _NUMBER_TIMES_NAME_RE.fullmatch(a if x is None else b):
        return False
    if set(_RELATION_RE.findall(a)) - set(_RELATION_RE.findall(b)) or _words(a) - _words(b):
        return False
    if set(_COMMAND_RE.findall(a)) - set(_COMMAND_RE.findall(b)) - VALUE_COMMANDS:
        return False  # math-verify skips a command it does not know (5 \mapsto 6 would be 6)
    subscripts, variables = (_SUBSCRIPT_RE.findall(a), _SUBSCRIPT_RE.findall(b)), (_letters(a), _letters(b))
    if all(subscripts) and sorted(subscripts[0]) != sorted(subscripts[1]):
        return False  # 101_2 is not 101_3: math-verify drops a base
    if all(variables) and variables[0] != variables[1]:
        return False  # 3r^2 is not 3R^2
    return None


def _letters(text: str) -> set[str]:
    """The one-letter names (variables, constants) of an answer, case kept."""
    return set(_LETTER_RE.findall(_COMMAND_RE.sub(" ", text)))


def _words(text: str) -> set[str]:
    """Lower-cased words (two or more letters, not a LaTeX command or a math name) of a text:
    prose the gold does not have (``1 apples!``) is never left for math-verify to skip."""
    return {w.lower() for w in _WORD_RE.findall(text)} - _MATH_NAMES


def _plain_text(text: str) -> bool:
    """Letters and spaces only (after normalisation), at least one letter: a word answer."""
    return bool(re.fullmatch(r"[^\W\d_]+(?: [^\W\d_]+)*", text))


def _assigned(answer: str | None) -> str | None:
    """The variable a whole answer ``x = 5`` assigns, else None."""
    match = _ASSIGNED_RE.match(_unicode(str(answer or "")).strip().lstrip("$").strip())
    return match.group(1) if match else None
