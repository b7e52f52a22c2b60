"""Stage ``report``: one table of every model on every benchmark, the paper's findings checked
with numbers and their uncertainty, test-time scaling, and the training curves of every RL stage.

The table is laid out like Table 4 of the DeepSeek-R1 paper (models as rows; for each
benchmark pass@1 and cons@k, in %) from the ``evaluate@MODEL`` results, followed by each
model's behaviour (response length, reflection, mixing and format rates). Every headline
finding of the paper is listed, whether it holds or not (:func:`findings`):

1. pure RL lifts the base: pass@1 of ``r1_zero`` against ``base`` (2.2);
2. response length grows during R1-Zero's RL, and 3. reflection rises (2.2.1, Figure 3, the
   "aha moment"): the last tenth of ``r1_zero``'s steps against its first tenth;
4. R1-Zero mixes languages (2.2.1): its rollouts' mixing rate over the last tenth of steps;
5. the language-consistency reward reduces mixing (2.3.2): ``reasoning_rl`` against its
   ablation ``reasoning_rl_nolang`` (the same start and steps, no language reward), in the
   rollouts and at evaluation;
6. cold start gives readable output (2.3.1): readable rate of ``reasoning_rl`` against
   ``r1_zero``, readable meaning well formed in the format each one's prompt asks for and in
   one language (model/evaluate.py), so that neither side is favoured by its prompt;
7. R1 above R1-Zero (Table 4): pass@1 of ``r1`` against ``r1_zero``;
8. distillation beats RL on small models (4.1): each student SFT'd on r1's traces against
   the same student trained by GRPO alone;
9. thinking longer raises accuracy (2.2.1, test-time scaling): a model's pass@1 at the full
   thinking budget against half of it, with budget forcing (model/evaluate.py).

Models are compared on the problems both were scored on, matched by id and content hash, in
the benchmarks both have (``headline`` for accuracy: all of them, or "not measured"), pairing
each problem's scores; the verdict comes from a 95% paired bootstrap interval of the
difference (model/stats.py): holds, does not hold, or inconclusive. Curves compare windows of
steps by Welch's t interval. A comparison is "not measured", with the reason, when it cannot
be made honestly: no shared benchmark, different sampling protocols, too few problems or
steps, overlapping windows, a non-finite value, or, for "reduces mixing", no mixing to reduce.

Writes ``artifacts/report/report.md``, ``report.html``, ``findings.json`` and ``plots/*.png``
(reward, response length, reflection rate, mixing rate per RL stage; pass@1 against the
thinking budget and cons@j against the vote size j per model), and logs them, with the
findings as metrics, to the pipeline's parent MLflow run when there is one.

One CPU rank:  r1flow stage report
"""

from __future__ import annotations

import dataclasses
import html
import json
import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from infra.config import knob
from infra.plots import plot_runs, plot_sweep
from infra.io import write_json
from infra.stage import stage_dir, stage_main
from model import stats
from model.evaluate import NOT_METRICS

log = logging.getLogger(__name__)
NAME = "report"
CURVE_KEYS = ("reward", "response_length", "reflection_rate", "mixing_rate")
ABLATION = "reasoning_rl_nolang"  # reasoning_rl without the language reward (stage reasoning_rl_nolang)


