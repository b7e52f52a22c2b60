"""Prompts, for every stage: one renderer, two prompt formats, two output formats.

A stage asks the model for one of two *output formats* (what its format reward checks):

- ``tags``: R1-Zero's ``<think> … </think> <answer> … </answer>`` (paper Table 1; the
  ``format`` reward): r1_zero, rl_student, the base corpus, cold_start's R1-Zero samples;
- ``readable``: ``<think> … </think>`` then the one summary line ``The answer is \\boxed{…}.``
  and no ``<answer>`` tags (the ``readable_format`` reward): the stages after the cold start.

and renders it in one of two *prompt formats* (the ``prompt_format`` knob):

- ``r1_zero``: the paper's plain-text conversation, ``A conversation between User and
  Assistant. … User: {question}. Assistant:``, with the output format's instruction. It needs
  no chat template, so it works on a base model (what R1-Zero trained) and on the tiny default.
- ``chat``: the model's own chat template (``tokenizer.apply_chat_template`` with the
  generation prompt). The instruction goes in the *user* turn, after the question, with no
  system turn: DeepSeek's usage notes for R1 say to put every instruction in the user prompt.

:func:`render_prompts` is the one function every stage renders prompts with (GRPO, SFT,
sampling, few-shot prompting, evaluation). In the ``r1_zero`` format it also installs
:func:`frame_chat_template` as the tokenizer's chat template, so the checkpoint a stage saves
(``save_pretrained`` writes ``chat_template``) renders exactly the prompt it was trained on;
in the ``chat`` format the model's own template is kept and saved unchanged.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

from data.completions import ANSWER_CLOSE, ANSWER_OPEN, THINK_CLOSE, THINK_OPEN

log = logging.getLogger(__name__)

PROMPT_FORMATS = ("r1_zero", "chat")
OUTPUT_FORMATS = ("tags", "readable")

_HEAD = ("A conversation between User and Assistant. The user asks a question, and the Assistant "
         "solves it. ")
# What the assistant must write, per output format. "tags" is the paper's Table 1, verbatim.
INSTRUCTIONS = {
    "tags": (
        "The assistant first thinks about the reasoning process in the mind and then provides the "
        "user with the answer. The reasoning process and answer are enclosed within <think> </think> "
        "and <answer> </answer> tags, respectively, i.e., <think> reasoning process here </think> "
        "<answer> answer here </answer>."
    ),
    "readable": (
        "The assistant first thinks about the reasoning process in the mind and then provides the "
        "user with a one-line summary of the answer. The reasoning process is enclosed within "
        "<think> </think> tags and the summary follows it, i.e., <think> reasoning process here "
        "</think> The answer is \\boxed{answer here}."
    ),
}
# DeepSeek-R1 paper, Table 1. ``{prompt}`` is the user's question.
R1_ZERO_TEMPLATE = _HEAD + INSTRUCTIONS["tags"] + " User: {prompt}. Assistant:"

THINK_TAGS = (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)


def _check(prompt_format: str, output: str) -> None:
    if prompt_format not in PROMPT_FORMATS:
        raise ValueError(f"prompt_format {prompt_format!r}: choose from {PROMPT_FORMATS}")
    if output not in OUTPUT_FORMATS:
        raise ValueError(f"output format {output!r}: choose from {OUTPUT_FORMATS}")


def r1_zero_prompt(question: str, output: str = "tags") -> str:
    """The full plain-text (``r1_zero`` format) prompt for one question; ``output="tags"`` is
    the paper's Table 1 exactly."""
    _check("r1_zero", output)
    return f"{_HEAD}{INSTRUCTIONS[output]} User: {question.strip()}. Assistant:"


def r1_zero_completion(reasoning: str, answer: str) -> str:
    """A completion in the R1-Zero format: ``<think> … </think> <answer> … </answer>``."""
    return f"<think> {reasoning.strip()} </think> <answer> {answer.strip()} </answer>"


