"""Evaluation with the paper's protocol (section 3).

For each problem, k completions are sampled at temperature 0.6, top-p 0.95:
- ``pass@1`` = mean over problems of the share of the k that are correct;
- ``cons@k`` = correctness of the majority-vote answer, equivalent answers voting together
  (ties: first seen);
- ``greedy`` = correctness of the temperature-0 completion;
plus mean completion length (tokens), reflection, mixing, format (R1-Zero tags) and readable
(``<think>`` + ``\\boxed`` summary) rates over the sampled completions. Correctness is the shared ``accuracy`` reward, or ``code``
for rows with unit tests.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
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


def sample(model, tokenizer, rows: list[dict], *, n: int, temperature: float, protocol: Protocol,
           examples: Sequence[tuple[str, str]] = ()):
    """``n`` completions per row (row-major) of its prompt as ``protocol`` renders it (after the
    worked ``examples``, if any: few-shot prompting), each stopped at any EOS id of the model's
    generation config or the tokenizer; returns (texts, completion lengths in tokens)."""
    ids = render_prompts(tokenizer, [r["prompt"] for r in rows], prompt_format=protocol.prompt_format,
                         output=protocol.output, examples=examples)
    stop_ids = stop_token_ids(model, tokenizer)
    flat = [i for i in range(len(rows)) for _ in range(n)]
    texts: list[str] = []
    lengths: list[int] = []
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
        texts += decode_completions(tokenizer, rollout, stop_ids)
        lengths += rollout.completion_mask.sum(dim=1).tolist()
    return texts, lengths


def _vote_answer(row: dict, text: str) -> str | None:
    if row_tests(row):
        return extract_code(text).strip() or None
    return extract_answer(text)


def consensus(rows: list[dict], texts: list[str], correct: list[float], k: int) -> float:
    """cons@k: share of rows whose majority answer is correct. Answers vote by equivalence
    (model/rewards/equivalence.py ``vote``: ``0.5``, ``\\frac{1}{2}`` and ``1/2`` vote together;
    a tie goes to the answer seen first); the winner is as correct as its first sample. Code
    answers vote by identical program text."""
    hits = 0.0
    for i, row in enumerate(rows):
        group = range(i * k, (i + 1) * k)
        answers = [_vote_answer(row, texts[j]) for j in group]
        if row_tests(row):
            votes = Counter(a for a in answers if a is not None)
            winner = answers.index(votes.most_common(1)[0][0]) if votes else None
        else:
            winner, _ = vote(answers)
        if winner is not None:
            hits += correct[group[winner]]
    return hits / max(1, len(rows))


def evaluate(model, tokenizer, rows: list[dict], protocol: Protocol, reflection_phrases: list[str]) -> dict:
    """All metrics of one model on one benchmark."""
    k = protocol.k
    texts, lengths = sample(model, tokenizer, rows, n=k, temperature=protocol.temperature, protocol=protocol)
    expanded = [r for r in rows for _ in range(k)]
    correct = correctness(expanded, texts)
    greedy_texts, _ = sample(model, tokenizer, rows, n=1, temperature=0.0, protocol=protocol)
    greedy = correctness(rows, greedy_texts)
    fmt = get_reward("format")(texts)
    readable = get_reward("readable_format")(texts)
    return {
        "pass@1": sum(correct) / len(correct),
        "cons@k": consensus(rows, texts, correct, k),
        "greedy": sum(greedy) / len(greedy),
        "mean_length": sum(lengths) / len(lengths),
        "reflection_rate": reflection_rate(texts, reflection_phrases),
        "mixing_rate": mixing_rate(texts),
        "format_rate": sum(fmt) / len(fmt),
        "readable_rate": sum(readable) / len(readable),
        "n": len(rows),
        "k": k,
    }