@dataclass
class ReportConfig:
    evaluations: str = knob("artifacts/evaluate", "Folder of evaluate@MODEL results (MODEL/metrics.json).")
    models: dict = knob({"base": "artifacts/base/model", "r1_zero": "artifacts/r1_zero/model"},
                        "Rows of the table, in order: name -> the model folder a stage writes (artifacts/...). "
                        "The pipeline evaluates each as evaluate@NAME (dvc.yaml's foreach reads this list).")
    headline: list = knob(["arithmetic_test", "countdown_test"],
                          "Benchmarks whose mean pass@1 the findings compare (held-out, in-distribution).")
    students: dict = knob({}, "Students compared as STUDENT_distill against STUDENT_rl (their names).",
                          inherit="student.sizes")
    curves: dict = knob({"r1_zero": "artifacts/r1_zero/steps.json",
                         "reasoning_rl": "artifacts/reasoning_rl/steps.json",
                         ABLATION: f"artifacts/{ABLATION}/steps.json",
                         "all_scenario_rl": "artifacts/all_scenario_rl/steps.json"},
                        "RL stage label -> its steps.json, drawn one line each; each student's rl_student "
                        "curve is added as STUDENT_rl.")
    scaling_models: list = knob(["r1_zero", "r1"], "Models whose pass@1 at the full thinking budget is compared with "
                                "half of it (the test-time scaling finding); the plots show every model.")

    def __post_init__(self):
        for name, path in self.models.items():
            if not str(path).startswith("artifacts/"):
                raise ValueError(f"report.models.{name} = {path!r}: the pipeline evaluates the model folders its "
                                 "stages write (artifacts/...), each a DVC dependency; a hub id or outside path "
                                 "is not one. Evaluate it on its own: r1flow stage evaluate --set "
                                 f"'models={{{name}: {path}}}', or start the pipeline from it (base.model)")

    def all_curves(self) -> dict[str, str]:
        """``curves`` plus ``STUDENT_rl`` -> artifacts/rl_student/STUDENT/steps.json per student."""
        return {**self.curves, **{f"{s}_rl": f"artifacts/rl_student/{s}/steps.json" for s in self.students}}


def load_results(folder: str | Path, models: list[str]) -> dict[str, dict]:
    """``{model: {benchmark: metrics}}`` from every ``folder/*/metrics.json``, rows in ``models``
    order first; a model of ``models`` without results is absent."""
    found: dict[str, dict] = {}
    for path in sorted(Path(folder).glob("*/metrics.json")):
        found.update(json.loads(path.read_text()))
    return {m: found[m] for m in [*models, *sorted(set(found) - set(models))] if m in found}


def load_problems(folder: str | Path, models: list[str]) -> dict[str, dict]:
    """``{model: {benchmark: per-problem scores}}`` of ``models`` (report.models) from every
    ``folder/*/problems.json`` (model/evaluate.py ``score_problems``). Scores of any other model
    found there (an evaluation left from an earlier run) are left out; a model evaluated by a
    release before per-problem scores existed is absent.

    Raises ValueError naming the file, model, benchmark and id when a benchmark repeats a
    problem id, or when a metric's list and the ids differ in length: problems pair by id.
    """
    found: dict[str, dict] = {}
    for path in sorted(Path(folder).glob("*/problems.json")):
        for model, benches in json.loads(path.read_text()).items():
            if model not in models:
                continue
            for bench, scores in benches.items():
                ids = scores.get("id", [])
                repeated = [pid for pid, count in Counter(ids).items() if count > 1]
                if repeated:
                    raise ValueError(f"{path}: {model} {bench} repeats problem id {repeated[0]!r} "
                                     f"({len(repeated)} ids repeated); ids must be unique to pair problems")
                lengths = {name: len(v) for name, v in [*_lists(scores), ("key", scores.get("key", ids))]}
                bad = {name: n for name, n in lengths.items() if n != len(ids)}
                if bad:
                    raise ValueError(f"{path}: {model} {bench}: {len(ids)} problem ids but lists of other lengths "
                                     f"{bad}")
            found[model] = benches
    return found


def _lists(scores: dict, prefix: str = ""):
    """``(metric path, list)`` of every per-problem list of one benchmark's scores."""
    for name, value in scores.items():
        if name in NOT_METRICS:
            continue
        if isinstance(value, dict):
            yield from _lists(value, f"{prefix}{name}/")
        elif isinstance(value, list):
            yield f"{prefix}{name}", value


def _values(scores: dict, metric: tuple[str, ...]) -> list[float] | None:
    for part in metric:
        scores = scores.get(part) if isinstance(scores, dict) else None
    return scores if isinstance(scores, list) else None


def _not_measured(why: str) -> dict:
    return {"verdict": stats.NOT_MEASURED, "why": why}


def _measured(interval: stats.Interval, higher: bool, **extra) -> dict:
    return {**dataclasses.asdict(interval), "verdict": stats.verdict(interval, higher), **extra}


