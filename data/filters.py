"""Row filters of cold-start curation (R1 paper 2.3.1) and rejection sampling (2.3.3).

Pure functions over rows of :mod:`data.schema` that also carry a ``completion``: the reasoning
and the summary are what :mod:`data.completions` parses (the whole completion is the reasoning
when there are no think tags, as in :func:`data.quality.scripts_of`). Nothing here mutates its
input; rows that are rewritten are copied.

Three shapes:

- rewriting: :func:`to_readable` turns an R1-Zero completion ``<think> R </think> <answer> A
  </answer>`` into the readable cold-start format ``<think> R </think> The answer is
  \\boxed{A}.``; :func:`readable_parts` reads ``(R, A)`` back. The answer stays in ``\\boxed{}``
  so that the project's ``accuracy`` reward grades readable completions as it grades tagged ones.
- predicates on one row: :func:`single_language`, :func:`length_window`, :func:`no_repetition`
  (apply one to a list with :func:`keep_if`).
- filters on a list, returning ``(kept_rows, removed_count)``: :func:`readable`,
  :func:`dedupe_exact`, :func:`dedupe_ngram`, :func:`decontaminate`, :func:`correct`.

:func:`curate` applies a configured list of named steps (:data:`STEPS`) in order and returns the
kept rows with ``{step: rows_removed}``, the counts a data stage logs.

Where this departs from the paper: languages are told apart by Unicode script (English and
French are one "language" here, English and Russian are two), and near-duplicates are found by
MinHash LSH over word n-grams with every candidate pair verified by its exact Jaccard overlap,
so nothing below the threshold is ever removed, and a pair above it is missed with probability
under 1% at the threshold itself (far less above it).
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from typing import Any, Callable, Iterable, Sequence

from data.completions import (ANSWER_CLOSE, ANSWER_OPEN, THINK_CLOSE, THINK_OPEN, closing_brace, last_block,
                              parse_completion)
from data.language import LANGUAGE_SCRIPTS, scripts_in, scripts_of_label, target_scripts
from data.quality import MAX_COMPLETION_CHARS, scripts_of
from data.schema import PROMPT

logger = logging.getLogger(__name__)

COMPLETION = "completion"
Rows = list[dict]
Judge = Callable[..., list]  # fn(completions, **columns) -> list[float | None], as model.rewards

DEFAULT_NGRAM = 8  # words per n-gram for repetition, near-duplicates and contamination
DEFAULT_MIN_CHARS = 20  # shorter reasoning than a sentence teaches no chain of thought
DEFAULT_MAX_CHARS = MAX_COMPLETION_CHARS  # the corpus suite's bound on a whole completion
DEFAULT_MAX_REPEATS = 3  # an n-gram seen more often than this is a loop, not a re-check
DEFAULT_DEDUPE_THRESHOLD = 0.8  # Jaccard of n-gram sets at or above which rows are duplicates
MINHASH_PERMUTATIONS = 128
LSH_RECALL = 0.99  # least chance that a pair exactly at the threshold becomes a candidate

SUMMARY = "The answer is \\boxed{{{answer}}}."
SUMMARY_HEAD = SUMMARY.split("{{{")[0] + "{"  # the summary up to its answer: "The answer is \boxed{"

_TOKEN = re.compile(r"\w+|[^\w\s]")  # words and single symbols: "3 + 4" differs from "3 - 4"
_WORD = re.compile(r"\w+")  # words only, for contamination: punctuation edits must not hide it


# ----------------------------------------------------------------------------- completions


def reasoning_of(completion: Any) -> str:
    """The stripped reasoning of a completion (data/completions.py: before the last
    ``</think>``), else the whole stripped text. A non-string completion has none (``""``)."""
    if not isinstance(completion, str):
        return ""
    return parse_completion(completion).reasoning_or_text.strip()


def _render(reasoning: str, answer: str) -> str:
    return f"<think> {reasoning} </think> {SUMMARY.format(answer=answer)}"


def _one_think_block(completion: str) -> tuple[str, str] | None:
    """(reasoning, rest after ``</think>``) of a completion with exactly one ``<think>`` …
    ``</think>`` block; None otherwise. Linear: tags are counted and found with str methods."""
    if completion.count(THINK_OPEN) != 1 or completion.count(THINK_CLOSE) != 1:
        return None
    start, end = completion.find(THINK_OPEN), completion.find(THINK_CLOSE)
    if end < start:
        return None
    return completion[start + len(THINK_OPEN):end].strip(), completion[end + len(THINK_CLOSE):]


def readable_parts(completion: Any) -> tuple[str, str] | None:
    """``(reasoning, answer)`` of a completion in the readable format, else None.

    The inverse of :func:`to_readable`: one think block, then exactly the summary line
    (surrounding whitespace aside); both parts non-empty.
    """
    block = _one_think_block(completion) if isinstance(completion, str) else None
    if block is None:
        return None
    summary = block[1].strip()
    end = closing_brace(summary, len(SUMMARY_HEAD) - 1) if summary.startswith(SUMMARY_HEAD) else None
    answer = summary[len(SUMMARY_HEAD):end].strip() if end is not None and summary[end + 1:] == "." else ""
    return (block[0], answer) if block[0] and answer else None


def to_readable(completion: Any) -> str | None:
    """Rewrite an R1-Zero completion into the readable cold-start format.

    ``<think> R </think> <answer> A </answer>`` becomes ``<think> R </think> The answer is
    \\boxed{A}.`` (:data:`SUMMARY`), using the one think block and the last answer block after
    it. A completion already in the readable format comes back unchanged (up to whitespace), so
    the rewrite is idempotent.

    Returns:
        The readable completion, or None when there is not exactly one closed, non-empty think
        block, or there is no non-empty answer (an answer outside ``<answer>``
        tags does not count).
    """
    block = _one_think_block(completion) if isinstance(completion, str) else None
    if block is None or not block[0]:
        return None
    answer = last_block(block[1], ANSWER_OPEN, ANSWER_CLOSE)
    if answer is not None:
        return _render(block[0], answer.strip()) if answer.strip() else None
    parts = readable_parts(completion)
    return _render(*parts) if parts else None


def readable(rows: Iterable[dict]) -> tuple[Rows, int]:
    """Rewrite every row's completion with :func:`to_readable`; drop rows where it gives None.

    Kept rows are shallow copies with the new ``completion``; the input rows are untouched.
    """
    kept, removed = [], 0
    for row in rows:
        text = to_readable(row.get(COMPLETION))
        if text is None:
            removed += 1
        else:
            kept.append({**row, COMPLETION: text})
    return kept, removed


# ----------------------------------------------------------------------------- predicates


def language_scripts(language: str) -> frozenset[str]:
    """Scripts allowed for ``language``: a code (``en``, ``zh-CN``, ``pt_BR``) or a script name
    (``Latin``, ``cyrillic``, or a label as :func:`data.quality.scripts_of` writes it: ``LATIN``,
    ``CJK``), as :mod:`data.language` names scripts (``Latin``, ``Han``, ...).

    Raises:
        ValueError: for a code or script this module does not know, listing the known codes.
    """
    try:
        return target_scripts(language)
    except KeyError:
        pass
    scripts = scripts_of_label(language)
    if scripts:
        return scripts
    raise ValueError(f"unknown language {language!r}; use a code from {sorted(LANGUAGE_SCRIPTS)} "
                     "or a script name such as 'LATIN'")


def single_language(row: dict, language: str | None = None) -> bool:
    """True when the row's reasoning is written in one script (by :func:`data.quality.scripts_of`,
    where Han and kana are one).

    With ``language``, every script of the reasoning must be one of that language's
    (:func:`language_scripts`; Korean allows Hangul and Han). Reasoning without words (only
    digits and symbols) passes: it mixes nothing.
    """
    if language is None:
        return len(scripts_of(row.get(COMPLETION))) <= 1
    return scripts_in(reasoning_of(row.get(COMPLETION))) <= language_scripts(language)


def length_window(row: dict, min_chars: int = DEFAULT_MIN_CHARS,
                  max_chars: int | None = DEFAULT_MAX_CHARS) -> bool:
    """True when ``min_chars <= len(reasoning) <= max_chars`` (``max_chars=None``: no upper bound).

    The reasoning is :func:`reasoning_of` the completion, stripped.
    """
    size = len(reasoning_of(row.get(COMPLETION)))
    return size >= min_chars and (max_chars is None or size <= max_chars)


def _tokens(text: Any, pattern: re.Pattern = _TOKEN) -> list[str]:
    return pattern.findall(text.lower()) if isinstance(text, str) else []


def _longest_line_run(text: str) -> int:
    """Length of the longest run of identical consecutive non-blank lines."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    longest = run = 0
    for i, line in enumerate(lines):
        run = run + 1 if i and line == lines[i - 1] else 1
        longest = max(longest, run)
    return longest


