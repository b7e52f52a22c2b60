"""Prompt templates shared by every stage (the paper's Table 1 for R1-Zero)."""

from __future__ import annotations

# DeepSeek-R1 paper, Table 1. ``{prompt}`` is the user's question.
R1_ZERO_TEMPLATE = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant "
    "solves it. The assistant first thinks about the reasoning process in the mind and then "
    "provides the user with the answer. The reasoning process and answer are enclosed within "
    "<think> </think> and <answer> </answer> tags, respectively, i.e., <think> reasoning "
    "process here </think> <answer> answer here </answer>. User: {prompt}. Assistant:"
)

THINK_TAGS = ("<think>", "</think>", "<answer>", "</answer>")


def r1_zero_prompt(question: str) -> str:
    """The full R1-Zero prompt text for one question."""
    return R1_ZERO_TEMPLATE.format(prompt=question.strip())


def r1_zero_completion(reasoning: str, answer: str) -> str:
    """A completion in the R1-Zero format: ``<think> … </think> <answer> … </answer>``."""
    return f"<think> {reasoning.strip()} </think> <answer> {answer.strip()} </answer>"


def few_shot_prompt(question: str, examples: list[tuple[str, str]]) -> str:
    """The R1-Zero prompt with worked ``(question, completion)`` examples as earlier turns of
    the conversation: few-shot prompting for long-CoT candidates (paper 2.3.1)."""
    head, _, _ = R1_ZERO_TEMPLATE.partition("User: {prompt}")
    turns = "".join(f"User: {q.strip()}. Assistant: {c.strip()} " for q, c in examples)
    return f"{head}{turns}User: {question.strip()}. Assistant:"