def _shared_benchmarks(problems: dict, lm: str, rm: str, benches: list[str] | None) -> list[str] | str:
    """The benchmarks both models are compared on, or why there are none: with ``benches``
    (the headline), each one either model has must be scored for both, so that both means
    cover the same benchmarks."""
    have = {m: set(problems[m]) for m in (lm, rm)}
    if benches is not None:
        lopsided = [f"{b} (only {lm if b in have[lm] else rm} has it)" for b in benches
                    if (b in have[lm]) != (b in have[rm])]
        if lopsided:
            return (f"headline benchmarks scored for one model only: {', '.join(lopsided)}; the two means "
                    "would cover different benchmarks")
        shared = [b for b in benches if b in have[lm]]
    else:
        shared = sorted(have[lm] & have[rm])
    return shared or (f"no shared benchmark: {lm} has {sorted(have[lm])}, {rm} has {sorted(have[rm])}"
                      + (f", compared on {benches}" if benches else ""))


def _pairs(lscores: dict, rscores: dict, lv: list, rv: list) -> tuple[list[float], list[float]] | str:
    """Values of the problems both evaluations scored, matched by id, or why they cannot be."""
    if lscores.get("protocol") != rscores.get("protocol"):
        lp, rp = lscores.get("protocol") or {}, rscores.get("protocol") or {}
        differ = [f"{k} {lp.get(k)} vs {rp.get(k)}" for k in sorted(set(lp) | set(rp)) if lp.get(k) != rp.get(k)]
        return f"sampled differently ({', '.join(differ)})"
    no_keys = [None] * len(rscores["id"])
    right = {pid: (key, value) for pid, key, value in zip(rscores["id"], rscores.get("key", no_keys), rv)}
    a: list[float] = []
    b: list[float] = []
    for pid, key, value in zip(lscores["id"], lscores.get("key", [None] * len(lscores["id"])), lv):
        if pid not in right:
            continue
        if right[pid][0] != key:
            return (f"problem {pid} is a different problem in the two evaluations (content hash {key} vs "
                    f"{right[pid][0]}): evaluate both models on one version of the benchmark")
        a.append(value)
        b.append(right[pid][1])
    return a, b


def compare_problems(problems: dict, left: tuple[str, tuple[str, ...]], right: tuple[str, tuple[str, ...]],
                     benches: list[str] | None, higher: bool = True) -> dict:
    """Paired comparison of ``(model, metric path)`` ``left`` and ``right`` (e.g. ``("r1",
    ("pass@1",))`` or ``("r1", ("budget_pass@1", "96"))``) over the problems both were scored
    on, matched by problem id and content hash, in the benchmarks both have (all of
    ``benches`` either has; None = any shared one). Returns the :class:`model.stats.Interval`
    fields, ``verdict`` and ``benchmarks``, or a "not measured" verdict with ``why``: a model
    without scores, benchmarks scored for one side only, evaluations sampled with different
    protocols (``k``, temperature, ...), a problem id whose content differs, fewer than
    :data:`model.stats.MIN_PAIRS` shared problems, or a non-finite score."""
    (lm, lmetric), (rm, rmetric) = left, right
    for model in (lm, rm):
        if model not in problems:
            return _not_measured(f"{model} has no per-problem scores (artifacts/evaluate/{model}/problems.json)")
    shared = _shared_benchmarks(problems, lm, rm, benches)
    if isinstance(shared, str):
        return _not_measured(shared)
    a: list[float] = []
    b: list[float] = []
    for bench in shared:
        lscores, rscores = problems[lm][bench], problems[rm][bench]
        lv, rv = _values(lscores, lmetric), _values(rscores, rmetric)
        if lv is None or rv is None:
            return _not_measured(f"{bench}: {'/'.join(lmetric if lv is None else rmetric)} is not scored for "
                                 f"{lm if lv is None else rm}")
        pairs = _pairs(lscores, rscores, lv, rv)
        if isinstance(pairs, str):
            return _not_measured(f"{bench}: {pairs}")
        a, b = a + pairs[0], b + pairs[1]
    if len(a) < stats.MIN_PAIRS:
        return _not_measured(f"{lm} and {rm} share {len(a)} problems in {shared}; a bootstrap interval needs at "
                             f"least {stats.MIN_PAIRS}")
    try:
        interval = stats.paired_interval(a, b)
    except ValueError as err:  # a NaN or infinite score
        return _not_measured(f"{lm} against {rm} on {shared}: {err}")
    return _measured(interval, higher, benchmarks=shared)


