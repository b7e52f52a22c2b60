"""How sure the report is: bootstrap intervals for a difference and a three-way verdict.

A finding compares two numbers, each a mean over samples:

- problems of a benchmark: two models scored on the same problems, so the comparison is
  *paired* (the per-problem differences are resampled, which removes the variance that
  problems' difficulty shares). The interval is the percentile bootstrap of the mean
  difference (Efron & Tibshirani 1993, ch. 13; for evaluation scores, Koehn 2004
  "Statistical significance tests for machine translation evaluation" and Dror et al. 2018),
  :func:`paired_interval`; the percentile bootstrap wants a few dozen items
  (:data:`MIN_PAIRS`);
- steps of training curves: two windows of a few steps each, each step's value a mean over
  its rollouts. So few samples are too few to bootstrap (the percentile interval of 5 values
  is far narrower than its coverage claims), so these get Welch's t interval
  (:func:`welch_interval`, Welch 1947), whose t quantile with Welch-Satterthwaite degrees of
  freedom widens it as the windows shrink; it needs :data:`MIN_STEPS` steps a side.

Its verdict on a claim "left above right" (or below):

- ``holds``: the whole interval lies on the claimed side of 0;
- ``does not hold``: the whole interval lies on the other side, or at 0 (no difference at
  all is no lift);
- ``inconclusive``: the interval straddles 0, so these samples cannot tell.

Resampling is seeded, so a report is reproducible to the digit. A sample holding NaN or an
infinity is refused (ValueError): it is a broken metric, not a number to average.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

HOLDS, FAILS, INCONCLUSIVE, NOT_MEASURED = "holds", "does not hold", "inconclusive", "not measured"
RESAMPLES = 10_000
LEVEL = 0.95
MIN_PAIRS = 30  # problems a paired bootstrap needs (below, the report says "not measured")
MIN_STEPS = 5  # steps per window a Welch interval needs


@dataclass(frozen=True)
class Interval:
    """A difference of means ``left - right`` and its bootstrap interval at ``level``."""

    left: float
    right: float
    diff: float
    low: float
    high: float
    n: int  # pairs (paired) or the smaller sample (two samples)
    level: float = LEVEL


def _percentiles(draws: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(draws, [tail, 100.0 - tail])
    return float(low), float(high)


def _finite(name: str, values: Sequence[float]) -> np.ndarray:
    a = np.asarray(values, dtype=float)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} holds non-finite values ({int((~np.isfinite(a)).sum())} of {a.size})")
    return a


def paired_interval(left: Sequence[float], right: Sequence[float], *, resamples: int = RESAMPLES,
                    level: float = LEVEL, seed: int = 0) -> Interval:
    """Interval of ``mean(left) - mean(right)`` for two scores of the same ``n`` items
    (``left[i]`` and ``right[i]`` of one problem), resampling items with replacement.

    Raises ValueError for lists of different lengths, empty ones or non-finite values.
    """
    a, b = _finite("left", left), _finite("right", right)
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

    Raises ValueError when a sample is empty or holds a non-finite value.
    """
    a, b = _finite("left", left), _finite("right", right)
    if a.size == 0 or b.size == 0:
        raise ValueError(f"unpaired samples must not be empty, got {a.size} and {b.size}")
    rng = np.random.default_rng(seed)
    draws = (a[rng.integers(0, a.size, size=(resamples, a.size))].mean(axis=1)
             - b[rng.integers(0, b.size, size=(resamples, b.size))].mean(axis=1))
    low, high = _percentiles(draws, level)
    return Interval(float(a.mean()), float(b.mean()), float(a.mean() - b.mean()), low, high,
                    int(min(a.size, b.size)), level)


def welch_interval(left: Sequence[float], right: Sequence[float] | None, *, level: float = LEVEL) -> Interval:
    """Welch's t interval of ``mean(left) - mean(right)`` for two independent small samples
    (e.g. the first and last steps of a training curve): the difference plus or minus the t
    quantile at Welch-Satterthwaite degrees of freedom times ``sqrt(var_l/n_l + var_r/n_r)``
    (sample variances, ddof 1; scipy.stats.t). ``right=None`` compares ``left`` with 0 (the
    one-sample t interval, n - 1 degrees of freedom). Constant samples give a zero-width
    interval.

    Raises ValueError when a sample has fewer than 2 values or holds a non-finite value.
    """
    a = _finite("left", left)
    b = _finite("right", right) if right is not None else None
    if a.size < 2 or (b is not None and b.size < 2):
        raise ValueError(f"Welch's interval needs at least 2 values a side, got {a.size} and "
                         f"{'none' if b is None else b.size}")
    va = a.var(ddof=1) / a.size
    vb = b.var(ddof=1) / b.size if b is not None else 0.0
    right_mean = float(b.mean()) if b is not None else 0.0
    n = int(a.size if b is None else min(a.size, b.size))
    diff = float(a.mean()) - right_mean
    se = float(np.sqrt(va + vb))
    if se == 0.0:
        return Interval(float(a.mean()), right_mean, diff, diff, diff, n, level)
    df = (va + vb) ** 2 / ((va ** 2 / (a.size - 1) if va else 0.0)
                           + (vb ** 2 / (b.size - 1) if b is not None and vb else 0.0))
    half = float(scipy_stats.t.ppf(0.5 + level / 2.0, df)) * se
    return Interval(float(a.mean()), right_mean, diff, diff - half, diff + half, n, level)


def verdict(interval: Interval, higher: bool = True) -> str:
    """The claim "left above right" (``higher``) or "left below right" judged by the interval:
    :data:`HOLDS`, :data:`FAILS` or :data:`INCONCLUSIVE` (see the module doc)."""
    low, high = (interval.low, interval.high) if higher else (-interval.high, -interval.low)
    if low > 0:
        return HOLDS
    if high <= 0:
        return FAILS
    return INCONCLUSIVE