def few_shot_prompt(question: str, examples: Sequence[tuple[str, str]], output: str = "tags") -> str:
    """The plain-text prompt with worked ``(question, completion)`` examples as earlier turns of
    the conversation: few-shot prompting for long-CoT candidates (paper 2.3.1)."""
    head = r1_zero_prompt("", output).rpartition("User: ")[0]
    turns = "".join(f"User: {q.strip()}. Assistant: {c.strip()} " for q, c in examples)
    return f"{head}{turns}User: {question.strip()}. Assistant:"


def frame_chat_template(output: str = "tags") -> str:
    """A Jinja chat template that renders the ``r1_zero``-format prompt of ``output``: user
    turns as ``User: … . Assistant:``, assistant turns as `` `` + content + EOS. Saved with
    a checkpoint trained in that format, so ``apply_chat_template`` reproduces its prompts."""
    _check("r1_zero", output)
    return (
        "{{- '" + _HEAD + INSTRUCTIONS[output].replace("\\", "\\\\") + "' -}}"
        "{%- for message in messages -%}"
        "{%- if message['role'] == 'user' -%}"
        "{{ ' User: ' + message['content'] | trim + '. Assistant:' }}"
        "{%- elif message['role'] == 'assistant' -%}"
        "{{ ' ' + message['content'] | trim + eos_token }}"
        "{%- endif -%}"
        "{%- endfor -%}"
    )


def chat_messages(question: str, output: str, examples: Sequence[tuple[str, str]] = ()) -> list[dict]:
    """The ``chat``-format conversation: the worked examples as earlier user/assistant turns,
    then the question with the output format's instruction in the user turn (no system turn)."""
    def user(q: str) -> dict:
        return {"role": "user", "content": f"{q.strip()}\n\n{INSTRUCTIONS[output]}"}

    turns = [t for q, c in examples for t in (user(q), {"role": "assistant", "content": c.strip()})]
    return [*turns, user(question)]


def render_prompts(tokenizer: Any, questions: Sequence[str], *, prompt_format: str = "r1_zero",
                   output: str = "tags", examples: Sequence[tuple[str, str]] = ()) -> list[list[int]]:
    """Token ids of the prompt of each question: the one prompt renderer of every stage.

    Args:
        tokenizer: a ``transformers`` tokenizer (duck-typed: ``__call__`` and, for ``chat``,
            ``apply_chat_template`` with a ``chat_template`` set).
        questions: bare questions (a row's ``prompt``).
        prompt_format: ``r1_zero`` (plain text; installs :func:`frame_chat_template` on the
            tokenizer so that a saved checkpoint records it) or ``chat`` (the model's template).
        output: ``tags`` or ``readable``, the completion format the prompt asks for.
        examples: worked ``(question, completion)`` pairs shown first (few-shot prompting).

    Returns: one list of ids per question (special tokens as the format puts them: the
    tokenizer's own for ``r1_zero``, the template's for ``chat``).

    Raises:
        ValueError: for an unknown format, or ``chat`` with a tokenizer that has no chat
            template (use ``prompt_format=r1_zero`` for a base model without one).
    """
    _check(prompt_format, output)
    if prompt_format == "r1_zero":
        tokenizer.chat_template = frame_chat_template(output)
        texts = [few_shot_prompt(q, examples, output) if examples else r1_zero_prompt(q, output) for q in questions]
        ids = tokenizer(texts)["input_ids"]
    else:
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError(f"prompt_format chat: tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has no "
                             "chat template; use prompt_format=r1_zero (plain text) for a base model")
        texts = [tokenizer.apply_chat_template(chat_messages(q, output, examples), tokenize=False,
                                               add_generation_prompt=True) for q in questions]
        ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    if texts:
        log.info("%d prompts (%s format, %s output); the first as the model sees it: %r",
                 len(texts), prompt_format, output, tokenizer.decode(ids[0], skip_special_tokens=False))
    return ids


def prompt_style(args: Any) -> dict[str, str]:
    """``{"prompt_format", "output"}`` of a stage config for :func:`render_prompts`: its
    ``prompt_format`` knob and its class attribute ``OUTPUT`` (``r1_zero`` and ``tags`` when
    the config has neither, e.g. a bare trainer config in a test)."""
    return {"prompt_format": getattr(args, "prompt_format", "r1_zero"), "output": getattr(args, "OUTPUT", "tags")}
