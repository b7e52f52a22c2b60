"""Rewards by name, shared by GRPO training, rejection sampling and evaluation.

Every reward is `fn(completions, **columns) -> list[float | None]`: `completions` is a list of
model outputs (strings, or chat-message lists as TRL passes them), each column is a list
aligned with it (`answer`, `source`, `numbers`, `tests`, `entry_point`, `language`, ...),
unknown columns are ignored, and None means "does not apply to this row" (a code row for
`accuracy`, a math row for `code`). Callers average over the non-None entries.

Built-in: `accuracy`, `format`, `readable_format`, `code`, `language_consistency`, and the learned
`helpfulness` and `harmlessness` (model/rewards/learned.py: reward models, None except on rows of
`kind` "general", pointed at their saved models with `use_reward_models`). Add more with `@register`.
"""

from __future__ import annotations

from collections.abc import Callable

from model.rewards.accuracy import accuracy
from data.answers import answer_key
from data.completions import extract_answer
from model.rewards.code import code
from model.rewards.format import format_reward, readable_format_reward
from model.rewards.language import language_consistency, script_of_word, scripts_in
from model.rewards.learned import LEARNED, use_reward_models

RewardFn = Callable[..., list[float | None]]

REWARDS: dict[str, RewardFn] = {
    "accuracy": accuracy,
    "format": format_reward,
    "readable_format": readable_format_reward,
    "code": code,
    "language_consistency": language_consistency,
    **LEARNED,
}


def register(name: str) -> Callable[[RewardFn], RewardFn]:
    """Decorator adding a reward to `REWARDS` under `name`; a name already taken raises."""

    def decorator(fn: RewardFn) -> RewardFn:
        if name in REWARDS and REWARDS[name] is not fn:
            taken = REWARDS[name].__qualname__
            raise ValueError(f"reward {name!r} is already registered ({taken})")
        REWARDS[name] = fn
        return fn

    return decorator


def get_reward(name: str) -> RewardFn:
    """Return the reward registered as `name`; an unknown name raises KeyError listing them."""
    try:
        return REWARDS[name]
    except KeyError:
        available = ", ".join(sorted(REWARDS))
        raise KeyError(f"unknown reward {name!r}; available: {available}") from None


__all__ = [
    "REWARDS",
    "RewardFn",
    "accuracy",
    "answer_key",
    "code",
    "extract_answer",
    "format_reward",
    "get_reward",
    "language_consistency",
    "register",
    "script_of_word",
    "scripts_in",
    "use_reward_models",
]
