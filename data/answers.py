"""One set of rules that normalise a final answer, applied to prediction and gold alike.

:func:`normalize` rewrites the spellings that graders disagree on into one form, and
:func:`exact_value` reads the answers that are plain numbers as exact fractions, so that most
comparisons need no computer algebra (model/rewards/equivalence.py falls back to math-verify for
the rest). Each rule below has a test of what it must accept AND of what it must not
(tests/test_answers.py); the bug reports they come from are against math-verify, TRL, open-r1,
lm-evaluation-harness and HumanEval harnesses.

- Unicode: ``−``, ``×``, ``÷``, ``·``, ``π``, ``∞``, ``°``, ``√``, ``≤``/``≥``/``≠``, ``±``,
  superscript digits, vulgar fractions (``½``) and full-width forms become their LaTeX/ASCII form.
- Emphasis: markdown ``**73**``, ``__73__``, ``*73*``, `` `73` `` and ``\\textbf{}``/``\\mathbf{}``
  wrappers are removed.
- Delimiters and spacing: ``$``, ``\\(``, ``\\)``, ``\\[``, ``\\]``, ``\\left``/``\\right``,
  ``\\displaystyle``, ``\\!``; ``\\,``, ``\\;``, ``~``, ``\\quad`` are spaces, and a space is kept
  only between two words or numbers (``( 3, 5 )`` is ``(3,5)``); ``\\dfrac``/``\\tfrac``
  are ``\\frac`` and ``\\frac12`` is ``\\frac{1}{2}``. A trailing period is dropped.
- Separators: a comma (or ``{,}``, ``\\,``) is a thousands separator only between a 1-3 digit
  group and groups of exactly three digits (``1,000``; ``1{,}000``). A plain space never is:
  ``3 4`` stays two numbers, not ``34``.
- Percent and degrees: ``\\%``, ``%``, ``percent``, ``^\\circ``, ``degrees`` after a number are
  dropped on both sides, so ``28\\%`` equals ``28`` either way round (not ``0.28``).
- Units: a word after a number is dropped when it is a ``\\text{}``/``\\mbox{}`` word or a
  plain word of two or more letters (``18 dollars``, ``5\\text{ cm}^2``, ``3 square feet``),
  except magnitudes, constants and math names: ``2i``, ``2e``, ``2x``, ``2\\pi``, ``2 pi``,
  ``3 sin`` keep their letters, and a single letter is a variable, never a unit.
- Magnitudes: ``10 million`` is ``10000000`` (``thousand``, ``million``, ``billion``,
  ``trillion``, ``hundred``, ``dozen``), never ``10``.
- Mixed numbers: ``2 1/2`` and ``2\\frac{1}{2}`` are ``\\frac{5}{2}`` (a proper fraction after a
  whole number); ``2 \\cdot \\frac{1}{2}`` is not a mixed number.
- A whole answer ``x = 5`` (one variable, one ``=``) is ``5``; ``(C)`` is ``C``.

Everything is linear in the answer's length; answers longer than :data:`MAX_ANSWER_CHARS` are
compared as normalised text only.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction

from data.completions import after_mark, boxed_answer

MAX_ANSWER_CHARS = 1_000  # MATH-500's longest gold is ~60 chars; longer is not an answer
MAX_DIGITS = 400  # plain numbers longer than this are compared as text (Decimal is O(n^2))
RELATIVE_TOLERANCE = 1e-6  # between a decimal and a value it may round (1/3, pi); see same_answer

_UNICODE = {
    "\u2212": "-", "\u2013": "-", "\u00d7": "\\times ", "\u00f7": "\\div ", "\u00b7": "\\cdot ",
    "\u22c5": "\\cdot ", "\u03c0": "\\pi ", "\u221e": "\\infty ", "\u00b0": "^\\circ ",
    "\u2264": "\\le ", "\u2265": "\\ge ", "\u2260": "\\ne ", "\u00b1": "\\pm ", "\u2213": "\\mp ",
    "\u00a0": " ", "\u2009": "\\,", "\u202f": "\\,", "\u2032": "'", "\u2217": "*",
}
_SUPERSCRIPTS = dict(zip("⁰¹²³⁴⁵⁶⁷⁸⁹⁻⁺", "0123456789-+"))
_SQRT_RE = re.compile(r"√\s*(\d+|\{)")
_EMPHASIS_RE = re.compile(r"(\*\*|__|\*|`)(.+)\1")
_WRAPPER_RE = re.compile(r"\\(?:textbf|mathbf|boldsymbol|bm|emph|textit|mathit)\{([^{}]*)\}")
_TEXT_RE = re.compile(r"\\(?:text|mbox|mathrm|textrm|textnormal|operatorname)\s*\{([^{}]*)\}")
_DELIMITERS_RE = re.compile(r"\\[()\[\]]|\\\$|\$|\\displaystyle|\\left(?![a-zA-Z])|\\right(?![a-zA-Z])|\\!")
_SPACES_RE = re.compile(r"\\[,;: ]|~|\\q?quad(?![a-zA-Z])|\s+")
_FRAC_RE = re.compile(r"\\[dt]frac(?![a-zA-Z])")
_SHORT_FRAC_RE = re.compile(r"\\frac\s*(\d)\s*(\d)")
_THIN_SEPARATOR_RE = re.compile(r"(?<=\d)(?:\{,\}|,\\!|\\,|\{\\,\})(?=\d{3}(?!\d))")
_PERCENT_RE = re.compile(r"(?<=[\d}.)])\s*(?:\\%|%|\s+percent)$", re.IGNORECASE)
_DEGREE_RE = re.compile(r"(?<=[\d}.)])\s*(?:\^\s*\{?\s*\\circ\s*\}?|\\circ|\s+degrees?)$")
_TEXT_UNIT_RE = re.compile(r"(?<=[\d}.)])\s*\\(?:text|mbox|mathrm|textrm)\s*\{\s*([A-Za-z][A-Za-z .]*?)\s*\}(?:\^\{?\d\}?)?$")
_WORD_UNIT_RE = re.compile(r"(?<=[\d}.)])\s+((?:[A-Za-z]{2,}\.?\s*){1,3})(?:\^\{?\d\}?)?$")
_GLUED_UNIT_RE = re.compile(r"(?<=\d)(?:cm|mm|km|kg|mg|ml|mL|ft|hrs?|mph|sec|min)(?:\^\{?\d\}?)?$")
_MAGNITUDE_RE = re.compile(
    r"^([+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?)\s*(thousand|million|billion|trillion|hundred|dozen)$",
    re.IGNORECASE)
_MAGNITUDES = {"hundred": 100, "dozen": 12, "thousand": 10**3, "million": 10**6, "billion": 10**9,
               "trillion": 10**12}
# Words after a number that are not units: magnitudes, constants, math names.
_NOT_UNITS = frozenset({*_MAGNITUDES, "pi", "sin", "cos", "tan", "cot", "sec", "csc", "log", "ln",
                        "exp", "sqrt", "inf", "infty", "mod", "and", "or", "to", "times", "cdot"})
_MIXED_RE = re.compile(r"^([+-]?)(\d+)\s+(\d+)\s*/\s*(\d+)$|^([+-]?)(\d+)\s*\\frac\{(\d+)\}\{(\d+)\}$")
_ASSIGNMENT_RE = re.compile(r"^[A-Za-z]\s*=(?!.*=)\s*")
_CHOICE_RE = re.compile(r"^\(([A-Za-z])\)$")
_NUMBER_RE = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[+-]?\.\d+")
_FRACTION_RE = re.compile(r"([+-]?)\\frac\{([+-]?\d+)\}\{([+-]?\d+)\}|([+-]?\d+)\s*/\s*([+-]?\d+)")
_LOOSE_SPACE_RE = re.compile(r"(?<!\w) | (?!\w)")
_COMMA_RE = re.compile(r" ?, ?")
_TIGHT_COMMA_RE = re.compile(r",(?! |\d)|(?<=\D),(?=\d)")
# What unit stripping left of "<number> <letters>": a constant or variable times the number.
_NUMBER_TIMES_NAME_RE = re.compile(r"[+-]?[\d.,]+\s*\\?[A-Za-z]+")
_SPLIT_DIGITS_RE = re.compile(r"\d\s+\d")


@dataclass(frozen=True)
class Number:
    """An answer that is a plain number: its exact value, and whether it was written as a
    decimal with a fractional part (the only kind a tolerance may apply to)."""

    value: Fraction
    decimal: bool


def gold_answer(raw: str | None) -> str | None:
    """The answer in a dataset's own gold column: GSM8K's ``… #### 72`` is ``72``, a
    solution's boxes are their answer (``solution`` as TRL and MATH name it), else the text."""
    if raw is None:
        return None
    text = str(raw)
    marked = after_mark(text)
    if marked is not None:
        return marked
    boxed = boxed_answer(text) if "\\boxed" in text or "\\fbox" in text else None
    return boxed if boxed is not None else text.strip() or None


