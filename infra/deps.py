"""The code each stage of dvc.yaml depends on: its import closure, kept in dvc.yaml.

DVC re-runs a stage when one of its ``deps`` changes, and restores it from its run cache
when none did; a code file missing from ``deps`` makes a stale output count as up to date.
So every stage's code deps are exactly the project files its process imports (the stage
module, ``infra.stage`` that runs it and ``infra.launch`` that launches it, and everything
they import, imports inside functions included), plus the files they read at run time
(:data:`RUNTIME_FILES`), less the modules that only report (:data:`REPORTING`). ``python -m infra.deps --fix`` rewrites the code entries of
dvc.yaml from the code (ruamel round trip: comments stay); tests/test_deps.py fails when
they drift.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

PACKAGES = ("data", "model", "infra", "flows", "tasks")
# The modules every stage process runs besides its own (flows/cli.py only dispatches).
RUNNER = ("infra.stage", "infra.launch")
# Modules that only report what a stage did (MLflow runs and models, logs, progress lines) and
# never change its outputs: not followed, so a change to how runs are tracked re-runs nothing.
REPORTING = ("infra.tracking", "model.mlflow_model", "infra.steplog", "infra.progress", "infra.logs")
# Files a module reads when it runs, not by import: its code deps too.
RUNTIME_FILES = {
    "infra/launch.py": ["infra/launch.yaml", "infra/ds_configs"],
    "model/rewards/sandbox.py": ["model/rewards/harness.py"],
}


def _module_file(root: Path, name: str) -> Path | None:
    for path in (root / (name.replace(".", "/") + ".py"), root / name.replace(".", "/") / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imported_names(root: Path, path: Path) -> set[str]:
    """Every module name ``path`` imports anywhere (module level or inside functions),
    ``from a import b`` counted as both ``a`` and ``a.b``."""
    rel = path.relative_to(root).with_suffix("")
    package = rel.parts[:-1] if rel.name != "__init__" else rel.parts[:-1]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = list(package[:len(package) - node.level + 1])
                base = ".".join(parent + ([node.module] if node.module else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def import_closure(modules: list[str], root: str | Path = ".") -> list[str]:
    """Project files (relative paths, sorted) that importing ``modules`` may run: the modules,
    their packages' ``__init__.py`` and, transitively, every project module they import, plus
    the :data:`RUNTIME_FILES` of each. Imports of other distributions and :data:`REPORTING`
    modules are not followed."""
    root = Path(root)
    seen: set[Path] = set()
    todo = list(modules)
    while todo:
        name = todo.pop()
        if name.split(".")[0] not in PACKAGES or name in REPORTING:
            continue
        path = _module_file(root, name)
        if path is None or path in seen:
            continue
        seen.add(path)
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # their __init__ run first
        todo.extend(_imported_names(root, path))
    files = {p.relative_to(root).as_posix() for p in seen}
    files.update(extra for f in list(files) for extra in RUNTIME_FILES.get(f, []))
    return sorted(files)


def stage_code(stage: str, root: str | Path = ".") -> list[str]:
    """The code deps of ``stage`` (a flows.cli STAGES name, without ``@ITEM``)."""
    from flows.cli import STAGES

    return import_closure([STAGES[stage], *RUNNER], root)


def is_code(path: str) -> bool:
    """Whether a dvc.yaml dep is code (managed here) rather than data (artifacts/...)."""
    runtime = {f for files in RUNTIME_FILES.values() for f in files}
    return path in runtime or (path.split("/")[0] in PACKAGES and path.endswith(".py"))


def drift(dvc_yaml: str | Path = "dvc.yaml") -> dict[str, dict[str, list[str]]]:
    """``{stage: {"missing": [...], "extra": [...]}}`` for each stage of ``dvc_yaml`` whose
    code deps differ from :func:`stage_code` (empty when none does). Raises ValueError for a
    code entry that is a folder (list its files)."""
    from infra.config import load_yaml

    path = Path(dvc_yaml)
    stages = (load_yaml(path.read_text()) or {}).get("stages", {})
    out = {}
    for name, spec in stages.items():
        body = spec.get("do", spec)
        listed = {d for d in body.get("deps", []) if is_code(d)}
        folders = [d for d in body.get("deps", []) if d.split("/")[0] in PACKAGES and not is_code(d)]
        if folders:
            raise ValueError(f"{path}: stage {name} depends on code folder(s) {folders}: list their files "
                             "(python -m infra.deps --fix)")
        wanted = set(stage_code(name, path.parent))
        if listed != wanted:
            out[name] = {"missing": sorted(wanted - listed), "extra": sorted(listed - wanted)}
    return out


def fix(dvc_yaml: str | Path = "dvc.yaml") -> list[str]:
    """Rewrite the code deps of every stage of ``dvc_yaml`` to :func:`stage_code`, data deps
    first and in their order, comments kept; returns the stages changed."""
    from ruamel.yaml import YAML

    path = Path(dvc_yaml)
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 120
    yaml.indent(mapping=2, sequence=4, offset=2)
    doc = yaml.load(path.read_text())
    changed = []
    for name, spec in doc["stages"].items():
        body = spec["do"] if "do" in spec else spec
        deps = list(body.get("deps", []))
        data = [d for d in deps if not is_code(d) and d.split("/")[0] not in PACKAGES]
        new = data + stage_code(name, path.parent)
        if new != deps:
            body["deps"] = new
            changed.append(name)
    with path.open("w") as f:
        yaml.dump(doc, f)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.deps", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fix", action="store_true", help="rewrite dvc.yaml's code deps")
    parser.add_argument("--dvc-yaml", default="dvc.yaml")
    args = parser.parse_args(argv)
    if args.fix:
        print("rewrote the code deps of:", ", ".join(fix(args.dvc_yaml)) or "nothing")
        return 0
    found = drift(args.dvc_yaml)
    for name, diff in found.items():
        print(f"{name}: missing {diff['missing']}, extra {diff['extra']}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
