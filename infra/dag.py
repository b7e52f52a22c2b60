"""The stage DAG as dvc.yaml declares it: who feeds whom, read, never re-declared."""

from __future__ import annotations

from pathlib import Path

import yaml


def _paths(entries: list) -> list[str]:
    """Paths of a deps/outs/metrics/plots list whose items are strings or one-key dicts."""
    return [e if isinstance(e, str) else next(iter(e)) for e in entries or []]


def load_stages(dvc_yaml: str | Path = "dvc.yaml") -> dict[str, dict]:
    """The ``stages`` mapping of dvc.yaml."""
    return (yaml.safe_load(Path(dvc_yaml).read_text()) or {}).get("stages", {})


def stage_outputs(stage: dict) -> list[str]:
    """Every path a stage writes (outs, metrics and plots)."""
    return [p for kind in ("outs", "metrics", "plots") for p in _paths(stage.get(kind))]


def stage_graph(dvc_yaml: str | Path = "dvc.yaml") -> dict[str, list[str]]:
    """``{stage: [upstream stages]}``: a stage depends on another when one of its deps is
    (or lies inside) one of the other's outputs. Keys are in a topological order."""
    stages = load_stages(dvc_yaml)
    producer = {out: name for name, st in stages.items() for out in stage_outputs(st)}
    graph: dict[str, list[str]] = {}
    for name, st in stages.items():
        ups = {producer[o] for dep in _paths(st.get("deps")) for o in producer
               if (dep == o or dep.startswith(o.rstrip("/") + "/")) and producer[o] != name}
        graph[name] = sorted(ups)
    return _topological(graph)


def _topological(graph: dict[str, list[str]]) -> dict[str, list[str]]:
    ordered: dict[str, list[str]] = {}
    pending = dict(graph)
    while pending:
        ready = [s for s, ups in pending.items() if all(u in ordered for u in ups)]
        if not ready:
            raise ValueError(f"dvc.yaml: the stages {sorted(pending)} form a cycle")
        for s in ready:
            ordered[s] = pending.pop(s)
    return ordered


def cached_outs(stage: dict) -> list[str]:
    """Outputs whose content DVC hashes and caches (artifacts, not measurements)."""
    out = []
    for entry in stage.get("outs") or []:
        path, opts = (entry, {}) if isinstance(entry, str) else next(iter(entry.items()))
        if (opts or {}).get("cache", True):
            out.append(path)
    return out
