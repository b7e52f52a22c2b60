"""The thin CLI every stage shares: load config, run, write metrics.

``stage_main`` is the whole of a stage's ``main()``: it parses ``--params`` and
``--set``, builds the stage's config dataclass (unknown keys fail), runs
``run(cfg)``, and writes ``artifacts/<stage>/metrics.json`` (what ``run`` returned)
and ``artifacts/<stage>/run.json`` (resolved config and wall time).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any, Callable

from infra import launch
from infra.config import config_help, load_stage_config, to_dict
from infra.io import write_json
from infra.logs import setup_logging

log = logging.getLogger(__name__)

ARTIFACTS = Path("artifacts")


def stage_dir(name: str) -> Path:
    """``artifacts/<name>``, the one output folder of stage ``name`` (created)."""
    path = ARTIFACTS / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def parse_args(name: str, config_cls: type, argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=f"r1flow stage {name}", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=f"Run stage {name!r}. Keys of params.yaml [{name}]:\n{config_help(config_cls)}",
    )
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one key of this stage's section (repeatable)")
    return parser.parse_args(argv)


def stage_main(name: str, config_cls: type, run: Callable[[Any], dict], argv: list[str] | None = None) -> dict:
    """Load config, run the stage, write its metrics; the same from a terminal, DVC or Prefect."""
    setup_logging()
    args = parse_args(name, config_cls, argv)
    cfg = load_stage_config(config_cls, name, args.params, args.overrides)
    log.info("stage %s config: %s", name, to_dict(cfg))
    started = time.time()
    metrics = run(cfg)
    if launch.rank() == 0:
        out = stage_dir(name)
        write_json(out / "metrics.json", metrics)
        write_json(out / "run.json", {"stage": name, "config": to_dict(cfg), "started": started,
                                      "wall_s": round(time.time() - started, 2)})
    log.info("stage %s done in %.1f s", name, time.time() - started)
    return metrics