def no_repetition(row: dict, n: int = DEFAULT_NGRAM,
                  max_repeats: int = DEFAULT_MAX_REPEATS) -> bool:
    """False for a repetition loop anywhere in the completion.

    A loop is an n-gram of tokens (words and single symbols, lower-cased) occurring more than
    ``max_repeats`` times, overlaps included, or the same non-blank line more than
    ``max_repeats`` times in a row (catching loops of lines shorter than ``n`` tokens).
    """
    text = row.get(COMPLETION)
    if not isinstance(text, str):
        return True
    if _longest_line_run(text) > max_repeats:
        return False
    tokens = _tokens(text)
    grams = Counter(zip(*(tokens[k:] for k in range(n))))
    return not grams or max(grams.values()) <= max_repeats


def keep_if(rows: Iterable[dict], predicate: Callable[..., bool],
            **kwargs: Any) -> tuple[Rows, int]:
    """Rows for which ``predicate(row, **kwargs)`` holds, and how many it removed."""
    kept, removed = [], 0
    for row in rows:
        if predicate(row, **kwargs):
            kept.append(row)
        else:
            removed += 1
    return kept, removed


# ----------------------------------------------------------------------------- duplicates


def _normalised(text: Any) -> str:
    return " ".join(text.lower().split()) if isinstance(text, str) else ""


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def dedupe_exact(rows: Iterable[dict],
                 fields: Sequence[str] = (PROMPT, COMPLETION)) -> tuple[Rows, int]:
    """Drop rows whose ``fields`` equal an earlier row's after lower-casing and collapsing
    whitespace; the first occurrence is kept."""
    seen: set[tuple[str, ...]] = set()
    kept, removed = [], 0
    for row in rows:
        key = tuple(_normalised(row.get(f)) for f in fields)
        if key in seen:
            removed += 1
        else:
            seen.add(key)
            kept.append(row)
    return kept, removed