def logged(rows: list[dict] | None, key: str) -> list[float]:
    """The values of ``key`` over the steps that log it, in step order (NaN kept: a broken
    curve must not pass for a shorter one)."""
    return [float(r[key]) for r in rows or [] if isinstance(r.get(key), (int, float))]


def window(rows: list[dict] | None, key: str, share: float = 0.1, last: bool = True) -> list[float]:
    """Values of ``key`` in the last (or first) ``share`` of the steps that log it, and at
    least :data:`model.stats.MIN_STEPS` of them (all of them when the run logged fewer)."""
    values = logged(rows, key)
    size = max(stats.MIN_STEPS, round(len(values) * share))
    return values[-size:] if last else values[:size]


def compare_windows(left: tuple[str, list[dict] | None, bool], right: tuple[str, list[dict] | None, bool] | None,
                    key: str, higher: bool = True) -> dict:
    """Comparison of training curves' windows of steps by Welch's t interval
    (:func:`model.stats.welch_interval`): ``(label, step rows, last)`` picks the last (or
    first) tenth of that run's ``key`` (:func:`window`); without ``right`` the window is
    compared with 0 (a rate that should be above it). Not measured when a window has fewer
    than :data:`model.stats.MIN_STEPS` steps, when the first and last windows of one run would
    overlap, or when a value is not finite."""
    label, rows, last = left
    a = window(rows, key, last=last)
    runs = [(label, rows, a)]
    b = None
    if right is not None:
        rlabel, rrows, rlast = right
        b = window(rrows, key, last=rlast)
        runs.append((rlabel, rrows, b))
        if rrows is rows and len(a) + len(b) > len(logged(rows, key)):
            return _not_measured(f"{label} logged {key} at {len(logged(rows, key))} steps: its first and last "
                                 f"windows of {len(a)} would overlap")
    for name, steps, values in runs:
        if len(values) < stats.MIN_STEPS:
            return _not_measured(f"{name} logged {key} at {len(values)} steps; a window needs "
                                 f"{stats.MIN_STEPS}" if values else f"{name} logged no {key}")
    try:
        interval = stats.welch_interval(a, b)
    except ValueError as err:
        return _not_measured(f"{label} {key}: {err}")
    return _measured(interval, higher)


def _nothing_to_reduce(result: dict, label: str, what: str) -> dict:
    """A "left reduces X" comparison whose right side shows no X at all cannot be tested."""
    if result["verdict"] != stats.NOT_MEASURED and result["right"] == 0.0:
        return _not_measured(f"{label} shows no {what} (0.0%): there is none for the reward to reduce")
    return result


def _budget_pair(problems: dict, model: str) -> tuple[str, str] | None:
    """The largest thinking budget scored for ``model`` and the one nearest half of it."""
    budgets = sorted({int(b) for scores in problems.get(model, {}).values()
                      for b in scores.get("budget_pass@1", {})})
    if len(budgets) < 2:
        return None
    half = min(budgets[:-1], key=lambda b: abs(b - budgets[-1] / 2))
    return str(budgets[-1]), str(half)


