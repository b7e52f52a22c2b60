"""The product as users drive it, against real servers on 127.0.0.1.

A moto S3 server (DVC remote and MLflow artifact store), an MLflow server and a Prefect
server are started; `r1flow serve` registers the deployments; two pipeline runs are
created at once through the REST call the UI's Run button makes, each with parameter
overrides. Then: MLflow holds a parent run and one child per stage with step metrics,
the bucket holds every output's DVC object, each run's lineage is on its own
`runs/...` branch, and `r1flow reproduce` re-creates r1_zero bit for bit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from browser import browser, chromium, click, element_with_text, screenshot, wait_for  # noqa: F401
from servers import mlflow_server, moto_s3, prefect_server, server_env, start_server, stop_server  # noqa: F401
from presets import SMALL

ROOT = Path(__file__).resolve().parents[1]
# The UI runs exercise the orchestration on the R1-Zero branch; test_full_pipeline runs every stage.
STAGES = ["base", "r1_zero", "evaluate@base", "evaluate@r1_zero"]
TERMINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")  # the flow-run states a run ends in


def _request(method: str, url: str, body: dict | None = None, attempts: int = 5) -> dict:
    """One Prefect API call, retried on 502/503 as Prefect's own client does
    (PREFECT_CLIENT_MAX_RETRIES): a busy server answers 503 when its database is locked."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    for attempt in range(attempts):
        try:
            with opener.open(req, timeout=30) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            if error.code not in (502, 503) or attempt == attempts - 1:
                raise
            time.sleep(2 ** attempt)


def make_project(dest: Path, params: dict) -> Path:
    """A fresh git repository holding this checkout's files (as a user's clone would)."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                           cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            (dest / name).write_bytes((ROOT / name).read_bytes())
    (dest / "params.yaml").write_text(yaml.safe_dump(params))
    ident = ["-c", "user.name=test", "-c", "user.email=test@localhost"]
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    subprocess.run(["git", "add", "-A"], cwd=dest, check=True)
    subprocess.run(["git", *ident, "commit", "-qm", "r1flow"], cwd=dest, check=True)
    return dest


@pytest.fixture(scope="module")
def served(tmp_path_factory, moto_s3, mlflow_server, prefect_server):
    """`r1flow serve` in a fresh project, wired to the three servers."""
    project = make_project(tmp_path_factory.mktemp("project"), SMALL)
    env = server_env({**moto_s3, "PREFECT_API_URL": prefect_server, "MLFLOW_TRACKING_URI": mlflow_server,
                      "R1FLOW_DVC_REMOTE": f"s3://{moto_s3.bucket}/dvc", "OMP_NUM_THREADS": "1",
                      "PREFECT_HOME": str(tmp_path_factory.mktemp("serve_home")),
                      "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})
    url = f"{prefect_server}/deployments/name/r1-pipeline/r1-pipeline"
    proc = start_server("r1flow serve", [sys.executable, "-m", "flows.cli", "serve", "--limit", "2"],
                        env, project / "serve.log", url, timeout=120)
    # start_server runs the command in the log's folder: the project root.
    try:
        yield {"project": project, "env": env, "api": prefect_server, "deployment": _request("GET", url)["id"],
               "mlflow": mlflow_server, "s3": moto_s3}
    finally:
        stop_server(proc)


@pytest.fixture(scope="module")
def ui_runs(served):
    """Two runs created at once, as the UI's Run button does, with parameter overrides."""
    api, dep = served["api"], served["deployment"]
    created = [_request("POST", f"{api}/deployments/{dep}/create_flow_run",
                        {"parameters": {"seed": seed, "rl_steps": 4, "stages": STAGES}}) for seed in (1, 2)]
    ids = [run["id"] for run in created]
    deadline = time.time() + 900
    states = {}
    while time.time() < deadline:
        states = {i: _request("GET", f"{api}/flow_runs/{i}")["state"]["type"] for i in ids}
        if all(s in TERMINAL for s in states.values()):
            break
        time.sleep(2)
    log = (served["project"] / "serve.log").read_text(errors="replace")[-8000:]
    assert all(s == "COMPLETED" for s in states.values()), f"{states}\n{log}"
    return [_request("GET", f"{api}/flow_runs/{i}") for i in ids]


