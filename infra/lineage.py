"""Lineage of a stage run: git revision, params hash and DVC content hashes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

from infra.proc import CommandError, run

GIT_IDENTITY = ["-c", "user.name=r1flow", "-c", "user.email=r1flow@localhost"]


def git(*args: str, cwd: str | Path) -> str:
    """``git ARGS`` in ``cwd``; stdout stripped. Commits fall back to an r1flow identity."""
    prefix = GIT_IDENTITY if args and args[0] == "commit" and not _has_identity(cwd) else []
    return run(["git", *prefix, *args], cwd=cwd).strip()


def _has_identity(cwd: str | Path) -> bool:
    try:
        return bool(run(["git", "config", "user.email"], cwd=cwd).strip())
    except CommandError:
        return False


def params_hash(section: Any) -> str:
    """sha256 of the canonical JSON of a params section (the same dict, the same hash)."""
    return hashlib.sha256(json.dumps(section, sort_keys=True, default=str).encode()).hexdigest()


def stage_lock(workspace: str | Path, stage: str) -> dict[str, dict[str, str]]:
    """``{"deps": {path: md5}, "outs": {path: md5}}`` of ``stage`` from dvc.lock (empty if none)."""
    lock_path = Path(workspace) / "dvc.lock"
    if not lock_path.is_file():
        return {"deps": {}, "outs": {}}
    entry = (yaml.safe_load(lock_path.read_text()) or {}).get("stages", {}).get(stage, {})
    return {kind: {item["path"]: item.get("md5", "") for item in entry.get(kind, [])}
            for kind in ("deps", "outs")}


def lineage_tags(workspace: str | Path, stage: str) -> dict[str, str]:
    """MLflow tags naming the DVC md5 of every input and output of ``stage``."""
    lock = stage_lock(workspace, stage)
    tags = {f"dvc.dep.{path}": md5 for path, md5 in lock["deps"].items()}
    tags.update({f"dvc.out.{path}": md5 for path, md5 in lock["outs"].items()})
    return tags