def findings(problems: dict, curves: dict[str, list[dict]], cfg: "ReportConfig") -> list[dict]:
    """Every headline finding of the paper (module doc), in order, each ``{"key", "claim",
    "left", "right", "unit", "verdict"}`` plus either the comparison (``left`` and ``right``
    values, ``diff``, ``low``/``high`` of its 95% interval, ``n``) or ``why`` it is not
    measured. ``unit`` is "%" for shares and "tokens" for lengths."""
    head = cfg.headline
    first, last = "first 10% of steps", "last 10% of steps"
    out = [
        ("rl_lifts_base", "pure RL lifts the base: pass@1", "r1_zero", "base", "%",
         compare_problems(problems, ("r1_zero", ("pass@1",)), ("base", ("pass@1",)), head)),
        ("length_grows", "response length grows during R1-Zero RL: rollouts' mean length", f"r1_zero {last}",
         f"r1_zero {first}", "tokens", compare_windows(("r1_zero", curves.get("r1_zero"), True),
                                                       ("r1_zero", curves.get("r1_zero"), False), "response_length")),
        ("reflection_rises", "reflection rises during R1-Zero RL: rollouts with a re-check", f"r1_zero {last}",
         f"r1_zero {first}", "%", compare_windows(("r1_zero", curves.get("r1_zero"), True),
                                                  ("r1_zero", curves.get("r1_zero"), False), "reflection_rate")),
        ("r1_zero_mixes", "R1-Zero mixes languages: rollouts whose reasoning mixes scripts", f"r1_zero {last}",
         "no mixing", "%", compare_windows(("r1_zero", curves.get("r1_zero"), True), None, "mixing_rate")),
        ("language_reward_cuts_mixing", "the language reward reduces mixing: rollouts, same start and steps",
         f"reasoning_rl {last}", f"{ABLATION} {last}", "%",
         _nothing_to_reduce(compare_windows(("reasoning_rl", curves.get("reasoning_rl"), True),
                                            (ABLATION, curves.get(ABLATION), True), "mixing_rate", higher=False),
                            f"{ABLATION}'s rollouts", "mixing")),
        ("language_reward_cuts_mixing_eval", "the language reward reduces mixing: at evaluation", "reasoning_rl",
         ABLATION, "%",
         _nothing_to_reduce(compare_problems(problems, ("reasoning_rl", ("mixing_rate",)),
                                             (ABLATION, ("mixing_rate",)), None, higher=False),
                            f"{ABLATION} at evaluation", "mixing")),
        ("cold_start_readable", "cold start gives readable output: readable rate", "reasoning_rl",
         "r1_zero", "%", compare_problems(problems, ("reasoning_rl", ("readable_rate",)),
                                          ("r1_zero", ("readable_rate",)), None)),
        ("r1_beats_r1_zero", "R1 beats R1-Zero: pass@1", "r1", "r1_zero", "%",
         compare_problems(problems, ("r1", ("pass@1",)), ("r1_zero", ("pass@1",)), head)),
    ]
    out += [(f"distill_beats_rl_{s}", f"distillation beats RL on student {s}: pass@1", f"{s}_distill", f"{s}_rl",
             "%", compare_problems(problems, (f"{s}_distill", ("pass@1",)), (f"{s}_rl", ("pass@1",)), head))
            for s in cfg.students]
    for model in cfg.scaling_models:
        pair = _budget_pair(problems, model)
        if pair is None:
            out.append((f"thinking_longer_{model}", f"thinking longer raises accuracy: {model} pass@1", model,
                        model, "%", _not_measured(f"{model} has fewer than two thinking budgets scored")))
            continue
        full, half = pair
        out.append((f"thinking_longer_{model}", f"thinking longer raises accuracy: {model} pass@1 by thinking budget",
                    f"{full} tokens", f"{half} tokens", "%",
                    compare_problems(problems, (model, ("budget_pass@1", full)), (model, ("budget_pass@1", half)),
                                     head)))
    return [{"key": key, "claim": claim, "left_label": left, "right_label": right, "unit": unit, **result}
            for key, claim, left, right, unit, result in out]