def _shingles(text: str, n: int, vocab: dict[str, int]) -> set[int]:
    """Hashes of the token n-grams of ``text``; one shingle of all tokens when fewer than n.

    Tokens become ids from ``vocab`` (grown in input order) and n-grams are hashed as int
    tuples, whose hash, unlike a str hash, is the same in every process: runs are reproducible.
    """
    ids = [vocab.setdefault(t, len(vocab)) for t in _tokens(text)]
    if len(ids) < n:
        return {hash(tuple(ids))} if ids else set()
    return {hash(gram) for gram in zip(*(ids[k:] for k in range(n)))}


def _lsh_shape(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows per band): the most rows per band (fewest candidates) such that a pair with
    Jaccard ``threshold`` shares a band with probability at least :data:`LSH_RECALL`."""
    best = (num_perm, 1)
    for r in range(1, num_perm + 1):
        b = num_perm // r
        if 1 - (1 - threshold**r) ** b < LSH_RECALL:
            break
        best = (b, r)
    return best


class _MinHasher:
    """MinHash signatures: hash function i is the splitmix64 finaliser of ``x XOR seed_i``.

    A strong mixer matters: a linear ``a*x + b`` that never wraps is monotone in ``x``, so every
    "permutation" would pick the same minimum and the signature would carry one sample.
    """

    def __init__(self, num_perm: int, seed: int) -> None:
        import numpy as np

        self.np = np
        rng = np.random.default_rng(seed)
        self.seeds = rng.integers(0, np.iinfo(np.uint64).max, size=num_perm, dtype=np.uint64,
                                  endpoint=True)

    def signature(self, shingles: set[int]):
        """uint64 array (num_perm,): per hash function, the least hash over the shingles."""
        np = self.np
        x = np.fromiter(shingles, dtype=np.int64, count=len(shingles)).view(np.uint64)
        z = x[:, None] ^ self.seeds  # (shingles, num_perm); uint64 products wrap mod 2**64
        for shift, factor in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB)):
            z ^= z >> np.uint64(shift)
            z *= np.uint64(factor)
        z ^= z >> np.uint64(31)
        return z.min(axis=0)


def _jaccard(a: set, b: set) -> float:
    common = len(a & b)
    return common / (len(a) + len(b) - common)


def dedupe_ngram(rows: Iterable[dict], n: int = DEFAULT_NGRAM,
                 threshold: float = DEFAULT_DEDUPE_THRESHOLD, *,
                 fields: Sequence[str] = (PROMPT, COMPLETION),
                 num_perm: int = MINHASH_PERMUTATIONS, seed: int = 0) -> tuple[Rows, int]:
    """Drop rows whose token n-gram set has Jaccard overlap ``>= threshold`` with an earlier
    kept row (the ``fields`` joined by newlines; first occurrence kept).

    Candidates come from MinHash LSH (bands sized by :func:`_lsh_shape`), and each candidate
    pair is checked by its exact Jaccard, so no row below the threshold is removed. Time is
    about linear in the rows (~20k rows in seconds). Rows with no tokens are always kept.

    Raises:
        ValueError: for ``threshold`` outside (0, 1] or ``n < 1``.
    """
    if not 0 < threshold <= 1 or n < 1:
        raise ValueError(
            f"dedupe_ngram needs 0 < threshold <= 1 and n >= 1, got {threshold=}, {n=}")
    hasher, vocab = _MinHasher(num_perm, seed), {}
    bands, width = _lsh_shape(threshold, num_perm)
    buckets: dict[tuple[int, bytes], list[int]] = {}
    kept_sets: list[set[int]] = []
    kept, removed = [], 0
    for row in rows:
        shingles = _shingles("\n".join(_text(row.get(f)) for f in fields), n, vocab)
        if not shingles:
            kept.append(row)
            continue
        signature = hasher.signature(shingles)
        keys = [(i, signature[i * width:(i + 1) * width].tobytes()) for i in range(bands)]
        candidates = {j for key in keys for j in buckets.get(key, ())}
        if any(_jaccard(shingles, kept_sets[j]) >= threshold for j in candidates):
            removed += 1
            continue
        for key in keys:
            buckets.setdefault(key, []).append(len(kept_sets))
        kept_sets.append(shingles)
        kept.append(row)
    return kept, removed


# ----------------------------------------------------------------------------- contamination


class EvalIndex:
    """The word n-grams of evaluation prompts, built once and asked per training prompt.

    Words are ``\\w+`` runs, lower-cased, so punctuation and spacing edits do not hide a copied
    span. A prompt is contaminated when it shares any word n-gram with an evaluation prompt, or
    when its normalised words equal an evaluation prompt's (the only test that can apply to
    prompts shorter than ``n`` words, on either side).
    """

    def __init__(self, eval_prompts: Iterable[str], n: int = DEFAULT_NGRAM) -> None:
        if n < 1:
            raise ValueError(f"contamination n-grams need n >= 1, got {n}")
        self.n = n
        self.grams: set[tuple[str, ...]] = set()
        self.exact: set[tuple[str, ...]] = set()
        for prompt in eval_prompts:
            words = _tokens(prompt, _WORD)
            self.exact.add(tuple(words))
            self.grams.update(zip(*(words[k:] for k in range(n))))
        self.exact.discard(())

    def __len__(self) -> int:
        return len(self.exact)

    def contaminated(self, prompt: Any) -> bool:
        """True when ``prompt`` shares a word n-gram with, or equals, an evaluation prompt."""
        words = _tokens(prompt, _WORD)
        if tuple(words) in self.exact:
            return True
        return any(gram in self.grams for gram in zip(*(words[k:] for k in range(self.n))))


def decontaminate(rows: Iterable[dict], eval_prompts: Iterable[str] | EvalIndex,
                  n: int = DEFAULT_NGRAM) -> tuple[Rows, int]:
    """Drop rows whose ``prompt`` overlaps an evaluation prompt (see :class:`EvalIndex`).

    ``eval_prompts`` is the prompts of every evaluation set, or an :class:`EvalIndex` already
    built from them (then ``n`` is the index's own).
    """
    index = eval_prompts if isinstance(eval_prompts, EvalIndex) else EvalIndex(eval_prompts, n)
    kept, dropped = [], []
    for row in rows:
        (dropped if index.contaminated(row.get(PROMPT)) else kept).append(row)
    if dropped:
        logger.debug("contaminated rows (first 5): %s", [r.get("id") for r in dropped[:5]])
    return kept, len(dropped)


# ----------------------------------------------------------------------------- correctness


def _columns(rows: Rows) -> dict[str, list]:
    """Every column but the completion, aligned with ``rows`` (None where a row lacks it)."""
    names = dict.fromkeys(k for row in rows for k in row if k != COMPLETION)
    return {name: [row.get(name) for row in rows] for name in names}


def correct(rows: Iterable[dict], judge: Judge) -> tuple[Rows, int]:
    """Keep rows that ``judge`` scores exactly 1.0.

    ``judge(completions, **columns) -> list[float | None]`` has the shape of the project's
    rewards (``model.rewards``, passed in by the caller: data/ does not import model/); every
    other column of the rows is passed as a keyword list. A None score (the judge does not
    apply, e.g. ``accuracy`` on a code row) cannot vouch for the row, so it is removed too.

    Raises:
        ValueError: when the judge returns a different number of scores than rows.
    """
    rows = list(rows)
    if not rows:
        return [], 0
    scores = list(judge([row.get(COMPLETION) for row in rows], **_columns(rows)))
    if len(scores) != len(rows):
        raise ValueError(f"judge returned {len(scores)} scores for {len(rows)} rows")
    kept = [row for row, score in zip(rows, scores) if score is not None and score == 1.0]
    unjudged = sum(score is None for score in scores)
    if unjudged:
        logger.info("correct: %d rows had no score from the judge and were removed", unjudged)
    return kept, len(rows) - len(kept)


# ----------------------------------------------------------------------------- pipeline

STEPS = ("readable", "correct", "single_language", "length_window", "no_repetition",
         "dedupe_exact", "dedupe_ngram", "decontaminate")


def _check_steps(steps: Sequence[str], judge: Judge | None,
                 eval_prompts: Sequence[str] | EvalIndex, language: str | None) -> None:
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        raise ValueError(f"unknown curation steps {unknown}; choose from {list(STEPS)}")
    repeated = sorted({s for s in steps if steps.count(s) > 1})
    if repeated:
        raise ValueError(f"curation steps {repeated} appear more than once; list each once")
    if "correct" in steps and judge is None:
        raise ValueError("step 'correct' needs a judge (a reward function such as accuracy)")
    if "decontaminate" in steps and not eval_prompts:
        raise ValueError("step 'decontaminate' needs eval_prompts (the prompts of every eval set)")
    if language is not None:
        language_scripts(language)


def curate(rows: Iterable[dict], *, steps: Sequence[str], judge: Judge | None = None,
           eval_prompts: Iterable[str] | EvalIndex = (), language: str | None = None,
           min_chars: int = DEFAULT_MIN_CHARS, max_chars: int | None = DEFAULT_MAX_CHARS,
           ngram: int = DEFAULT_NGRAM, max_repeats: int = DEFAULT_MAX_REPEATS,
           dedupe_threshold: float = DEFAULT_DEDUPE_THRESHOLD) -> tuple[Rows, dict[str, int]]:
    """Apply the named ``steps`` (from :data:`STEPS`) in order.

    ``ngram`` is the n of ``no_repetition``, ``dedupe_ngram`` and ``decontaminate`` (unless
    ``eval_prompts`` is an :class:`EvalIndex`, which keeps its own); the other keywords go to
    the step of the same name. Every argument is checked before any step runs.

    Returns:
        The kept rows and ``{step: rows_removed}`` in step order (zeros included).

    Raises:
        ValueError: for an unknown or repeated step, ``correct`` without ``judge``,
            ``decontaminate`` without ``eval_prompts``, or an unknown ``language``.
    """
    steps = list(steps)
    if not isinstance(eval_prompts, EvalIndex):
        eval_prompts = list(eval_prompts)
    _check_steps(steps, judge, eval_prompts, language)
    run: dict[str, Callable[[Rows], tuple[Rows, int]]] = {
        "readable": readable,
        "correct": lambda rs: correct(rs, judge),
        "single_language": lambda rs: keep_if(rs, single_language, language=language),
        "length_window": lambda rs: keep_if(rs, length_window, min_chars=min_chars,
                                            max_chars=max_chars),
        "no_repetition": lambda rs: keep_if(rs, no_repetition, n=ngram, max_repeats=max_repeats),
        "dedupe_exact": dedupe_exact,
        "dedupe_ngram": lambda rs: dedupe_ngram(rs, ngram, dedupe_threshold),
        "decontaminate": lambda rs: decontaminate(rs, eval_prompts, ngram),
    }
    rows, counts = list(rows), {}
    for step in steps:
        before = len(rows)
        rows, counts[step] = run[step](rows)
        logger.info("curate %s: removed %d of %d rows", step, counts[step], before)
    logger.info("curate: kept %d rows after %s", len(rows), counts)
    return rows, counts
