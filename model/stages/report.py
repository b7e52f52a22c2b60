"""Stage ``report``: one table of every model on every benchmark, the paper's findings checked
with numbers, and the training curves of every RL stage side by side.

The table is laid out like Table 4 of the DeepSeek-R1 paper (models as rows; for each
benchmark pass@1 and cons@k, in %) from the ``evaluate@MODEL`` results, followed by each
model's behaviour (response length, reflection, mixing and format rates). The paper's
findings are computed, each stated as holding or not with its numbers, never assumed:

1. pure RL lifts the base: mean pass@1 of ``r1_zero`` above ``base`` (paper 2.2);
2. the language-consistency reward cuts language mixing: the mixing rate of
   ``reasoning_rl``'s rollouts below ``r1_zero``'s (last tenth of each stage's steps, at the
   training temperature), and the same at evaluation (paper 2.3.2);
3. distillation beats RL on small models: each student SFT'd on the r1 model's traces
   against the same student trained by GRPO alone (paper 4.1).

Writes ``artifacts/report/report.md``, ``report.html`` and ``plots/*.png`` (reward,
response length, reflection rate, mixing rate per RL stage), and logs them, with the
findings as metrics, to the pipeline's parent MLflow run when there is one.

One CPU rank:  r1flow stage report
"""

from __future__ import annotations

import html
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from infra.config import knob
from infra.plots import plot_runs
from infra.stage import stage_dir, stage_main

log = logging.getLogger(__name__)
NAME = "report"
CURVE_KEYS = ("reward", "response_length", "reflection_rate", "mixing_rate")


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
                         "all_scenario_rl": "artifacts/all_scenario_rl/steps.json"},
                        "RL stage label -> its steps.json, drawn one line each; each student's rl_student "
                        "curve is added as STUDENT_rl.")

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


def _mean(results: dict, model: str, key: str, benches: list[str]) -> float | None:
    values = [results[model][b][key] for b in benches if b in results.get(model, {})]
    return sum(values) / len(values) if values else None


def final_mean(rows: list[dict] | None, key: str, share: float = 0.1) -> float | None:
    """Mean of ``key`` over the last ``share`` of the steps that log it (None without any)."""
    values = [r[key] for r in rows or [] if isinstance(r.get(key), (int, float))]
    if not values:
        return None
    tail = values[-max(1, round(len(values) * share)):]
    return sum(tail) / len(tail)


def findings(results: dict, curves: dict[str, list[dict]], cfg: ReportConfig) -> list[dict]:
    """The paper's comparisons, each ``{"claim", "left", "right", "values", "holds"}`` (``holds``
    None when a side has no numbers). pass@1 is the mean over ``cfg.headline``; the mixing rate
    is the RL stage's own over its last tenth of steps (rollouts at the training temperature,
    where R1-Zero's mixing shows) and, as a second line, the evaluation's (temperature 0.6)."""
    every = sorted({b for r in results.values() for b in r})
    rows = [("pure RL lifts the base: mean pass@1", "r1_zero", "base",
             _mean(results, "r1_zero", "pass@1", cfg.headline), _mean(results, "base", "pass@1", cfg.headline), True),
            ("the language reward cuts mixing: mixing rate of RL rollouts, last 10% of steps",
             "reasoning_rl", "r1_zero", final_mean(curves.get("reasoning_rl"), "mixing_rate"),
             final_mean(curves.get("r1_zero"), "mixing_rate"), False),
            ("the language reward cuts mixing: mixing rate at evaluation", "reasoning_rl", "r1_zero",
             _mean(results, "reasoning_rl", "mixing_rate", every), _mean(results, "r1_zero", "mixing_rate", every),
             False)]
    rows += [(f"distillation beats RL on student {s}: mean pass@1", f"{s}_distill", f"{s}_rl",
              _mean(results, f"{s}_distill", "pass@1", cfg.headline), _mean(results, f"{s}_rl", "pass@1", cfg.headline),
              True) for s in cfg.students]
    out = []
    for claim, left, right, a, b, higher in rows:
        holds = None if a is None or b is None else (a > b if higher else a < b)
        out.append({"claim": claim, "left": left, "right": right, "values": [a, b], "holds": holds})
    return out


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
    header = ["model", "response length", "reflection %", "mixing %", "R1-Zero format %", "readable format %"]
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