def table_rows(results: dict) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the Table-4 layout: one row per model, pass@1 and cons@k per benchmark."""
    benches = list(dict.fromkeys(b for r in results.values() for b in r))
    k = next((r[b]["k"] for r in results.values() for b in r), "k")
    header = ["model"] + [f"{b} {m}" for b in benches for m in ("pass@1", f"cons@{k}")]
    rows = []
    for model, r in results.items():
        cells = [model]
        for b in benches:
            cells += ["-", "-"] if b not in r else [f"{100 * r[b]['pass@1']:.1f}", f"{100 * r[b]['cons@k']:.1f}"]
        rows.append(cells)
    return header, rows


BEHAVIOUR = ("mean_length", "reflection_rate", "mixing_rate", "format_rate", "readable_rate")


def behaviour_rows(results: dict) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the behaviour table: per model, each :data:`BEHAVIOUR` key averaged
    over the benchmarks (length in tokens, rates in %)."""
    header = ["model", "response length", "reflection %", "mixing %", "R1-Zero format %", "readable %"]
    rows = []
    for model, r in results.items():
        means = [sum(v.get(key, 0.0) for v in r.values()) / len(r) for key in BEHAVIOUR]
        rows.append([model, f"{means[0]:.1f}", *[f"{100 * m:.1f}" for m in means[1:]]])
    return header, rows


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    esc = html.escape
    return ("<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows) + "</table>")


def _number(value: float, unit: str) -> str:
    return f"{value:.1f}" if unit == "tokens" else f"{100 * value:.1f}"


def finding_cells(f: dict) -> list[str]:
    """One row of the findings table: claim, the two sides with their values, the difference
    with its 95% interval, n, and the verdict (or why it is not measured)."""
    unit = f["unit"]
    if f["verdict"] == stats.NOT_MEASURED:
        return [f["claim"], f["left_label"], f["right_label"], "-", "-", f"not measured: {f['why']}"]
    sign = "%" if unit == "%" else " tok"
    diff = (f"{_number(f['diff'], unit)}{sign} [{_number(f['low'], unit)}, {_number(f['high'], unit)}]")
    return [f["claim"], f"{f['left_label']} {_number(f['left'], unit)}{sign}",
            f"{f['right_label']} {_number(f['right'], unit)}{sign}", diff, str(f["n"]), f["verdict"]]


FINDINGS_HEADER = ["finding", "left", "right", "left - right [95% CI]", "n", "verdict"]


def markdown(results: dict, found: list[dict], plots: list[str], missing: list[str]) -> str:
    lines = ["# r1flow report", "", "## Models x benchmarks (%, pass@1 and cons@k)", "",
             *_md_table(*table_rows(results))]
    if missing:
        lines += ["", f"Not evaluated: {', '.join(missing)}."]
    lines += ["", "## Behaviour (mean over benchmarks)", "", *_md_table(*behaviour_rows(results))]
    lines += ["", "## Findings of the paper, measured", "", FINDINGS_NOTE, "",
              *_md_table(FINDINGS_HEADER, [finding_cells(f) for f in found])]
    lines += ["", "## Test-time scaling and training curves", ""] + [f"![{Path(p).stem}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


FINDINGS_NOTE = ("Each finding compares two numbers: paired over the problems both models were scored on (n "
                 "problems, matched by id and content, sampled alike; a 95% paired bootstrap interval, at least "
                 f"{stats.MIN_PAIRS} problems), or over two windows of training steps (n steps a window, at least "
                 f"{stats.MIN_STEPS}, not overlapping; a 95% Welch t interval). A verdict holds when the interval "
                 "excludes 0 on the claimed side, does not hold when it lies on the other side or at 0, and is "
                 "inconclusive when it straddles 0. Thinking budgets are compared with budget forcing: cut at the "
                 "budget, the thinking is closed and the answer asked for. Readable means well formed in the "
                 "format the prompt asked for, in one language. The intervals cover this run's evaluation "
                 "(problems and samples), not its training: every verdict here is one run of the recipe, and "
                 "a run with another seed, or only another floating-point rounding, can move one (README, "
                 "\"Single runs are not the recipe\").")


def to_html(results: dict, found: list[dict], plots: list[str], missing: list[str]) -> str:
    esc = html.escape
    table = _html_table(*table_rows(results))
    behaviour = _html_table(*behaviour_rows(results))
    verdicts = _html_table(FINDINGS_HEADER, [finding_cells(f) for f in found])
    images = "".join(f'<img src="{esc(p)}" alt="{esc(Path(p).stem)}">' for p in plots)
    note = f"<p>Not evaluated: {esc(', '.join(missing))}.</p>" if missing else ""
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}img{max-width:48%}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>r1flow report</title><style>{style}</style>"
            f"</head><body><h1>r1flow report</h1><h2>Models x benchmarks (%, pass@1 and cons@k)</h2>{table}{note}"
            f"<h2>Behaviour (mean over benchmarks)</h2>{behaviour}<h2>Findings of the paper, measured</h2>"
            f"<p>{esc(FINDINGS_NOTE)}</p>{verdicts}<h2>Test-time scaling and training curves</h2>{images}</body></html>\n")


def load_curves(curves: dict[str, str]) -> dict[str, list[dict]]:
    """``{label: step rows}`` of every steps.json that exists."""
    return {label: json.loads(Path(p).read_text()) for label, p in curves.items() if Path(p).is_file()}


def draw_curves(runs: dict[str, list[dict]], out: Path) -> list[str]:
    """One PNG per curve key with a line per RL stage; returns their paths relative to ``out``."""
    return [str(plot_runs(runs, key, out / "plots" / f"{key}.png").relative_to(out)) for key in CURVE_KEYS]


