"""The ``r1flow`` command.

    r1flow stage NAME [--params params.yaml] [--set key=value ...]   run one stage
    r1flow stage NAME --help                                        its keys and defaults
    r1flow run [--params params.yaml]                              the embedded pipeline
    r1flow stages                                                  list the stages
"""

from __future__ import annotations

import importlib
import sys

# Stage name -> module with main(argv); the same name is the params.yaml section and
# the artifacts/ folder.
STAGES = {
    "base": "model.stages.base",
    "r1_zero": "model.stages.r1_zero",
    "evaluate": "model.stages.evaluate",
}
PIPELINE = ["base", "r1_zero", "evaluate"]


def run_stage(name: str, argv: list[str]) -> dict:
    """Import the stage module and call its ``main``; bad input ends with a one-line error."""
    from data.schema import DatasetError
    from infra.config import ConfigError

    if name not in STAGES:
        raise SystemExit(f"unknown stage {name!r}; stages: {', '.join(STAGES)}")
    try:
        return importlib.import_module(STAGES[name]).main(argv)
    except (ConfigError, DatasetError) as err:
        raise SystemExit(f"r1flow stage {name}: {err}") from None


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv.pop(0) if argv else "--help"
    if command == "stage" and argv:
        run_stage(argv[0], argv[1:])
    elif command == "stages":
        print("\n".join(STAGES))
    elif command == "run":
        for name in PIPELINE:
            run_stage(name, argv)
        from model.stages.evaluate import print_table

        print_table()
    else:
        print(__doc__)
        raise SystemExit(0 if command in ("-h", "--help") else 2)


if __name__ == "__main__":
    main()
