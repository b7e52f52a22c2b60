"""Rewards from the trained reward models of stage ``reward_model`` (paper section 2.3.4).

- ``helpfulness``: the helpfulness model (Bradley-Terry) scores only the final summary, the
  text after the last ``</think>``, so the reasoning can change freely; a completion with no
  summary (no ``</think>``, or nothing after it) scores 0.0, the floor.
- ``harmlessness``: the harmlessness model (pointwise) scores the whole response, reasoning
  included, since harm can sit in either part.

Both apply only to rows whose ``kind`` column is ``"general"`` and return None elsewhere:
reasoning rows get the rule rewards (``accuracy``, ...), which in turn give None on general
rows (they carry no gold answer). Raw reward-model outputs are logits on an arbitrary scale,
so they are squashed with a sigmoid into (0, 1): weights are then comparable with those of
the 0/1 rule rewards, and for the pointwise model the value is the probability of "safe".

Both are registered under their fixed names when :mod:`model.rewards` is imported, so a
config that names them validates (``GRPOArgs.__post_init__`` looks every reward up) before
any model exists. The model is chosen at run time with :func:`use_reward_models` (the
all-scenario RL stage passes its config's paths) and loaded on the first call that meets a
general row; calling one that was never given a path on a general row raises.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from data.completions import completion_text, parse_completion

log = logging.getLogger(__name__)

GENERAL = "general"


def summary_of(completion: Any) -> str:
    """The final summary of a completion (data/completions.py): the stripped text after its
    last ``</think>``; ``""`` without think tags or with unclosed reasoning."""
    parsed = parse_completion(completion)
    return parsed.summary if parsed.tagged else ""


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


class LearnedReward:
    """A reward ``fn(completions, prompt, kind, **columns)`` backed by a saved reward model.

    ``part`` is ``"summary"`` (score :func:`summary_of` the completion) or ``"response"``
    (score the whole completion). The model at ``path`` is loaded once, on first use.
    """

    def __init__(self, name: str, part: str, *, batch_size: int = 64, max_length: int = 256):
        if part not in ("summary", "response"):
            raise ValueError(f"part {part!r}: choose summary or response")
        self.name, self.part = name, part
        self.batch_size, self.max_length = batch_size, max_length
        self.path: str | None = None
        self._loaded = None  # (model, tokenizer) once loaded

    def configure(self, path: str | Path | None) -> None:
        """Use the reward model saved at ``path`` from now on (None = none)."""
        path = None if path in (None, "") else str(path)
        if path != self.path:
            self.path, self._loaded = path, None

    def _model(self):
        if self.path is None:
            raise RuntimeError(f"reward {self.name!r} has no reward model: call "
                               f"model.rewards.learned.use_reward_models({self.name}=PATH) first")
        if self._loaded is None:
            from model import factory
            from model import reward_model as rm

            model, tokenizer = rm.load(self.path)
            device = factory.inference_device()  # the policy's GPU when there is one
            self._loaded = model.to(device), tokenizer
            log.info("reward %s: loaded %s on %s", self.name, self.path, device)
        return self._loaded

    def __call__(self, completions: Sequence[Any], prompt: Sequence[str] | None = None,
                 kind: Sequence[str | None] | None = None, **kwargs: Any) -> list[float | None]:
        """A score in (0, 1) per general row (0.0 for an empty summary), None for other rows."""
        scores: list[float | None] = [None] * len(completions)
        todo = [i for i in range(len(completions)) if kind is not None and kind[i] == GENERAL]
        if not todo:
            return scores
        if prompt is None:
            raise ValueError(f"reward {self.name!r} needs the prompt column")
        texts = {i: summary_of(completions[i]) if self.part == "summary"
                 else completion_text(completions[i]).strip() for i in todo}
        for i in [i for i in todo if not texts[i]]:
            scores[i] = 0.0  # nothing to judge: the least helpful (or harmless) answer
        todo = [i for i in todo if texts[i]]
        if todo:
            from model import reward_model as rm

            model, tokenizer = self._model()
            raw = rm.score(model, tokenizer, [prompt[i] for i in todo], [texts[i] for i in todo],
                           batch_size=self.batch_size, max_length=self.max_length)
            for i, value in zip(todo, raw):
                scores[i] = _sigmoid(value)
        return scores


LEARNED: dict[str, LearnedReward] = {
    "helpfulness": LearnedReward("helpfulness", "summary"),
    "harmlessness": LearnedReward("harmlessness", "response"),
}


def use_reward_models(**paths: str | Path | None) -> None:
    """Point learned rewards at saved reward models, e.g. ``use_reward_models(helpfulness=
    "artifacts/reward_model/helpful", harmlessness="artifacts/reward_model/harmless")``;
    a None or empty path unsets one."""
    unknown = set(paths) - set(LEARNED)
    if unknown:
        raise KeyError(f"unknown learned rewards {sorted(unknown)}; known: {sorted(LEARNED)}")
    for name, path in paths.items():
        LEARNED[name].configure(path)