def sweep_series(results: dict, key: str, benches: list[str]) -> dict[str, tuple[list[float], list[float]]]:
    """``{model: (xs, ys)}`` of a test-time sweep of the evaluate results (``cons_at`` or
    ``budget_pass@1``): each point the mean over the ``benches`` the model has that carry it."""
    series = {}
    for model, by_bench in results.items():
        sweeps = [by_bench[b][key] for b in benches if isinstance(by_bench.get(b, {}).get(key), dict)]
        xs = sorted({int(x) for sweep in sweeps for x in sweep}) if sweeps else []
        xs = [x for x in xs if all(str(x) in sweep for sweep in sweeps)]
        series[model] = ([float(x) for x in xs], [sum(s[str(x)] for s in sweeps) / len(sweeps) for x in xs])
    return series


def draw_scaling(results: dict, benches: list[str], out: Path) -> list[str]:
    """pass@1 against the thinking budget and cons@j against the vote size j, one line per
    model (means over ``benches``); returns the PNG paths relative to ``out``."""
    budget = plot_sweep(sweep_series(results, "budget_pass@1", benches), out / "plots" / "budget.png",
                        xlabel="thinking budget (max new tokens)", ylabel="pass@1",
                        title="thinking longer: pass@1 by budget")
    votes = plot_sweep(sweep_series(results, "cons_at", benches), out / "plots" / "cons_at.png",
                       xlabel="samples voting (j)", ylabel="cons@j", title="sampling more: majority vote of j",
                       log2_x=True)
    return [str(budget.relative_to(out)), str(votes.relative_to(out))]


def finding_metrics(found: list[dict]) -> dict:
    """The findings as MLflow metrics: ``KEY/verdict`` (1 holds, 0 inconclusive, -1 does not
    hold; absent when not measured), ``KEY/left``, ``KEY/right``, ``KEY/diff``, ``KEY/low``,
    ``KEY/high``."""
    codes = {stats.HOLDS: 1, stats.INCONCLUSIVE: 0, stats.FAILS: -1}
    metrics = {}
    for f in found:
        if f["verdict"] in codes:
            metrics[f["key"]] = {"verdict": codes[f["verdict"]],
                                 **{k: f[k] for k in ("left", "right", "diff", "low", "high")}}
    return metrics


def run(cfg: ReportConfig) -> dict:
    """Write the report; returns the findings as metrics (:func:`finding_metrics`)."""
    out = stage_dir(NAME)
    results = load_results(cfg.evaluations, list(cfg.models))
    if not results:
        raise ValueError(f"{cfg.evaluations}: no evaluate results (*/metrics.json) to report")
    missing = [m for m in cfg.models if m not in results]
    curves = load_curves(cfg.all_curves())
    found = findings(load_problems(cfg.evaluations, list(cfg.models)), curves, cfg)
    plots = draw_scaling(results, cfg.headline, out) + draw_curves(curves, out)
    (out / "report.md").write_text(markdown(results, found, plots, missing))
    (out / "report.html").write_text(to_html(results, found, plots, missing))
    write_json(out / "findings.json", found)
    counts = {v: sum(f["verdict"] == v for f in found)
              for v in (stats.HOLDS, stats.FAILS, stats.INCONCLUSIVE, stats.NOT_MEASURED)}
    metrics = {"models": len(results), "missing_models": len(missing),
               "findings": {v.replace(" ", "_"): n for v, n in counts.items()}, **finding_metrics(found)}
    _log_to_parent(out, metrics)
    return metrics


def _log_to_parent(out: Path, metrics: dict) -> None:
    """The report belongs to the whole pipeline run: log it there too (files under
    ``report/``, findings as ``report/...`` metrics)."""
    from infra import tracking

    parent = os.environ.get(tracking.PARENT_ENV)
    if not parent:
        return
    run = tracking.StageRun(tracking.client(), parent)
    run.log_metrics({f"report/{k}": v for k, v in metrics.items()})
    for name in ("report.md", "report.html", "findings.json"):
        run.log_artifact(out / name, "report")
    run.log_artifact(out / "plots", "report/plots")


def main(argv: list[str] | None = None) -> dict:
    return stage_main(NAME, ReportConfig, run, argv)