def _mlflow_client(served):
    from mlflow.tracking import MlflowClient

    return MlflowClient(served["mlflow"])


def _parent_and_children(served, flow_run_id):
    client = _mlflow_client(served)
    exps = [e.experiment_id for e in client.search_experiments()]
    (parent,) = client.search_runs(exps, f"tags.`prefect.flow_run_id` = '{flow_run_id}'")
    children = client.search_runs(exps, f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    return parent, {c.info.run_name: c for c in children}


def _branch_file(project: Path, branch: str, path: str) -> str:
    return subprocess.run(["git", "show", f"{branch}:{path}"], cwd=project, capture_output=True,
                          text=True, check=True).stdout


def test_ui_runs_are_tracked_in_mlflow_with_step_metrics(served, ui_runs):
    for flow_run in ui_runs:
        parent, children = _parent_and_children(served, flow_run["id"])
        assert parent.info.status == "FINISHED"
        assert parent.data.tags["prefect.flow_run_url"].endswith(flow_run["id"])
        assert sorted(children) == sorted(STAGES)
        history = _mlflow_client(served).get_metric_history(children["r1_zero"].info.run_id, "reward")
        assert sorted({m.step for m in history}) == [1, 2, 3, 4]  # the override (4 steps), streamed
        tags = children["r1_zero"].data.tags
        assert tags["r1flow.lineage_commit"] and tags["r1flow.params_hash"]
        assert tags["dvc.out.artifacts/r1_zero/model"] and tags["dvc.dep.artifacts/base/model"]


def test_lineage_branches_are_distinct_and_hold_the_overrides(served, ui_runs):
    project = served["project"]
    locks = []
    for flow_run in ui_runs:
        parent, _ = _parent_and_children(served, flow_run["id"])
        branch = parent.data.tags["r1flow.branch"]
        params = yaml.safe_load(_branch_file(project, branch, "params.yaml"))
        assert params["r1_zero"]["steps"] == 4 and params["r1_zero"]["seed"] == flow_run["parameters"]["seed"]
        locks.append(yaml.safe_load(_branch_file(project, branch, "dvc.lock")))
        # No shared-file damage: every output in the run's workspace still matches its lock.
        workspace = project / ".r1flow" / "workspaces" / branch.removeprefix("runs/")
        status = subprocess.run([sys.executable, "-m", "dvc", "status", *STAGES], cwd=workspace, capture_output=True,
                                text=True, env=served["env"])
        assert "up to date" in status.stdout, status.stdout + status.stderr
    models = [lock["stages"]["r1_zero"]["outs"] for lock in locks]
    assert models[0] != models[1]  # two seeds, two models: nothing shared by accident


def test_every_output_is_in_the_s3_remote(served, ui_runs):
    s3 = served["s3"]
    keys = set()
    for page in s3.client().get_paginator("list_objects_v2").paginate(Bucket=s3.bucket, Prefix="dvc/"):
        keys |= {obj["Key"] for obj in page.get("Contents", [])}
    parent, _ = _parent_and_children(served, ui_runs[0]["id"])
    lock = yaml.safe_load(_branch_file(served["project"], parent.data.tags["r1flow.branch"], "dvc.lock"))
    for stage in lock["stages"].values():
        for out in stage["outs"]:
            md5 = out["md5"]
            assert f"dvc/files/md5/{md5[:2]}/{md5[2:]}" in keys, out["path"]


def test_reproduce_gives_identical_outputs(served, ui_runs):
    _, children = _parent_and_children(served, ui_runs[0]["id"])
    run_id = children["r1_zero"].info.run_id
    proc = subprocess.run([sys.executable, "-m", "flows.cli", "reproduce", run_id], cwd=served["project"],
                          env=served["env"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(proc.stdout[: proc.stdout.rindex("}") + 1])
    assert set(report) == {"artifacts/r1_zero/model", "artifacts/r1_zero/prompts.jsonl",
                           "artifacts/r1_zero/samples.jsonl"}
    assert all(entry["match"] and entry["expected"] for entry in report.values())


def test_the_run_graph_is_the_stage_dag_and_tasks_are_tagged_by_kind(served, ui_runs):
    api = served["api"]
    tasks = _request("POST", f"{api}/task_runs/filter",
                     {"flow_runs": {"id": {"any_": [ui_runs[0]["id"]]}}, "limit": 200})
    by_name = {t["name"]: t for t in tasks}
    ids = {t["id"]: t["name"] for t in tasks}

    def upstream(stage):
        return {ids.get(i["id"]) for i in by_name[stage]["task_inputs"].get("wait_for", [])}

    assert upstream("r1_zero") == {"base"} and upstream("evaluate@r1_zero") == {"r1_zero"}
    assert upstream("base") == set() and upstream("evaluate@base") == {"base"}
    assert "r1flow-train" in by_name["r1_zero"]["tags"] and "r1flow-sample" in by_name["evaluate@base"]["tags"]


def _form_property(driver, name: str):
    """The run form's field of flow parameter ``name`` (all of r1_pipeline's are optional)."""
    from selenium.webdriver.common.by import By

    label = driver.find_element(By.XPATH, "//span[contains(@class, 'schema-form-property__label') and "
                                          f"normalize-space(.)='{name} (Optional)']")
    return label.find_element(By.XPATH, "./ancestor::div[contains(@class, 'schema-form-property ')][1]")


def _fill(driver, name: str, value) -> None:
    """Set flow parameter ``name`` in the run form as a person does: pick its type (int, list)
    instead of None, then type the number, or add one item per list entry."""
    from selenium.webdriver.common.by import By

    kind = "list" if isinstance(value, list) else "int"
    click(driver, wait_for(f"the {kind} choice of {name}", lambda: element_with_text(
        _form_property(driver, name), kind, tag="button"), driver))
    if kind == "int":
        field = wait_for(f"the {name} input", lambda: _form_property(driver, name).find_element(
            By.CSS_SELECTOR, ".schema-form-property__fields input"), driver)
        field.send_keys(str(value))
        return
    for count, item in enumerate(value, start=1):
        click(driver, wait_for("Add item", lambda: element_with_text(_form_property(driver, name), "Add item",
                                                                     tag="button"), driver))
        items = wait_for(f"item {count} of {name}", lambda: (
            found if len(found := _form_property(driver, name).find_elements(By.TAG_NAME, "textarea")) >= count
            else None), driver)
        items[count - 1].send_keys(item)


def test_a_run_started_from_the_ui_form_completes_and_its_graph_is_the_stage_dag(served, ui_runs, browser):
    """In chromium: the deployment list, the r1-pipeline deployment, Run > Custom run, three
    parameters changed, Submit; the run's page then shows it Completed, and the graph the UI
    draws (the graph-v2 API) has the stage DAG's edges."""
    from selenium.webdriver.common.by import By

    ui = served["api"].removesuffix("/api")
    browser.get(f"{ui}/deployments")
    click(browser, wait_for("the r1-pipeline deployment", lambda: browser.find_element(By.LINK_TEXT, "r1-pipeline"),
                            browser))
    click(browser, wait_for("the Run button", lambda: element_with_text(browser, "Run", tag="button"), browser))
    click(browser, wait_for("Custom run", lambda: element_with_text(browser, "Custom run"), browser))
    wait_for("the run form", lambda: _form_property(browser, "seed"), browser)
    # The first UI run's settings: its stages come back from DVC's run cache, so this run is quick.
    for name, value in (("seed", 1), ("rl_steps", 4), ("stages", STAGES)):
        _fill(browser, name, value)
    screenshot(browser, "prefect-custom-run-form")
    api, dep = served["api"], served["deployment"]
    runs = {"deployments": {"id": {"any_": [dep]}}}
    before = {r["id"] for r in _request("POST", f"{api}/flow_runs/filter", runs)}
    click(browser, element_with_text(browser, "Submit", tag="button"))
    run = wait_for("the submitted run", lambda: next(
        (r for r in _request("POST", f"{api}/flow_runs/filter", runs) if r["id"] not in before), None))
    # The form sends every parameter; those left at None take the project's params.yaml.
    assert {k: v for k, v in run["parameters"].items() if v is not None} == {"seed": 1, "rl_steps": 4, "stages": STAGES}
    # Back on the deployment's page, the new run is listed; its page follows it.
    click(browser, wait_for(f"run {run['name']} in the list", lambda: browser.find_element(By.LINK_TEXT, run["name"]),
                            browser))
    state = wait_for("the run to finish", lambda: (
        s if (s := _request("GET", f"{api}/flow_runs/{run['id']}")["state"]["type"])
        in TERMINAL else None), timeout_s=600)
    assert state == "COMPLETED"
    assert run["id"] in browser.current_url
    wait_for("Completed on the run's page", lambda: element_with_text(browser, "Completed"), browser)
    screenshot(browser, "prefect-flow-run-completed")
    graph = _request("GET", f"{api}/flow_runs/{run['id']}/graph-v2")
    labels = {node_id: node["label"] for node_id, node in graph["nodes"]}
    # The stages' edges (the flow's other tasks, such as the workspace, feed them too).
    parents = {node["label"]: {labels[p["id"]] for p in node["parents"]} & set(STAGES)
               for _, node in graph["nodes"] if node["label"] in STAGES}
    assert parents == {"base": set(), "r1_zero": {"base"}, "evaluate@base": {"base"},
                       "evaluate@r1_zero": {"r1_zero"}}


def _processes(marker: bytes, under: Path) -> list[int]:
    """Processes whose command line (arguments joined by spaces, as a warm-started stage's title
    shows it: infra/warm.py) holds ``marker`` and whose working folder is in ``under``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if (entry.name.isdigit() and marker in (entry / "cmdline").read_bytes().replace(b"\0", b" ")
                    and os.readlink(entry / "cwd").startswith(str(under))):
                found.append(int(entry.name))
        except OSError:
            pass
    return found


def test_cancelling_a_run_in_the_ui_stops_its_stage_process_tree(served, ui_runs):
    """After the runs above: a long base stage, cancelled as the UI's Cancel button does."""
    api, dep = served["api"], served["deployment"]
    run = _request("POST", f"{api}/deployments/{dep}/create_flow_run", {"parameters": {
        "stages": ["base"], "params": {"base": {"max_steps": 100000, "checkpoint_every": 0, "seed": 7}}}})
    marker = b"flows.cli stage base"
    deadline = time.time() + 300
    project = served["project"]
    while not _processes(marker, project) and time.time() < deadline:
        time.sleep(0.5)
    tree = _processes(marker, project) + _processes(b"repro --single-item base", project)
    assert tree, "the base stage never started"
    _request("POST", f"{api}/flow_runs/{run['id']}/set_state",
             {"state": {"type": "CANCELLING", "name": "Cancelling"}, "force": True})
    deadline = time.time() + 180
    state = None
    while time.time() < deadline:
        state = _request("GET", f"{api}/flow_runs/{run['id']}")["state"]["type"]
        if state in TERMINAL and not any(Path(f"/proc/{p}").exists() for p in tree):
            break
        time.sleep(1)
    assert state == "CANCELLED"
    left = [p for p in tree if Path(f"/proc/{p}").exists()]
    assert not left, f"still running after the cancel: {left}"
