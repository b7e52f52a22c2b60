"""The ``r1flow`` command.

    r1flow run [--recipe F] [--set stage.key=value]     the whole pipeline (Prefect flow, embedded default;
                                                        a recipe from recipes/ for a real model)
    r1flow stage NAME [--params F] [--set key=value]    one stage in this checkout (what dvc.yaml calls)
    r1flow stage NAME@ITEM ...                          one item of a foreach stage (distill@s64)
    r1flow stage NAME --help                            its keys: values that would run, their source, meaning
    r1flow launch NAME [--dry-run] [stage args]         a stage under its launcher (infra/launch.yaml;
                                                        what dvc.yaml calls): DeepSpeed on GPUs
    r1flow serve [--limit N]                            serve the deployments (Prefect UI: Run button)
    r1flow reproduce MLFLOW_RUN_ID                      re-run a stage from its versioned inputs
    r1flow stages                                       list the stages
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path

# Stage name -> module with main(argv); the same name is the params.yaml section, the
# dvc.yaml stage, the Prefect task run, the MLflow run and the artifacts/ folder.
STAGES = {
    "base": "model.stages.base",
    "r1_zero": "model.stages.r1_zero",
    "cold_start": "model.stages.cold_start",
    "sft_cold": "model.stages.sft_cold",
    "reasoning_rl": "model.stages.reasoning_rl",
    "reasoning_rl_nolang": "model.stages.reasoning_rl_nolang",
    "rejection_sampling": "model.stages.rejection_sampling",
    "sft": "model.stages.sft",
    "reward_model": "model.stages.reward_model",
    "all_scenario_rl": "model.stages.all_scenario_rl",
    "student": "model.stages.student",
    "traces": "model.stages.traces",
    "distill": "model.stages.distill",
    "rl_student": "model.stages.rl_student",
    "evaluate": "model.stages.evaluate",
    "report": "model.stages.report",
}


def run_stage(name: str, argv: list[str]) -> dict:
    """Import the stage module and call its ``main``; bad input ends with a one-line error."""
    from data.quality import DataQualityError
    from data.schema import DatasetError
    from infra.config import ConfigError
    from infra.stage import split_name

    name, item = split_name(name)
    if name not in STAGES:
        raise SystemExit(f"unknown stage {name!r}; stages: {', '.join(STAGES)}")
    if item:  # a stage without an `item` key rejects it as an unknown key
        argv = [*argv, "--set", f"item={item}"]
    try:
        return importlib.import_module(STAGES[name]).main(argv)
    except (ConfigError, DatasetError, DataQualityError) as err:
        raise SystemExit(f"r1flow stage {name}{'@' + item if item else ''}: {err}") from None


def cmd_launch(argv: list[str]) -> None:
    """Run a stage under the launcher infra/launch.yaml asks for (replacing this process)."""
    import shlex

    from infra import launch
    from infra.logs import scrub

    parser = argparse.ArgumentParser(prog="r1flow launch", description=cmd_launch.__doc__)
    parser.add_argument("stage", help="NAME or NAME@ITEM")
    parser.add_argument("--dry-run", action="store_true", help="print the command instead of running it")
    args, rest = parser.parse_known_args(argv)
    if args.stage.partition("@")[0] not in STAGES:
        raise SystemExit(f"r1flow launch: unknown stage {args.stage!r}; stages: {', '.join(STAGES)}")
    try:
        cmd, changes = launch.stage_command(args.stage, rest, launch.launch_settings())
    except ValueError as err:
        raise SystemExit(f"r1flow launch {args.stage}: {err}") from None
    env = {k: v for k, v in os.environ.items() if changes.get(k, v) != ""}
    env.update({k: v for k, v in changes.items() if v})
    shown = " ".join(f"{k}={v}" for k, v in changes.items()) + (" " if changes else "") + shlex.join(cmd)
    print(f"r1flow launch: {scrub(shown)}", flush=True)
    if args.dry_run:
        return
    from infra import warm

    code = warm.launch(cmd, env)  # forked from the run's warm parent, when there is one
    if code is not None:
        raise SystemExit(code)
    os.execve(cmd[0], cmd, env)


def _embedded_defaults() -> None:
    # No HF_HUB_OFFLINE here: local models load with local_files_only (model/factory.py), and a
    # user who names a hub id (a recipe, --set base.model=...) gets the hub.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # The temporary API server waits 20 s to start by default; a busy 2-core machine needs more.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


def copy_outputs(source: Path, dest: Path) -> None:
    """Replace each stage folder of ``dest`` by the run's (one atomic rename per stage)."""
    import shutil

    from infra.io import staged_dir

    for stage in sorted(p for p in source.iterdir() if p.is_dir()):
        with staged_dir(dest / stage.name) as tmp:
            shutil.copytree(stage, tmp, dirs_exist_ok=True)


