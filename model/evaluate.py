"""Evaluation with the paper's protocol (section 3).

For each problem, k completions are sampled at temperature 0.6, top-p 0.95:
- ``pass@1`` = mean over problems of the share of the k that are correct;
- ``cons@k`` = correctness of the majority-vote answer, equivalent answers voting together
  (ties: first seen);
- ``greedy`` = correctness of the temperature-0 completion;
plus mean completion length (tokens), reflection, mixing, format (R1-Zero tags) and readable
(``<think>`` + ``\\boxed`` summary) rates over the sampled completions. Correctness is the shared ``accuracy`` reward, or ``code``
for rows with unit tests.

Test-time scaling (paper 2.2, "thinking longer"; Snell et al. 2024 for budgets and votes) comes
from the same k samples: ``cons_at`` is cons@j for j = 1, 2, 4, ... up to k (each the mean over
the k // j disjoint groups of j samples), and ``budget_pass@1`` is pass@1 when the thinking
budget is b tokens: each sample cut at its first b tokens, which is what sampling with
``max_new_tokens = b`` draws from the same seeded stream (every decode step draws the same
random numbers whatever the limit). Every metric is also kept per problem
(:func:`score_problems`), so that the report can compare two models problem by problem
(model/stats.py).
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

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


def _per_row(values: list[float], k: int) -> list[float]:
    return [sum(values[i:i + k]) / k for i in range(0, len(values), k)]


def score_problems(model, tokenizer, rows: list[dict], protocol: Protocol,
                   reflection_phrases: list[str]) -> dict:
    """Every metric of one model on one benchmark, per problem: ``{"id": [n], "pass@1": [n],
    "cons@k": [n], "greedy": [n], "mean_length": [n] (tokens), "reflection_rate", "mixing_rate",
    "format_rate", "readable_rate": [n] (shares of the k samples), "cons_at": {j: [n]},
    "budget_pass@1": {b: [n]}}`` (j of :func:`vote_sizes`, b of ``protocol.budgets``; keys as
    strings, as JSON keeps them). Rows are sampled ``protocol.k`` times at its temperature and
    once greedily."""
    k = protocol.k
    texts: list[str] = []
    lengths: list[int] = []
    cut_texts: dict[int, list[str]] = {int(b): [] for b in protocol.budgets}
    for rollout, stop_ids in rollouts(model, tokenizer, rows, n=k, temperature=protocol.temperature,
                                      protocol=protocol):
        texts += decode_completions(tokenizer, rollout, stop_ids)
        lengths += rollout.completion_mask.sum(dim=1).tolist()
        for b in cut_texts:
            cut_texts[b] += decode_completions(tokenizer, cut(rollout, b), stop_ids)
    expanded = [r for r in rows for _ in range(k)]
    correct = correctness(expanded, texts)
    greedy_texts, _ = sample(model, tokenizer, rows, n=1, temperature=0.0, protocol=protocol)
    flags = {"reflection_rate": [reflection_rate([t], reflection_phrases) for t in texts],
             "mixing_rate": [mixing_rate([t]) for t in texts],
             "format_rate": [float(s) for s in get_reward("format")(texts)],
             "readable_rate": [float(s) for s in get_reward("readable_format")(texts)]}
    return {
        "id": [str(r.get("id", i)) for i, r in enumerate(rows)],
        "pass@1": _per_row(correct, k),
        "cons@k": consensus_hits(rows, texts, correct, k),
        "greedy": correctness(rows, greedy_texts),
        "mean_length": _per_row([float(n) for n in lengths], k),
        **{key: _per_row(values, k) for key, values in flags.items()},
        "cons_at": {str(j): consensus_at(rows, texts, correct, k, j) for j in vote_sizes(k)},
        "budget_pass@1": {str(b): _per_row(correctness(expanded, cut_texts[b]), k) for b in cut_texts},
    }


def summarize(problems: dict, k: int) -> dict:
    """The benchmark's metrics from :func:`score_problems`' output: each per-problem list
    averaged (nested sweeps kept nested), with ``n`` problems and ``k`` samples."""
    def mean(values: list[float]) -> float:
        return sum(values) / max(1, len(values))

    out: dict = {}
    for key, value in problems.items():
        if key == "id":
            continue
        out[key] = {sub: mean(v) for sub, v in value.items()} if isinstance(value, dict) else mean(value)
    return {**out, "n": len(problems["id"]), "k": k}


def evaluate(model, tokenizer, rows: list[dict], protocol: Protocol, reflection_phrases: list[str]) -> dict:
    """All metrics of one model on one benchmark, averaged over problems (:func:`summarize`)."""
    return summarize(score_problems(model, tokenizer, rows, protocol, reflection_phrases), protocol.k)
