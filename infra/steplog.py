"""Per-step training metrics as JSON lines, safe to resume."""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Callable, Iterator

log = logging.getLogger(__name__)

Sink = Callable[[int, dict], None]
# Sinks every StepLog of this process forwards to, e.g. the stage's MLflow run (set by
# infra.stage.stage_main, so trainers need not know about tracking).
_PROCESS_SINKS: list[Sink] = []


@contextlib.contextmanager
def forward_to(sink: Sink) -> Iterator[None]:
    """Within the block, every StepLog also sends its rows to ``sink``."""
    _PROCESS_SINKS.append(sink)
    try:
        yield
    finally:
        _PROCESS_SINKS.remove(sink)


class StepLog:
    """Appends ``{"step": n, ...metrics}`` lines to ``path`` and forwards them to extra sinks
    and to those registered with :func:`forward_to` (the MLflow logger, for one). ``resume(step)`` drops lines past a checkpoint so a
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
        for sink in self.sinks + _PROCESS_SINKS:
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
        path.touch()
        return
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows if r["step"] <= step))
