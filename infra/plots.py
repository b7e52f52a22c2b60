"""Training-curve figures (PNG) for MLflow and the run report.

Drawn on a bare ``matplotlib.figure.Figure`` with the Agg canvas: no pyplot global state,
no GUI backend, safe off the main thread.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

log = logging.getLogger(__name__)

_COLS = 3


def moving_average(values: list[float], window: int) -> list[float]:
    """Trailing mean over the last ``window`` values (shorter at the start); same length."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def _series(rows: list[dict], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of ``key``; rows without it, or with a non-finite value, are skipped."""
    xs, ys = [], []
    for i, row in enumerate(rows):
        value = row.get(key)
        if value is None:
            continue
        try:
            value = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(value):
            xs.append(float(row.get("step", i)))
            ys.append(value)
    return xs, ys


def plot_curves(rows: list[dict], keys: list[str], path: str | Path, title: str = "") -> Path:
    """One subplot per key of ``rows`` (``{"step": n, key: value, ...}``) against ``step``.

    Raw points are drawn faint with a moving average (window ~ 1/10 of the points) on top.
    Keys that no row carries are skipped; with none left the PNG says "no data".
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    series = {k: s for k in keys if (s := _series(rows, k))[0]}
    missing = [k for k in keys if k not in series]
    if missing:
        log.debug("plot %s: no values for %s", path.name, missing)
    n = max(len(series), 1)
    ncols = min(_COLS, n)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(4.2 * ncols, 3.0 * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    if title:
        fig.suptitle(title)
    if not series:
        fig.add_subplot().text(0.5, 0.5, "no data", ha="center", va="center")
    for i, (key, (xs, ys)) in enumerate(series.items()):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        ax.plot(xs, ys, color="tab:blue", alpha=0.3, linewidth=0.8, marker=".", markersize=3)
        window = max(1, len(ys) // 10)
        if window > 1:
            ax.plot(xs, moving_average(ys, window), color="tab:blue", linewidth=1.6)
        ax.set_title(key, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.savefig(path, format="png", dpi=100)
    return path


def plot_runs(runs: dict[str, list[dict]], key: str, path: str | Path, title: str = "") -> Path:
    """One line per run (``{label: step rows}``) of ``key`` against ``step``, smoothed over
    ~1/10 of its points; runs without the key are left out (the PNG says "no data" if all are)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(6.0, 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    drawn = 0
    for label, rows in runs.items():
        xs, ys = _series(rows, key)
        if xs:
            ax.plot(xs, moving_average(ys, max(1, len(ys) // 10)), linewidth=1.6, label=label)
            drawn += 1
    if drawn:
        ax.legend(fontsize=8)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    else:
        ax.text(0.5, 0.5, "no data", ha="center", va="center")
    ax.set_title(title or key, fontsize=10)
    fig.savefig(path, format="png", dpi=100)
    return path


def plot_sweep(series: dict[str, tuple[list[float], list[float]]], path: str | Path, *, xlabel: str,
               ylabel: str, title: str = "", log2_x: bool = False) -> Path:
    """One line with markers per label (``{label: (xs, ys)}``), e.g. accuracy against a
    test-time budget for every model; ``log2_x`` spaces x by powers of two (vote sizes)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(6.0, 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    drawn = {label: xy for label, xy in series.items() if xy[0]}
    for label, (xs, ys) in drawn.items():
        ax.plot(xs, ys, marker="o", markersize=3, linewidth=1.4, label=label)
    if drawn:
        if log2_x:
            from matplotlib.ticker import ScalarFormatter

            ax.set_xscale("log", base=2)
            ax.xaxis.set_major_formatter(ScalarFormatter())  # 1, 2, 4, ... rather than 2^0, 2^1, ...
        ax.legend(fontsize=8)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    else:
        ax.text(0.5, 0.5, "no data", ha="center", va="center")
    ax.set_title(title, fontsize=10)
    fig.savefig(path, format="png", dpi=100)
    return path
