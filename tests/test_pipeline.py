"""The pipeline's DAG runner on a toy DVC project: foreach stages, side-by-side stages
sharing the cores with a thread count fixed for the run, and a failing stage stopping what
depends on it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from infra.dag import load_stages, stage_graph
from servers import prefect_server  # noqa: F401  (a pytest fixture: one server for the toy flows)

# A stage that records when it ran and how many threads it was given, then writes its out.
STAGE_SCRIPT = """
import json, os, sys, time
name, out = sys.argv[1], sys.argv[2]
if name == "broken":
    time.sleep(3)  # the stages started beside it are running when it fails
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


def _run_flow(project: Path, tmp_path: Path, api: str) -> str:
    """The toy flow on ``project`` against the Prefect server at ``api``: its RESULT line."""
    env = {**os.environ, "R1FLOW_PARALLEL": "2", "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_API_URL": api,
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}
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


def test_independent_stages_run_side_by_side_sharing_the_cores(tmp_path, prefect_server):
    project = _project(tmp_path, DVC_YAML)
    assert _run_flow(project, tmp_path, prefect_server) == "RESULT ok"
    ran = {p.stem: json.loads(p.read_text()) for p in (project / "out").glob("*.json")}
    assert sorted(ran) == ["a", "b_x", "b_y", "c"]
    # Two at a time: a and b@x start together, b@y when one of them ends, c after all three.
    first, second = sorted(["a", "b_x", "b_y"], key=lambda s: ran[s]["start"])[:2]
    assert ran[second]["start"] < ran[first]["end"]
    assert ran["c"]["start"] >= max(ran[s]["end"] for s in ("a", "b_x", "b_y"))
    cores = len(os.sched_getaffinity(0))
    # Two at a time, so every stage gets half the cores, fixed for the run: c too, though alone.
    assert {r["threads"] for r in ran.values()} == {str(max(1, cores // 2))}
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    assert sorted(lock["stages"]) == ["a", "b@x", "b@y", "c"]  # concurrent repros kept every entry


def test_a_failed_stage_stops_its_dependents_and_the_rest_finishes(tmp_path, prefect_server):
    broken = {"stages": {**DVC_YAML["stages"],
                         "a": {"cmd": "python stage.py broken out/a.json", "deps": ["stage.py"], "outs": ["out/a.json"]}}}
    project = _project(tmp_path, broken)
    result = _run_flow(project, tmp_path, prefect_server)
    assert result.startswith("RESULT failed") and "repro --single-item a`" in result, result
    assert not (project / "out" / "c.json").exists()  # downstream of the failure: never started
    # a stage started beside the failing one finishes (which of b@x, b@y started first is a race)
    assert (project / "out" / "b_x.json").exists() or (project / "out" / "b_y.json").exists()


def test_cores_go_first_to_the_stages_heading_the_longest_chains():
    from infra.schedule import heights, threads_per_stage, width

    graph = {"base": [], "student": [], "rl": ["base"], "sft": ["rl"], "report": ["sft", "student"]}
    assert heights(graph) == {"base": 4, "rl": 3, "sft": 2, "student": 2, "report": 1}
    assert width(graph, list(graph)) == 2 and width(graph, ["rl", "sft"]) == 1
    assert threads_per_stage(graph, list(graph), cores=8, limit=8) == 4
    assert threads_per_stage(graph, ["rl", "sft"], cores=8, limit=8) == 8  # a chain: every core
    assert threads_per_stage(graph, list(graph), cores=2, limit=4) == 1
    assert threads_per_stage(graph, list(graph), cores=1, limit=4) == 1  # never below one


def test_the_scheduler_starts_the_highest_first_and_gpu_stages_on_a_free_set():
    import threading

    from infra.launch import LaunchSettings
    from infra.schedule import GpuSets, Scheduler

    graph = {"base": [], "student": [], "rl": ["base"], "sft": ["rl"], "report": ["sft", "student"]}
    settings = LaunchSettings(gpus=1, training_stages=["rl", "sft"])
    scheduler = Scheduler(graph, list(graph), limit=2, cores=2, gpus=GpuSets(settings, gpus=["0"]))
    started: list[tuple[str, list | None]] = []
    release = {name: threading.Event() for name in graph}

    def stage(name):
        with scheduler.slot(name) as (threads, gpus):
            started.append((name, gpus))
            release[name].wait(5)

    def wait_until(condition):
        for _ in range(100):
            if condition():
                return
            threading.Event().wait(0.05)
        raise AssertionError(f"timed out; started {started}")

    holder = threading.Thread(target=stage, args=("student",))
    holder.start()
    wait_until(lambda: started)
    with scheduler.slot("rl") as (threads, gpus):  # the second slot, and the one GPU set
        assert threads == 1 and gpus == ["0"]
        workers = [threading.Thread(target=stage, args=(n,)) for n in ("report", "sft", "base")]
        for w in workers:
            w.start()
        wait_until(lambda: len(scheduler._waiting) == 3)
        started.clear()
        release["student"].set()  # one slot for three waiting
        wait_until(lambda: started)
        assert started == [("base", None)]  # base heads the longest chain
        release["base"].set()
        wait_until(lambda: len(started) == 2)
        assert started[1] == ("report", None)  # sft (higher) needs the held GPU set: report passes it
    wait_until(lambda: len(started) == 3)  # rl ended: sft takes its set
    for event in release.values():
        event.set()
    for w in [holder, *workers]:
        w.join(5)
    assert started[2] == ("sft", ["0"])


def _md5(path: Path) -> str:
    import hashlib

    return hashlib.md5(path.read_bytes()).hexdigest()


# A stage whose result depends on its CPU threads (torch splits a long sum among them), running
# long enough that the stage beside it ends first: under a re-division of the cores it would
# have changed threads mid-run.
SUM_STAGE = """
import os, sys, time, torch
out = sys.argv[1]
g = torch.Generator().manual_seed(0)
x = torch.randn(4_000_000, generator=g, dtype=torch.float32)
total, until = torch.zeros(()), time.time() + 3
while time.time() < until:
    total = total + x.sum()
os.makedirs(os.path.dirname(out), exist_ok=True)
open(out, "wb").write(x.sum().numpy().tobytes() + str(torch.get_num_threads()).encode())
"""


def test_a_stages_output_does_not_depend_on_what_ran_beside_it(tmp_path, prefect_server):
    project = _project(tmp_path, {"stages": {
        "sums": {"cmd": f"{sys.executable} sums.py out/sums.bin", "deps": ["sums.py"], "outs": ["out/sums.bin"]},
        "short": {"cmd": "python stage.py short out/short.json 0.2", "deps": ["stage.py"], "outs": ["out/short.json"]},
    }})
    (project / "sums.py").write_text(SUM_STAGE)
    assert _run_flow(project, tmp_path, prefect_server) == "RESULT ok"
    in_pipeline = project / "out" / "sums.bin"
    threads = in_pipeline.read_bytes()[4:].decode()
    assert threads == str(max(1, len(os.sched_getaffinity(0)) // 2))  # fixed at the start: 2 side by side
    first = _md5(in_pipeline)
    # Alone, with the threads it ran with: the same bytes.
    env = {**os.environ, "OMP_NUM_THREADS": threads}
    subprocess.run([sys.executable, "sums.py", "alone/sums.bin"], cwd=project, env=env, check=True)
    assert _md5(project / "alone" / "sums.bin") == first
    if len(os.sched_getaffinity(0)) >= 2:  # the test can fail: other threads, other sums
        env["OMP_NUM_THREADS"] = str(int(threads) + 1)
        subprocess.run([sys.executable, "sums.py", "other/sums.bin"], cwd=project, env=env, check=True)
        assert (project / "other" / "sums.bin").read_bytes()[:4] != in_pipeline.read_bytes()[:4]
