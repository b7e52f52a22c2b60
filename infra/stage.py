"""The thin CLI every stage shares: load config, open the MLflow run, run, record.

``stage_main`` is the whole of a stage's ``main()``: it parses ``--params`` and
``--set``, builds the stage's config dataclass (unknown keys fail), opens the
stage's MLflow run (a child of ``$R1FLOW_PARENT_RUN_ID`` inside a pipeline run),
runs ``run(cfg)`` with every per-step metric streamed to that run, and writes
``artifacts/<stage>/metrics.json`` (what ``run`` returned), ``steps.json`` (the
per-step metrics, for ``dvc plots``) and ``run.json`` (resolved config; CPU ``threads``; ``compute_s``, the
time inside ``run``, and ``process_s``, the process's whole life up to the end).

A DVC ``foreach`` stage runs once per item as ``r1flow stage NAME@ITEM``: its config has an
``item`` field (set from the name), its MLflow run is named ``NAME@ITEM`` and its outputs go
to ``artifacts/NAME/ITEM/``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable

from infra import launch, tracking
from infra.config import config_help, load_stage_config, to_dict
from infra.io import write_json
from infra.logs import redact, setup_logging
from infra.progress import quiet_library_bars
from infra.steplog import forward_to

log = logging.getLogger(__name__)

ARTIFACTS = Path("artifacts")
# Per-step keys worth a plot, when a stage logs them.
CURVES = ["reward", "accuracy", "format_rate", "response_length", "reflection_rate", "kl", "loss"]


def stage_dir(name: str, item: str = "") -> Path:
    """``artifacts/<name>`` (``artifacts/<name>/<item>`` for one item of a foreach stage),
    the one output folder of that stage (created)."""
    path = ARTIFACTS / name / item if item else ARTIFACTS / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def item_path(template: str, item: str) -> str:
    """``template`` with ``{item}`` replaced by the foreach item; a template without an item fails."""
    if "{item}" in template and not item:
        raise ValueError(f"{template}: no item named; run `r1flow stage <stage>@<item>`")
    return template.replace("{item}", item)


def split_name(instance: str) -> tuple[str, str]:
    """``"distill@s64"`` -> ``("distill", "s64")``; ``"base"`` -> ``("base", "")``."""
    name, _, item = instance.partition("@")
    return name, item


class _StageParser(argparse.ArgumentParser):
    """An ArgumentParser whose description is written only when help is asked for (it reads
    the params file)."""

    def __init__(self, *args: Any, describe: Callable[[], str], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.describe = describe

    def format_help(self) -> str:
        self.description = self.describe()
        return super().format_help()


def _with_options(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one key of this stage's section (repeatable)")
    return parser


def parse_args(name: str, config_cls: type, argv: list[str] | None) -> argparse.Namespace:
    """``--params`` and ``--set`` of ``argv``. ``--help`` lists every key with the value this
    command would run with, from the same ``--params`` and ``--set`` (:func:`config_help`)."""
    def describe() -> str:
        given, _ = _with_options(argparse.ArgumentParser(add_help=False)).parse_known_args(argv)
        item = next((o.partition("=")[2] for o in given.overrides if o.partition("=")[0].strip() == "item"), "")
        return (f"Run stage {name + '@' * bool(item) + item!r}. Keys of its section of {given.params}: the value this command "
                f"runs with (type, source):\n{config_help(config_cls, name, given.params, given.overrides)}")

    parser = _StageParser(prog=f"r1flow stage {name}", formatter_class=argparse.RawDescriptionHelpFormatter,
                          describe=describe)
    return _with_options(parser).parse_args(argv)


def stage_main(name: str, config_cls: type, run: Callable[[Any], dict], argv: list[str] | None = None) -> dict:
    """Load config, run the stage under its MLflow run, write its records."""
    setup_logging()
    quiet_library_bars()
    args = parse_args(name, config_cls, argv)
    cfg = load_stage_config(config_cls, name, args.params, args.overrides)
    item = getattr(cfg, "item", "")
    instance, out = f"{name}@{item}" if item else name, stage_dir(name, item)
    log.info("stage %s config: %s", instance, redact(to_dict(cfg)))  # key-named secrets too
    started = time.time()
    threads = cpu_threads()
    tags = {"r1flow.threads": str(threads)}  # the outputs depend on it: reproduce uses it again
    if os.environ.get("R1FLOW_REPRODUCES"):
        tags["r1flow.reproduces"] = os.environ["R1FLOW_REPRODUCES"]
    with tracking.stage_run(instance, to_dict(cfg), tags=tags) as mlrun, forward_to(mlrun.log_step):
        metrics = run(cfg)
        compute_s = time.time() - started
        if launch.rank() == 0:
            record(out, metrics)
            publish(mlrun, out, metrics)
            write_json(out / "run.json", {
                "stage": instance, "config": to_dict(cfg), "started": started, "threads": threads,
                "compute_s": round(compute_s, 3), "process_s": round(_process_age(), 3)})
    log.info("stage %s done in %.1f s", instance, time.time() - started)
    return metrics


def cpu_threads() -> int:
    """The CPU threads torch computes with in this process (``OMP_NUM_THREADS`` when set, which
    the pipeline fixes for a stage's life: infra/schedule.py)."""
    import torch

    return torch.get_num_threads()


def record(out: Path, metrics: dict) -> None:
    """metrics.json and steps.json (from steps.jsonl, for `dvc plots`) of a finished stage."""
    write_json(out / "metrics.json", metrics)
    steps = out / "steps.jsonl"
    if steps.is_file():
        write_json(out / "steps.json", plot_rows([json.loads(l) for l in steps.read_text().splitlines() if l.strip()]))


def plot_rows(rows: list[dict]) -> list[dict]:
    """Step rows as `dvc plots` reads them: every row with the same keys (DVC drops a file whose
    rows differ: dvc/render/converter/vega.py ``_is_datapoints``, DVC 3.x), a key a step did not
    log, or a NaN or infinite value (not JSON; a browser's parser refuses it), as null."""
    import math

    keys = sorted({key for row in rows for key in row})

    def value(v: Any) -> Any:
        return None if isinstance(v, float) and not math.isfinite(v) else v

    return [{key: value(row.get(key)) for key in keys} for row in rows]


def publish(mlrun, out: Path, metrics: dict) -> None:
    """Final metrics, curves, samples, datasets, quality reports, tables and models (each
    model folder as an MLflow model of the run: :meth:`infra.tracking.StageRun.log_model`)
    to MLflow."""
    label = "@".join(out.relative_to(ARTIFACTS).parts) if out.is_relative_to(ARTIFACTS) else out.name
    mlrun.log_metrics(metrics)
    texts = {f"r1flow.{key}": value for key, value in metrics.items() if isinstance(value, str)}
    if texts:  # e.g. model_revision, the commit a hub id was pinned to: lineage, not a number
        mlrun.set_tags(texts)
    steps = out / "steps.json"
    if steps.is_file():
        rows = json.loads(steps.read_text())
        keys = [k for k in CURVES if rows and k in rows[-1]]
        if keys:
            mlrun.log_curves(rows, keys, name=f"{label}_curves")
    samples = out / "samples.jsonl"
    if samples.is_file():
        mlrun.log_table([json.loads(l) for l in samples.read_text().splitlines() if l.strip()], "samples.json")
    for dataset in sorted(out.glob("*.jsonl")):
        if dataset.name not in ("steps.jsonl", "samples.jsonl"):
            rows = [json.loads(l) for l in dataset.read_text().splitlines() if l.strip()]
            mlrun.log_dataset(rows, name=f"{label}/{dataset.stem}", context=label, source=str(dataset))
    for extra in ("quality", "table.md"):
        if (out / extra).exists():
            mlrun.log_artifact(out / extra)
    for folder in model_folders(out):
        mlrun.log_model(folder, name=f"{label}-{folder.name}", stage=label)


def model_folders(out: Path) -> list[Path]:
    """The model folders a stage wrote: children of ``out`` holding an HF model or a hub
    reference (``model``, ``helpful``, ``harmless``), sorted; checkpoints are not models."""
    from model.factory import model_kind

    return sorted(p for p in out.iterdir() if p.is_dir() and p.name != "checkpoints" and model_kind(p))


def _process_age() -> float:
    """Seconds since this process started (imports included)."""
    import psutil

    return time.time() - psutil.Process().create_time()