def _unicode(text: str) -> str:
    out = []
    for ch in text:
        if ch in _UNICODE:
            out.append(_UNICODE[ch])
        elif ch in _SUPERSCRIPTS:
            out.append("^{" + _SUPERSCRIPTS[ch] + "}")
        elif "\uff01" <= ch <= "\uff5e":  # full-width ASCII
            out.append(chr(ord(ch) - 0xFEE0))
        elif unicodedata.category(ch) == "No" and unicodedata.name(ch, "").startswith("VULGAR FRACTION"):
            value = Fraction(unicodedata.numeric(ch)).limit_denominator(100)
            out.append(f"\\frac{{{value.numerator}}}{{{value.denominator}}}")
        else:
            out.append(ch)
    text = "".join(out).replace("}^{", "")  # ² ³ -> ^{23}: adjacent superscripts are one exponent
    return _SQRT_RE.sub(lambda m: "\\sqrt" + ("{" if m.group(1) == "{" else "{" + m.group(1) + "}"), text)


def _spacing(text: str) -> str:
    """Spaces kept only where they matter: between two words or numbers, and after a list
    comma. ``3, 500`` (a list) stays apart from ``3,500`` (a thousands separator)."""
    text = _SPACES_RE.sub(" ", text).strip()
    text = _TIGHT_COMMA_RE.sub(", ", _COMMA_RE.sub(lambda m: ", " if " " in m.group(0) else ",", text))
    return ", ".join(_LOOSE_SPACE_RE.sub("", part) for part in text.split(", "))


