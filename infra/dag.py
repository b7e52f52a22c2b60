"""The stage DAG as dvc.yaml declares it: who feeds whom, read, never re-declared."""

from __future__ import annotations

from pathlib import Path


def load_stages(dvc_yaml: str | Path = "dvc.yaml") -> dict[str, dict]:
    """Every stage of ``dvc_yaml`` as DVC resolves it (``foreach`` expanded to ``NAME@ITEM``,
    ``${...}`` filled from params.yaml), in file order: ``{stage: {"deps": [path, ...],
    "outs": [path, ...], "cached": [path, ...]}}``. ``cached`` are the ``outs`` entries DVC
    hashes and caches (artifacts, not metrics or plots)."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    path = Path(dvc_yaml).resolve()
    with Repo(str(path.parent)) as repo:
        stages = [st for st in repo.index.stages if Path(st.path).resolve() == path]
        return {st.name: {
            "deps": [d.def_path for d in st.deps if not isinstance(d, ParamsDependency)],
            "outs": [o.def_path for o in st.outs],
            "cached": [o.def_path for o in st.outs if o.use_cache and not (o.metric or o.plot)],
        } for st in stages}


def stage_outputs(stage: dict) -> list[str]:
    """Every path a stage writes (outs, metrics and plots)."""
    return stage["outs"]


def stage_graph(dvc_yaml: str | Path = "dvc.yaml") -> dict[str, list[str]]:
    """``{stage: [upstream stages]}``: a stage depends on another when one of its deps is, lies
    inside or holds one of the other's outputs (as DVC links them). Keys are in a topological
    order."""
    stages = load_stages(dvc_yaml)
    producer = {out: name for name, st in stages.items() for out in stage_outputs(st)}
    graph: dict[str, list[str]] = {}
    for name, st in stages.items():
        ups = {producer[o] for dep in st["deps"] for o in producer
               if _overlap(dep, o) and producer[o] != name}
        graph[name] = sorted(ups)
    return _topological(graph)


def _overlap(a: str, b: str) -> bool:
    a, b = a.rstrip("/"), b.rstrip("/")
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


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
    return stage["cached"]
