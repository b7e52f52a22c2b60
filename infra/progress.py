"""A loop's progress: a live tqdm bar on a terminal, a few plain log lines everywhere else.

Inside a pipeline run a stage's stderr is a pipe that :func:`infra.proc.stream` copies line by
line into the Prefect log, where every ``\\r`` redraw of a tqdm bar becomes a line of its own
(171 KB of bars in five minutes of one run, issue 12). When stderr is not a terminal,
:func:`progress` therefore logs one INFO line each time the loop passes another ``every`` of
its total (5 %: at most 20 lines, the last step always among them), carrying the metrics the
loop set with ``set_postfix``::

    12:00:07 INFO infra.progress: train: 45% 450/1000 [01:30<01:50, 5.00 it/s] loss=0.312, reward=0.41

On a terminal the same call is an ordinary tqdm bar. Every progress display of the project
goes through here (``grep -rn tqdm`` finds only this module); :func:`quiet_library_bars` turns
off, off a terminal, the bars Hugging Face libraries draw themselves.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from typing import Any, Iterable, Iterator, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

EVERY = 0.05  # share of the total between two log lines
INTERVAL_S = 60.0  # seconds between two log lines of a loop whose total is unknown


def progress(iterable: Iterable[T], *, total: int | None = None, desc: str = "", initial: int = 0,
             disable: bool = False, every: float = EVERY, **bar_kwargs: Any) -> Iterable[T]:
    """``iterable`` wrapped like ``tqdm(iterable, total=, desc=, initial=, disable=)``.

    A tqdm bar (``bar_kwargs``, e.g. ``mininterval``, go to it) when stderr is a terminal,
    else a :class:`LineProgress` that logs every ``every`` of ``total``. Both have
    ``set_postfix(**metrics)``, ``update(n)`` and ``close()``. ``total`` defaults to
    ``len(iterable)`` where there is one; ``initial`` is the count already done (a resumed loop).
    """
    if _isatty(sys.stderr):
        from tqdm.auto import tqdm

        return tqdm(iterable, total=total, desc=desc, initial=initial, disable=disable, **bar_kwargs)
    return LineProgress(iterable, total=total, desc=desc, initial=initial, disable=disable, every=every)


def quiet_library_bars() -> None:
    """When stderr is not a terminal, switch off the bars that transformers ("Loading weights",
    "Writing model shards") and huggingface_hub (downloads) draw, whose redraws would be log
    lines too. An explicit ``HF_HUB_DISABLE_PROGRESS_BARS`` in the environment wins; the
    setting is inherited by child processes."""
    if _isatty(sys.stderr) or "HF_HUB_DISABLE_PROGRESS_BARS" in os.environ:
        return
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"  # read by huggingface_hub when imported
    if "huggingface_hub" in sys.modules:  # imported already: the variable came too late
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    if "transformers" in sys.modules:
        from transformers.utils.logging import disable_progress_bar

        disable_progress_bar()


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no stream, or a closed one
        return False


class LineProgress:
    """Progress as INFO log lines: one each time the count crosses a multiple of
    ``ceil(every * total)`` and one when it reaches ``total``; with no total, one every
    ``interval`` seconds. :meth:`close` (also at the end of iteration, or when the loop
    breaks) logs the count reached if the last line did not show it.

    The line of a step is written after the loop body ran, so it carries that step's
    ``set_postfix`` metrics.
    """

    def __init__(self, iterable: Iterable[T], *, total: int | None = None, desc: str = "",
                 initial: int = 0, disable: bool = False, every: float = EVERY,
                 interval: float = INTERVAL_S):
        if total is None and hasattr(iterable, "__len__"):
            total = initial + len(iterable)  # type: ignore[arg-type]
        if not 0 < every <= 1:
            raise ValueError(f"every is a share of the total in (0, 1], got {every!r}")
        self.iterable, self.total, self.desc, self.n, self.disable = iterable, total, desc, initial, disable
        self.postfix: dict[str, Any] = {}
        self.stride = max(1, math.ceil(total * every)) if total else 0
        self.interval = interval
        self._start_n = self._shown_n = initial
        self._start_t = self._shown_t = time.monotonic()

    def __iter__(self) -> Iterator[T]:
        try:
            for item in self.iterable:
                yield item
                self.update()
        finally:
            self.close()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        """Count ``n`` more steps; log a line if that crossed the next stride or the total."""
        self.n += n
        if self.disable:
            return
        if self.stride:
            due = self.n // self.stride > self._shown_n // self.stride or self.n >= self.total
        else:
            due = time.monotonic() - self._shown_t >= self.interval
        if due:
            self._show()

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **kwargs: Any) -> None:
        """Metrics for the end of the next line (tqdm's signature; ``refresh`` is ignored)."""
        self.postfix = {**(ordered_dict or {}), **kwargs}

    def close(self) -> None:
        """Log the count reached unless the last line showed it; later calls do nothing."""
        if not self.disable and self.n != self._shown_n:
            self._show()
        self.disable = True

    def _show(self) -> None:
        self._shown_n, self._shown_t = self.n, time.monotonic()
        log.info("%s", self.line())

    def line(self) -> str:
        """``desc: 45% 450/1000 [elapsed<remaining, rate] key=value, ...`` (no total: ``desc: 450 it [elapsed, rate]``)."""
        elapsed = time.monotonic() - self._start_t
        rate = (self.n - self._start_n) / elapsed if elapsed > 0 else 0.0
        speed = f"{rate:.2f} it/s" if rate >= 1 or not rate else f"{1 / rate:.2f} s/it"
        if self.total:
            left = _clock((self.total - self.n) / rate) if rate else "?"
            text = f"{100 * self.n / self.total:3.0f}% {self.n}/{self.total} [{_clock(elapsed)}<{left}, {speed}]"
        else:
            text = f"{self.n} it [{_clock(elapsed)}, {speed}]"
        metrics = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.postfix.items())
        return f"{self.desc}: " * bool(self.desc) + text + f" {metrics}" * bool(metrics)


def _clock(seconds: float) -> str:
    """``MM:SS``, or ``H:MM:SS`` from an hour on (tqdm's style)."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"