def _strip_units(text: str) -> str:
    """Drop one trailing percent sign, degree mark or unit word after a number (see module doc)."""
    for pattern in (_PERCENT_RE, _DEGREE_RE, _GLUED_UNIT_RE):
        stripped = pattern.sub("", text)
        if stripped != text:
            return stripped
    for pattern in (_TEXT_UNIT_RE, _WORD_UNIT_RE):
        match = pattern.search(text)
        if match and not set(match.group(1).lower().replace(".", " ").split()) & _NOT_UNITS:
            return text[:match.start()]
    return text


def _magnitude(text: str) -> str:
    match = _MAGNITUDE_RE.match(text)
    if not match:
        return text
    value = Decimal(match.group(1).replace(",", "")) * _MAGNITUDES[match.group(2).lower()]
    return _plain(value)


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


def normalize(answer: str | None) -> str:
    """The answer rewritten by the rules of the module docstring (``""`` for None).

    Idempotent: ``normalize(normalize(a)) == normalize(a)``.
    """
    if answer is None:
        return ""
    text = _unicode(str(answer)[:MAX_ANSWER_CHARS * 2]).strip()
    for _ in range(3):  # wrappers may nest: **$\textbf{73}$**
        before = text
        text = text.strip().rstrip(".").strip()
        wrapped = _EMPHASIS_RE.fullmatch(text)
        text = wrapped.group(2) if wrapped else text
        text = _WRAPPER_RE.sub(r"\1", _DELIMITERS_RE.sub("", text))
        if text == before:
            break
    text = _THIN_SEPARATOR_RE.sub(",", text)
    text = _spacing(_FRAC_RE.sub("\\\\frac", text))
    text = _SHORT_FRAC_RE.sub(r"\\frac{\1}{\2}", text)
    text = text.strip().rstrip(".").strip()
    for _ in range(3):  # "5 \text{cm}^2", "28\%" and "90^\circ" may stack
        stripped = _strip_units(text).strip()
        if stripped == text:
            break
        text = stripped
    if not _TEXT_RE.fullmatch(text):
        text = _TEXT_RE.sub(r"\1", text).strip()
    else:  # the whole answer is text (\text{Evelyn}): keep the words
        text = _TEXT_RE.fullmatch(text).group(1).strip()
    text = _ASSIGNMENT_RE.sub("", text)
    choice = _CHOICE_RE.fullmatch(text)
    text = choice.group(1) if choice else text
    return _mixed(_magnitude(text)).strip()


def _plain(value: Decimal | Fraction) -> str:
    """Canonical text of a number: no exponent, no trailing zeros, ``-0`` as ``0``; a
    non-decimal fraction as ``p/q``."""
    if isinstance(value, Fraction):
        if value.denominator == 1:
            return str(value.numerator)
        if _terminates(value.denominator):
            return _plain(Decimal(value.numerator) / Decimal(value.denominator))
        return f"{value.numerator}/{value.denominator}"
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


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
        try:
            value = Decimal(text.replace(",", ""))
        except InvalidOperation:
            return None
        return Number(Fraction(value), "." in text and value != value.to_integral_value())
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
    return _plain(number.value) if number is not None else text


def same_answer(pred: str | None, gold: str | None) -> bool | None:
    """Whether two answers are equal by these rules alone: True, False, or None (undecided:
    neither is a plain number, so computer algebra has to judge).

    Exact values compare exactly. A tolerance (relative, :data:`RELATIVE_TOLERANCE`) applies only
    between a decimal and a number that is not one (``0.333333`` and ``\\frac{1}{3}``); two
    decimals, two integers or two fractions must be equal. Numbers written with digits split by
    a space (``3 4``) are never a number: they equal only the same text.
    """
    a, b = normalize(pred), normalize(gold)
    if not a or not b:
        return False
    if a == b:
        return True
    x, y = exact_value(a), exact_value(b)
    if x is not None and y is not None:
        if x.value == y.value:
            return True
        if x.decimal == y.decimal:
            return False
        scale = max(abs(x.value), abs(y.value))
        return abs(x.value - y.value) <= RELATIVE_TOLERANCE * scale
    if _SPLIT_DIGITS_RE.search(a) or _SPLIT_DIGITS_RE.search(b):
        return False
    if (x is None) != (y is None):
        other = a if x is None else b
        if _plain_text_only(other) or _NUMBER_TIMES_NAME_RE.fullmatch(other):
            return False  # a number against words ("five") or a multiple of a name (2i, 5 m, 2\pi)
    return None


def _plain_text_only(text: str) -> bool:
    return "\\" not in text and not re.search(r"[\d^_{}()=+\-*/]", text)