def _finding_line(f: dict) -> str:
    a, b = f["values"]
    if f["holds"] is None:
        return f"- {f['claim']}: not measured ({f['left'] if a is None else f['right']} has no results)"
    scale = 100.0
    verdict = "holds" if f["holds"] else "DOES NOT HOLD"
    return f"- {f['claim']}: {f['left']} {scale * a:.1f}% vs {f['right']} {scale * b:.1f}% ({verdict})"


def markdown(results: dict, found: list[dict], plots: list[str], missing: list[str]) -> str:
    lines = ["# r1flow report", "", "## Models x benchmarks (%, pass@1 and cons@k)", "",
             *_md_table(*table_rows(results))]
    if missing:
        lines += ["", f"Not evaluated: {', '.join(missing)}."]
    lines += ["", "## Behaviour (mean over benchmarks)", "", *_md_table(*behaviour_rows(results))]
    lines += ["", "## Findings of the paper, measured", ""] + [_finding_line(f) for f in found]
    lines += ["", "## Training curves (RL stages)", ""] + [f"![{Path(p).stem}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def to_html(results: dict, found: list[dict], plots: list[str], missing: list[str]) -> str:
    esc = html.escape
    table = _html_table(*table_rows(results))
    behaviour = _html_table(*behaviour_rows(results))
    items = "".join(f"<li>{esc(_finding_line(f)[2:])}</li>" for f in found)
    images = "".join(f'<img src="{esc(p)}" alt="{esc(Path(p).stem)}">' for p in plots)
    note = f"<p>Not evaluated: {esc(', '.join(missing))}.</p>" if missing else ""
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}img{max-width:48%}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>r1flow report</title><style>{style}</style>"
            f"</head><body><h1>r1flow report</h1><h2>Models x benchmarks (%, pass@1 and cons@k)</h2>{table}{note}"
            f"<h2>Behaviour (mean over benchmarks)</h2>{behaviour}<h2>Findings of the paper, measured</h2><ul>{items}</ul><h2>Training curves</h2>{images}</body></html>\n")


def load_curves(curves: dict[str, str]) -> dict[str, list[dict]]:
    """``{label: step rows}`` of every steps.json that exists."""
    return {label: json.loads(Path(p).read_text()) for label, p in curves.items() if Path(p).is_file()}


def draw_curves(runs: dict[str, list[dict]], out: Path) -> list[str]:
    """One PNG per curve key with a line per RL stage; returns their paths relative to ``out``."""
    return [str(plot_runs(runs, key, out / "plots" / f"{key}.png").relative_to(out)) for key in CURVE_KEYS]


def run(cfg: ReportConfig) -> dict:
    """Write the report; returns the findings as metrics (1/0 per finding, and its two values)."""
    out = stage_dir(NAME)
    results = load_results(cfg.evaluations, list(cfg.models))
    if not results:
        raise ValueError(f"{cfg.evaluations}: no evaluate results (*/metrics.json) to report")
    missing = [m for m in cfg.models if m not in results]
    curves = load_curves(cfg.all_curves())
    found = findings(results, curves, cfg)
    plots = draw_curves(curves, out)
    (out / "report.md").write_text(markdown(results, found, plots, missing))
    (out / "report.html").write_text(to_html(results, found, plots, missing))
    metrics = {"models": len(results), "missing_models": len(missing)}
    for i, f in enumerate(found):
        tag = f"finding{i + 1}"
        metrics[f"{tag}/holds"] = -1 if f["holds"] is None else int(f["holds"])
        for side, value in zip(("left", "right"), f["values"]):
            if value is not None:
                metrics[f"{tag}/{f[side]}"] = value
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
    for name in ("report.md", "report.html"):
        run.log_artifact(out / name, "report")
    run.log_artifact(out / "plots", "report/plots")


def main(argv: list[str] | None = None) -> dict:
    return stage_main(NAME, ReportConfig, run, argv)
