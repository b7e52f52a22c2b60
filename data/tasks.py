"""One name space for every prompt set a stage can train or evaluate on.

- ``arithmetic`` / ``countdown`` with an optional split suffix (``arithmetic_test``,
  ``countdown_hard``; default ``train``): the seeded synthetic tasks;
- ``synthetic``: the train splits of both families, mixed;
- anything else goes to :func:`data.loaders.load_dataset` (benchmark names such as
  ``gsm8k``/``math500``/``aime24``/``humaneval``, local JSONL/Parquet files, hub ids).
"""

from __future__ import annotations

import logging
import re

from data.loaders import load_dataset
from data.synthetic import FAMILIES, SPLITS, make_rows

log = logging.getLogger(__name__)

_SYNTHETIC = re.compile(rf"^({'|'.join(FAMILIES)})(?:_({'|'.join(SPLITS)}))?$")


def load_task(spec: str, *, limit: int, seed: int = 0, mix: dict[str, float] | None = None) -> list[dict]:
    """Rows in the project's schema for ``spec`` (see module doc), at most ``limit`` of them."""
    match = _SYNTHETIC.match(spec)
    if match:
        family, split = match.group(1), match.group(2) or "train"
        rows = make_rows(family, split, limit, seed)
        if len(rows) < limit:
            log.warning("%s: only %d distinct problems exist (asked for %d)", spec, len(rows), limit)
        return rows
    if spec == "synthetic":
        mix = mix or {family: 1.0 for family in FAMILIES}
        total = sum(mix.values())
        rows = []
        for family, share in mix.items():
            rows += make_rows(family, "train", round(limit * share / total), seed)
        return rows
    return load_dataset(spec, limit=limit)
