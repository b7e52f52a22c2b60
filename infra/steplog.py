"""Per-step training metrics as JSON lines, safe to resume."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)

Sink = Callable[[int, dict], None]


class StepLog:
    """Appends ``{"step": n, ...metrics}`` lines to ``path`` and forwards them to extra sinks
    (the MLflow logger, for one). ``resume(step)`` drops lines past a checkpoint so a
    restarted run does not log a step twice."""

    def __init__(self, path: str | Path, sinks: list[Sink] | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.sinks = list(sinks or [])

    def resume(self, step: int) -> None:
        """Keep only the lines of steps <= ``step`` (0 = start afresh)."""
        truncate_jsonl(self.path, step)

    def __call__(self, step: int, metrics: dict) -> None:
        row = {"step": step, **{k: float(v) for k, v in metrics.items()}}
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        for sink in self.sinks:
            sink(step, metrics)

    def read(self) -> list[dict]:
        """All logged rows (empty if nothing logged yet)."""
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]


def truncate_jsonl(path: str | Path, step: int) -> None:
    """Drop the lines of a ``{"step": n, ...}`` JSONL file whose step is past ``step``."""
    path = Path(path)
    if not path.exists():
        return
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows if r["step"] <= step))
