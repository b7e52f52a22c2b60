"""How sure the report is: bootstrap intervals for a difference and a three-way verdict.

A finding compares two numbers, each a mean over samples: problems of a benchmark (two models
scored on the same problems, so the comparison is *paired*: the per-problem differences are
resampled, which removes the variance that problems' difficulty shares) or steps of a
training curve (two windows of one run, resampled apart). The interval is the percentile
bootstrap of the difference of means (Efron & Tibshirani 1993, ch. 13; for paired
comparisons of evaluation scores, Koehn 2004 "Statistical significance tests for machine
translation evaluation" and Dror et al. 2018). Its verdict on a claim "left above right"
(or below):

- ``holds``: the whole interval lies on the claimed side of 0;
- ``does not hold``: the whole interval lies on the other side, or at 0 (no difference at
  all is no lift);
- ``inconclusive``: the interval straddles 0, so these samples cannot tell.

Resampling is seeded, so a report is reproducible to the digit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

HOLDS, FAILS, INCONCLUSIVE, NOT_MEASURED = "holds", "does not hold", "inconclusive", "not measured"
RESAMPLES = 10_000
LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """A difference of means ``left - right`` and its bootstrap interval at ``level``."""

    left: float
    right: float
    diff: float
    low: float
    high: float
    n: int  # pairs (paired) or the smaller sample (unpaired)
    level: float = LEVEL


def _percentiles(draws: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(draws, [tail, 100.0 - tail])
    return float(low), float(high)


def paired_interval(left: Sequence[float], right: Sequence[float], *, resamples: int = RESAMPLES,
                    level: float = LEVEL, seed: int = 0) -> Interval:
    """Interval of ``mean(left) - mean(right)`` for two scores of the same ``n`` items
    (``left[i]`` and ``right[i]`` of one problem), resampling items with replacement.

    Raises ValueError for lists of different lengths or empty ones.
    """
    a, b = np.asarray(left, dtype=float), np.asarray(right, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"paired samples need two non-empty lists of one length, got {a.shape} and {b.shape}")
    d = a - b
    rng = np.random.default_rng(seed)
    draws = d[rng.integers(0, d.size, size=(resamples, d.size))].mean(axis=1)
    low, high = _percentiles(draws, level)
    return Interval(float(a.mean()), float(b.mean()), float(d.mean()), low, high, int(d.size), level)


def unpaired_interval(left: Sequence[float], right: Sequence[float], *, resamples: int = RESAMPLES,
                      level: float = LEVEL, seed: int = 0) -> Interval:
    """Interval of ``mean(left) - mean(right)`` for two independent samples (e.g. the first
    and last tenth of a training curve's steps), each resampled with replacement on its own.

    Raises ValueError when a sample is empty.
    """
    a, b = np.asarray(left, dtype=float), np.asarray(right, dtype=float)
    if a.size == 0 or b.size == 0:
        raise ValueError(f"unpaired samples must not be empty, got {a.size} and {b.size}")
    rng = np.random.default_rng(seed)
    draws = (a[rng.integers(0, a.size, size=(resamples, a.size))].mean(axis=1)
             - b[rng.integers(0, b.size, size=(resamples, b.size))].mean(axis=1))
    low, high = _percentiles(draws, level)
    return Interval(float(a.mean()), float(b.mean()), float(a.mean() - b.mean()), low, high,
                    int(min(a.size, b.size)), level)


def verdict(interval: Interval, higher: bool = True) -> str:
    """The claim "left above right" (``higher``) or "left below right" judged by the interval:
    :data:`HOLDS`, :data:`FAILS` or :data:`INCONCLUSIVE` (see the module doc)."""
    low, high = (interval.low, interval.high) if higher else (-interval.high, -interval.low)
    if low > 0:
        return HOLDS
    if high <= 0:
        return FAILS
    return INCONCLUSIVE
