"""Evaluation with the paper's protocol (section 3).

For each problem, k completions are sampled at temperature 0.6, top-p 0.95:
- ``pass@1`` = mean over problems of the share of the k that are correct;
- ``cons@k`` = correctness of the majority-vote answer, equivalent answers voting together
  (ties: first seen);
- ``greedy`` = correctness of the temperature-0 completion;
plus mean completion length (tokens), reflection, mixing, format (R1-Zero tags) and readable
rates over the sampled completions. Correctness is the shared ``accuracy`` reward, or ``code``
for rows with unit tests.

Test-time scaling (paper 2.2.1, "thinking longer"; Snell et al. 2024 for budgets and votes) comes
from the same k samples: ``cons_at`` is cons@j for j = 1, 2, 4, ... up to k (each the mean over
the k // j disjoint groups of j samples), and ``budget_pass@1`` is pass@1 under a thinking budget
of b tokens with budget forcing (Muennighoff et al. 2025, "s1: Simple test-time scaling",
section 3.1): a sample whose thinking is closed within its first b tokens keeps its answer; one
still thinking at b is cut there, its thinking closed and the answer asked for
(:data:`FORCE_ANSWER`), and the model writes the answer (:func:`force_answers`). Cutting
alone could only lose answers, so accuracy would rise with the budget by construction; forced,
a model that reaches the answer early scores the same at every budget. Every metric is also
kept per problem (:func:`score_problems`), so that the report can compare two models problem by
problem (model/stats.py).

``readable_rate`` does not depend on the prompt: a sample is readable when it is well formed in
the output format its prompt asked for (R1-Zero's tags, or the readable summary) and its
reasoning keeps to one language (paper 2.3: "poor readability and language mixing").
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from data.completions import ANSWER_OPEN, THINK_CLOSE
from data.filters import SUMMARY_HEAD
from data.formatting import render_prompts
from model.grpo import mixing_rate, reflection_rate
from model.rewards import extract_answer, get_reward
from model.rewards.code import extract_code, row_tests
from model.rewards.equivalence import vote
from model.rollout import decode_completions, generate, left_pad, stop_token_ids
from model.trainer import seeded_sampling

log = logging.getLogger(__name__)


@dataclass
class Protocol:
    """How completions are sampled for evaluation."""

    k: int = 4
    temperature: float = 0.6
    top_p: float = 0.95
    max_new_tokens: int = 96
    batch_size: int = 256
    seed: int = 0
    prompt_format: str = "r1_zero"  # data/formatting.py: r1_zero (plain text) | chat (the model's template)
    output: str = "tags"  # the completion format the prompt asks for: tags | readable
    budgets: tuple[int, ...] = ()  # thinking budgets (tokens) scored by cutting the samples; () = none

    def __post_init__(self):
        bad = [b for b in self.budgets if not 1 <= int(b) <= self.max_new_tokens]
        if bad:
            raise ValueError(f"thinking budgets {bad} must lie in 1..max_new_tokens ({self.max_new_tokens})")


def correctness(rows: list[dict], texts: list[str]) -> list[float]:
    """1.0/0.0 per (row, completion) pair; code rows use unit tests, others the accuracy reward.

    Every column but ``id`` reaches the rewards: ``prompt`` included, as a HumanEval prompt
    holds the imports and helpers its tests need (model/rewards/code.py).
    """
    columns = {k: [r.get(k) for r in rows] for k in {k for r in rows for k in r} - {"id"}}
    if any(row_tests(r) for r in rows):
        scores = get_reward("code")(texts, **columns)
        fallback = get_reward("accuracy")(texts, **columns)
        scores = [s if s is not None else f for s, f in zip(scores, fallback)]
    else:
        scores = get_reward("accuracy")(texts, **columns)
    return [0.0 if s is None else float(s) for s in scores]


def rollouts(model, tokenizer, rows: list[dict], *, n: int, temperature: float, protocol: Protocol,
             examples: Sequence[tuple[str, str]] = ()) -> Iterator[tuple[object, list[int]]]:
    """``(Rollout, stop ids)`` per generation batch of ``n`` completions per row (row-major) of
    its prompt as ``protocol`` renders it (after the worked ``examples``, if any: few-shot
    prompting), each stopped at any EOS id of the model's generation config or the tokenizer."""
    ids = render_prompts(tokenizer, [r["prompt"] for r in rows], prompt_format=protocol.prompt_format,
                         output=protocol.output, examples=examples)
    stop_ids = stop_token_ids(model, tokenizer)
    flat = [i for i in range(len(rows)) for _ in range(n)]
    device = next(model.parameters()).device
    for start in range(0, len(flat), protocol.batch_size):
        chunk = flat[start:start + protocol.batch_size]
        prompt_ids, prompt_mask = left_pad([ids[i] for i in chunk], tokenizer.pad_token_id)
        # Seeded per batch on CPU and CUDA alike (model.trainer.seeded_sampling keeps the GPU's fast path).
        with seeded_sampling(device, (protocol.seed, start // protocol.batch_size)) as generator:
            rollout = generate(model, prompt_ids.to(device), prompt_mask.to(device),
                               max_new_tokens=protocol.max_new_tokens, eos_token_id=stop_ids,
                               pad_token_id=tokenizer.pad_token_id, temperature=temperature,
                               top_p=protocol.top_p if temperature > 0 else 1.0, generator=generator)
        yield rollout, stop_ids


def sample(model, tokenizer, rows: list[dict], *, n: int, temperature: float, protocol: Protocol,
           examples: Sequence[tuple[str, str]] = ()):
    """``n`` completions per row (see :func:`rollouts`); returns (texts, completion lengths in
    tokens)."""
    texts: list[str] = []
    lengths: list[int] = []
    for rollout, stop_ids in rollouts(model, tokenizer, rows, n=n, temperature=temperature, protocol=protocol,
                                      examples=examples):
        texts += decode_completions(tokenizer, rollout, stop_ids)
        lengths += rollout.completion_mask.sum(dim=1).tolist()
    return texts, lengths


def cut(rollout, budget: int):
    """``rollout`` with every completion cut after its first ``budget`` tokens (mask 0 beyond):
    the completions a run with ``max_new_tokens = budget`` samples from the same stream."""
    mask = rollout.completion_mask.clone()
    mask[:, budget:] = 0
    return dataclasses.replace(rollout, completion_mask=mask)


# Budget forcing: what closes the thinking and asks for the answer, per output format
# (data/formatting.py; the readable summary is data/filters.py SUMMARY up to its answer).
FORCE_ANSWER = {"tags": f" {THINK_CLOSE} {ANSWER_OPEN}", "readable": f" {THINK_CLOSE} {SUMMARY_HEAD}"}
ANSWER_TOKENS = 16  # tokens a forced answer may take (the benchmarks' answers take at most ~8)


def force_answers(model, tokenizer, rollout, stop_ids: list[int], budget: int, protocol: Protocol,
                  key: tuple = ()) -> list[str]:
    """The texts of ``rollout``'s completions under a thinking budget of ``budget`` tokens,
    by budget forcing (module doc): a completion whose first ``budget`` tokens close the
    thinking (contain ``</think>``) or end it is kept whole; every other one is its first
    ``budget`` tokens, then :data:`FORCE_ANSWER` of ``protocol.output``, then up to
    :data:`ANSWER_TOKENS` tokens the model samples after that at the protocol's temperature
    (seeded by ``(protocol.seed, "force", budget, *key)``). One text per row, in order."""
    full = decode_completions(tokenizer, rollout, stop_ids)
    cut_texts = decode_completions(tokenizer, cut(rollout, budget), stop_ids)
    lengths = rollout.completion_mask.sum(dim=1).tolist()
    forced = [i for i, (text, n) in enumerate(zip(cut_texts, lengths))
              if THINK_CLOSE not in text and not (bool(rollout.finished[i]) and n <= budget)]
    if not forced:
        return full
    suffix = FORCE_ANSWER[protocol.output]
    suffix_ids = tokenizer(suffix, add_special_tokens=False)["input_ids"]
    rows = [rollout.prompt_ids[i][rollout.prompt_mask[i].bool()].tolist()
            + rollout.completion_ids[i][:budget][rollout.completion_mask[i][:budget].bool()].tolist() + suffix_ids
            for i in forced]
    device = next(model.parameters()).device
    answers: list[str] = []
    for start in range(0, len(rows), protocol.batch_size):
        prompt_ids, prompt_mask = left_pad(rows[start:start + protocol.batch_size], tokenizer.pad_token_id)
        with seeded_sampling(device, (protocol.seed, "force", budget, *key, start)) as generator:
            answer = generate(model, prompt_ids.to(device), prompt_mask.to(device), max_new_tokens=ANSWER_TOKENS,
                              eos_token_id=stop_ids, pad_token_id=tokenizer.pad_token_id,
                              temperature=protocol.temperature,
                              top_p=protocol.top_p if protocol.temperature > 0 else 1.0, generator=generator)
        answers += decode_completions(tokenizer, answer, stop_ids)
    texts = list(full)
    for i, answer in zip(forced, answers):
        texts[i] = cut_texts[i] + suffix + answer
    return texts


def _vote_answer(row: dict, text: str) -> str | None:
    if row_tests(row):
        return extract_code(text).strip() or None
    return extract_answer(text)


def consensus_hits(rows: list[dict], texts: list[str], correct: list[float], k: int) -> list[float]:
    """Per row, whether its majority answer over its ``k`` samples (``texts`` row-major) is
    correct. Answers vote by equivalence (model/rewards/equivalence.py ``vote``: ``0.5``,
    ``\\frac{1}{2}`` and ``1/2`` vote together; a tie goes to the answer seen first); the winner
    is as correct as its first sample. Code answers vote by identical program text."""
    hits = []
    for i, row in enumerate(rows):
        group = range(i * k, (i + 1) * k)
        answers = [_vote_answer(row, texts[j]) for j in group]
        if row_tests(row):
            votes = Counter(a for a in answers if a is not None)
            winner = answers.index(votes.most_common(1)[0][0]) if votes else None
        else:
            winner, _ = vote(answers)
        hits.append(0.0 if winner is None else correct[group[winner]])
    return hits


def consensus(rows: list[dict], texts: list[str], correct: list[float], k: int) -> float:
    """cons@k: share of rows whose majority answer is correct (:func:`consensus_hits`)."""
    return sum(consensus_hits(rows, texts, correct, k)) / max(1, len(rows))


def vote_sizes(k: int) -> list[int]:
    """The vote sizes j of the cons@j sweep: 1, 2, 4, ... up to ``k``, and ``k`` itself."""
    sizes = [1 << i for i in range(k.bit_length()) if 1 << i <= k]
    return sizes if sizes[-1] == k else [*sizes, k]


def consensus_at(rows: list[dict], texts: list[str], correct: list[float], k: int, j: int) -> list[float]:
    """Per row, cons@j from its ``k`` samples: the mean of :func:`consensus_hits` over the
    ``k // j`` disjoint groups of ``j`` consecutive samples (a lower-variance estimate than one
    group)."""
    groups = k // j
    total = [0.0] * len(rows)
    for g in range(groups):
        pick = [i * k + g * j + t for i in range(len(rows)) for t in range(j)]
        hits = consensus_hits(rows, [texts[p] for p in pick], [correct[p] for p in pick], j)
        total = [a + h for a, h in zip(total, hits)]
    return [t / groups for t in total]


COMPARABLE = ("k", "temperature", "top_p", "max_new_tokens", "seed")  # Protocol fields scores depend on
NOT_METRICS = ("id", "key", "protocol")  # what score_problems writes beside the metrics


def problem_key(row: dict) -> str:
    """A short hash (16 hex digits) of everything a problem is but its id: two evaluations pair
    their scores of a problem only when it is the same problem (not merely the same id)."""
    content = json.dumps({k: v for k, v in row.items() if k != "id"}, sort_keys=True, default=str)
    return hashlib.sha256(content.encode()).hexdigest()[:16]


def _per_row(values: list[float], k: int) -> list[float]:
    return [sum(values[i:i + k]) / k for i in range(0, len(values), k)]


def score_problems(model, tokenizer, rows: list[dict], protocol: Protocol,
                   reflection_phrases: list[str]) -> dict:
    """Every metric of one model on one benchmark, per problem: ``{"id": [n], "key": [n] (a
    hash of the problem's content, :func:`problem_key`), "protocol": the sampling knobs that
    make two models' scores comparable (:data:`COMPARABLE`), "pass@1": [n],
    "cons@k": [n], "greedy": [n], "mean_length": [n] (tokens), "reflection_rate", "mixing_rate",
    "format_rate", "readable_rate": [n] (shares of the k samples), "cons_at": {j: [n]},
    "budget_pass@1": {b: [n]}}`` (j of :func:`vote_sizes`, b of ``protocol.budgets``; keys as
    strings, as JSON keeps them). Rows are sampled ``protocol.k`` times at its temperature and
    once greedily."""
    k = protocol.k
    texts: list[str] = []
    lengths: list[int] = []
    forced: dict[int, list[str]] = {int(b): [] for b in protocol.budgets}
    for batch, (rollout, stop_ids) in enumerate(rollouts(model, tokenizer, rows, n=k,
                                                         temperature=protocol.temperature, protocol=protocol)):
        texts += decode_completions(tokenizer, rollout, stop_ids)
        lengths += rollout.completion_mask.sum(dim=1).tolist()
        for b in forced:
            forced[b] += force_answers(model, tokenizer, rollout, stop_ids, b, protocol, key=(batch,))
    expanded = [r for r in rows for _ in range(k)]
    correct = correctness(expanded, texts)
    greedy_texts, _ = sample(model, tokenizer, rows, n=1, temperature=0.0, protocol=protocol)
    flags = {"reflection_rate": [reflection_rate([t], reflection_phrases) for t in texts],
             "mixing_rate": [mixing_rate([t]) for t in texts],
             "format_rate": [float(s) for s in get_reward("format")(texts)]}
    # Readable whatever the prompt: well formed in the format it asked for, in one language.
    asked = get_reward("format" if protocol.output == "tags" else "readable_format")(texts)
    flags["readable_rate"] = [float(bool(f) and not m) for f, m in zip(asked, flags["mixing_rate"])]
    return {
        "id": [str(r.get("id", i)) for i, r in enumerate(rows)],
        "key": [problem_key(r) for r in rows],
        "protocol": {name: getattr(protocol, name) for name in COMPARABLE},
        "pass@1": _per_row(correct, k),
        "cons@k": consensus_hits(rows, texts, correct, k),
        "greedy": correctness(rows, greedy_texts),
        "mean_length": _per_row([float(n) for n in lengths], k),
        **{key: _per_row(values, k) for key, values in flags.items()},
        "cons_at": {str(j): consensus_at(rows, texts, correct, k, j) for j in vote_sizes(k)},
        "budget_pass@1": {str(b): _per_row(correctness(expanded, forced[b]), k) for b in forced},
    }


def summarize(problems: dict, k: int) -> dict:
    """The benchmark's metrics from :func:`score_problems`' output: each per-problem list
    averaged (nested sweeps kept nested), with ``n`` problems and ``k`` samples."""
    def mean(values: list[float]) -> float:
        return sum(values) / max(1, len(values))

    out: dict = {}
    for key, value in problems.items():
        if key in NOT_METRICS:
            continue
        out[key] = {sub: mean(v) for sub, v in value.items()} if isinstance(value, dict) else mean(value)
    return {**out, "n": len(problems["id"]), "k": k}


def evaluate(model, tokenizer, rows: list[dict], protocol: Protocol, reflection_phrases: list[str]) -> dict:
    """All metrics of one model on one benchmark, averaged over problems (:func:`summarize`)."""
    return summarize(score_problems(model, tokenizer, rows, protocol, reflection_phrases), protocol.k)
