"""The pipeline's DAG runner on a toy DVC project: foreach stages, side-by-side stages
sharing the cores, and a failing stage stopping what depends on it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from infra.dag import load_stages, stage_graph

# A stage that records when it ran and how many threads it was given, then writes its out.
STAGE_SCRIPT = """
import json, os, sys, time
name, out = sys.argv[1], sys.argv[2]
if name == "broken":
    sys.exit("broken on purpose")
start = time.time()
time.sleep(float(sys.argv[3]) if len(sys.argv) > 3 else 1.5)
os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
record = {"start": start, "end": time.time(), "threads": os.environ.get("OMP_NUM_THREADS")}
open(out, "w").write(json.dumps(record))
"""

DVC_YAML = {"stages": {
    "a": {"cmd": "python stage.py a out/a.json", "deps": ["stage.py"], "outs": ["out/a.json"]},
    "b": {"foreach": "${sizes}", "do": {"cmd": "python stage.py b@${key} out/b_${key}.json",
                                         "deps": ["stage.py"], "outs": ["out/b_${key}.json"]}},
    "c": {"cmd": "python stage.py c out/c.json 0.1", "deps": ["out/a.json", "out/b_x.json", "out/b_y.json"],
          "outs": ["out/c.json"]},
}}

FLOW = """
import json, sys
from prefect import flow
from flows.pipeline import run_dag

@flow
def toy():
    return run_dag(sys.argv[1], None, None)

try:
    toy()
    print("RESULT ok")
except Exception as err:
    print("RESULT failed:", err)
"""


def _project(tmp_path: Path, dvc_yaml: dict) -> Path:
    project = tmp_path / "toy"
    project.mkdir()
    (project / "stage.py").write_text(STAGE_SCRIPT)
    (project / "dvc.yaml").write_text(yaml.safe_dump(dvc_yaml, sort_keys=False))
    (project / "params.yaml").write_text(yaml.safe_dump({"sizes": {"x": 1, "y": 2}}))
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=project, check=True)
    return project


def _run_flow(project: Path, tmp_path: Path) -> str:
    env = {**os.environ, "R1FLOW_PARALLEL": "2", "PREFECT_HOME": str(tmp_path / "prefect"),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}
    env.pop("PREFECT_API_URL", None)
    script = tmp_path / "flow.py"
    script.write_text(FLOW)
    proc = subprocess.run([sys.executable, str(script), str(project)], cwd=Path(__file__).resolve().parents[1],
                          env=env, capture_output=True, text=True, timeout=300)
    result = [line for line in proc.stdout.splitlines() if line.startswith("RESULT")]
    assert result, proc.stdout[-3000:] + proc.stderr[-3000:]
    return result[0]


def test_foreach_stages_are_expanded_with_their_edges(tmp_path):
    project = _project(tmp_path, DVC_YAML)
    stages = load_stages(project / "dvc.yaml")
    assert list(stages) == ["a", "b@x", "b@y", "c"]
    assert stages["b@y"]["outs"] == ["out/b_y.json"]
    assert stage_graph(project / "dvc.yaml") == {"a": [], "b@x": [], "b@y": [], "c": ["a", "b@x", "b@y"]}


def test_independent_stages_run_side_by_side_sharing_the_cores(tmp_path):
    project = _project(tmp_path, DVC_YAML)
    assert _run_flow(project, tmp_path) == "RESULT ok"
    ran = {p.stem: json.loads(p.read_text()) for p in (project / "out").glob("*.json")}
    assert sorted(ran) == ["a", "b_x", "b_y", "c"]
    # Two at a time: a and b@x start together, b@y when one of them ends, c after all three.
    first, second = sorted(["a", "b_x", "b_y"], key=lambda s: ran[s]["start"])[:2]
    assert ran[second]["start"] < ran[first]["end"]
    assert ran["c"]["start"] >= max(ran[s]["end"] for s in ("a", "b_x", "b_y"))
    cores = len(os.sched_getaffinity(0))
    assert ran["a"]["threads"] == str(max(1, cores // 2))  # three ready, two at a time
    assert ran["c"]["threads"] == str(cores)  # alone
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    assert sorted(lock["stages"]) == ["a", "b@x", "b@y", "c"]  # concurrent repros kept every entry


def test_a_failed_stage_stops_its_dependents_and_the_rest_finishes(tmp_path):
    broken = {"stages": {**DVC_YAML["stages"],
                         "a": {"cmd": "python stage.py broken out/a.json", "deps": ["stage.py"], "outs": ["out/a.json"]}}}
    project = _project(tmp_path, broken)
    result = _run_flow(project, tmp_path)
    assert result.startswith("RESULT failed") and "repro --single-item a`" in result, result
    assert not (project / "out" / "c.json").exists()  # downstream of the failure: never started
    assert (project / "out" / "b_x.json").exists()  # already running when a failed: finished


def test_cores_go_first_to_the_stages_heading_the_longest_chains():
    from flows.pipeline import allot, heights

    graph = {"base": [], "student": [], "rl": ["base"], "sft": ["rl"], "report": ["sft", "student"]}
    assert heights(graph) == {"base": 4, "rl": 3, "sft": 2, "student": 2, "report": 1}
    assert allot(["base"], 2) == {"base": 2}
    assert allot(["base", "student"], 3) == {"base": 2, "student": 1}
    assert allot(["a", "b", "c"], 2) == {"a": 1, "b": 1, "c": 1}  # never below one


def test_a_stage_follows_its_thread_allotment(tmp_path, monkeypatch):
    import torch

    from infra import launch

    before = torch.get_num_threads()
    allotment = tmp_path / "stage"
    allotment.write_text("1\n")
    monkeypatch.setenv(launch.THREADS_ENV, str(allotment))
    try:
        assert launch.follow_threads() == 1 and torch.get_num_threads() == 1
        allotment.write_text("2\n")
        stamp = allotment.stat().st_mtime_ns + 1_000_000_000
        os.utime(allotment, ns=(stamp, stamp))  # a rewrite within the clock's resolution
        assert launch.follow_threads() == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