def cmd_run(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="r1flow run", description="Run the whole pipeline once.")
    parser.add_argument("--recipe", metavar="FILE",
                        help="params overlay for this run, e.g. recipes/qwen2.5-0.5b-gsm8k.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="STAGE.KEY=VALUE",
                        help="override one params.yaml value for this run (repeatable; wins over --recipe)")
    args = parser.parse_args(argv)
    from infra.config import parse_overrides

    params: dict[str, dict] = {}
    for key, value in parse_overrides(args.overrides).items():
        stage, _, field = key.partition(".")
        if not field:
            raise SystemExit(f"--set {key}: expected STAGE.KEY=VALUE")
        params.setdefault(stage, {})[field] = value
    from flows.pipeline import check_overrides, load_recipe, r1_pipeline
    from infra import tracking
    from infra.logs import scrub

    try:  # a bad recipe or --set value fails here, before any server starts
        if args.recipe:
            load_recipe(args.recipe)
        check_overrides(params, where="--set")
    except ValueError as err:
        raise SystemExit(f"r1flow run: {err}") from None
    _embedded_defaults()
    result = r1_pipeline(recipe=args.recipe, params=params or None)
    copy_outputs(Path(result["workspace"]) / "artifacts", Path("artifacts"))
    report = Path("artifacts") / "report" / "report.md"
    if report.exists():  # the table and the findings; the plots are in report.html
        print("\n" + report.read_text().split("\n## Test-time scaling and training curves")[0])
        print(f"Report with plots: {report.with_suffix('.html')}")
    print(f"Run {result['run']}: outputs in artifacts/ (a copy of {result['workspace']}/artifacts), "
          f"lineage on branch {result['branch']} ({result['commit'][:10]}).")
    print("Prefect UI:  .venv/bin/prefect server start   (then http://127.0.0.1:4200)")
    print(f"MLflow UI:   .venv/bin/mlflow ui --backend-store-uri {scrub(tracking.tracking_uri())}   (then http://127.0.0.1:5000)")


def cmd_serve(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="r1flow serve", description="Serve the r1flow deployments.")
    parser.add_argument("--limit", type=int, default=2, help="flow runs at once (default 2)")
    args = parser.parse_args(argv)
    _embedded_defaults()
    from prefect import serve

    from flows.pipeline import r1_pipeline, stage_flow

    serve(r1_pipeline.to_deployment(name="r1-pipeline", tags=["r1flow"]),
          stage_flow.to_deployment(name="r1-stage", tags=["r1flow"]), limit=args.limit)


def cmd_reproduce(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="r1flow reproduce", description=__doc__)
    parser.add_argument("run_id", help="MLflow run id of a stage run")
    args = parser.parse_args(argv)
    from flows.reproduce import reproduce
    from infra.logs import setup_logging

    setup_logging()
    report = reproduce(args.run_id)
    print(json.dumps(report, indent=2))
    same = all(r["match"] for r in report.values())
    print("identical: every output has the recorded md5" if same else "DIFFERENT: see the outputs above")
    raise SystemExit(0 if same else 1)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv.pop(0) if argv else "--help"
    if command == "stage" and argv:
        run_stage(argv[0], argv[1:])
    elif command == "launch":
        cmd_launch(argv)
    elif command == "stages":
        print("\n".join(STAGES))
    elif command == "run":
        cmd_run(argv)
    elif command == "serve":
        cmd_serve(argv)
    elif command == "reproduce":
        cmd_reproduce(argv)
    else:
        print(__doc__)
        raise SystemExit(0 if command in ("-h", "--help") else 2)


if __name__ == "__main__":
    main()
