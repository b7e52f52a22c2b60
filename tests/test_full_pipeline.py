"""`r1flow run` on the small preset: every stage of dvc.yaml, in the embedded Prefect flow,
ending with the report (as `make run` does on the full default)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from browser import browser, chromium, click, close_dialogs, element_with_text, screenshot, wait_for  # noqa: F401
from infra import warm
from infra.dag import load_stages
from presets import SMALL, write_candidates
from servers import running_mlflow
from test_orchestration import make_project

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
# Embedded mode: no server variables; the run makes its own Prefect API, sqlite MLflow, local DVC remote.
SERVER_VARS = ("PREFECT_API_URL", "MLFLOW_TRACKING_URI", "R1FLOW_DVC_REMOTE", "AWS_ENDPOINT_URL")


def _run(project, env) -> tuple[str, float]:
    """`r1flow run` in ``project``: (stdout, wall seconds)."""
    started = time.time()
    proc = subprocess.run([sys.executable, "-m", "flows.cli", "run"], cwd=project, env=env,
                          capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    assert warm.REFUSED_LINE not in proc.stdout + proc.stderr  # every stage that ran started warm
    return proc.stdout, time.time() - started


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    dest = tmp_path_factory.mktemp("full")
    write_candidates(dest)
    project = make_project(dest, SMALL)
    env = {k: v for k, v in os.environ.items() if k not in SERVER_VARS}
    env.update({"PREFECT_HOME": str(tmp_path_factory.mktemp("prefect_home")), "R1FLOW_PARALLEL": "2",
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})
    stdout, seconds = _run(project, env)
    return project, stdout, env, seconds


def _pipeline_runs(project) -> list:
    """The parent MLflow runs of ``project``'s pipeline runs, oldest first."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{project}/mlflow.db")
    exps = [e.experiment_id for e in client.search_experiments()]
    return sorted(client.search_runs(exps, "tags.`r1flow.run` != ''"), key=lambda r: r.info.start_time)


def _stages_that_ran(project, parent) -> set[str]:
    """Stage runs under ``parent``: a stage restored from DVC's run cache opens none."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{project}/mlflow.db")
    children = client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    return {c.info.run_name for c in children}


def test_every_stage_ran_and_is_locked(finished):
    project = finished[0]
    stages = load_stages(project / "dvc.yaml")
    assert {"student@s64", "distill@s96", "rl_student@s64", "evaluate@r1", "report"} <= set(stages)
    branch = next(b.strip(" *+") for b in subprocess.run(["git", "branch"], cwd=project, capture_output=True,
                                                           text=True).stdout.splitlines() if "runs/" in b)
    lock = yaml.safe_load(subprocess.run(["git", "show", f"{branch}:dvc.lock"], cwd=project, capture_output=True,
                                         text=True, check=True).stdout)
    assert sorted(lock["stages"]) == sorted(stages)
    cold_start = json.loads((project / "artifacts" / "cold_start" / "metrics.json").read_text())
    assert {"kept_from/r1_zero", "kept_from/few_shot", "kept_from/candidates.jsonl"} <= set(cold_start)
    assert cold_start["kept"] == sum(v for k, v in cold_start.items() if k.startswith("kept_from/"))


def test_report_has_every_model_and_states_the_findings(finished):
    project, stdout = finished[:2]
    report = (project / "artifacts" / "report" / "report.md").read_text()
    for model in SMALL["report"]["models"]:
        assert f"| {model} |" in report
    assert "Not evaluated" not in report
    found = json.loads((project / "artifacts" / "report" / "findings.json").read_text())
    students = len(SMALL["student"]["sizes"])
    assert len(found) == 8 + students + 2  # every finding listed, whether or not it holds
    judged = {f["key"] for f in found if f["verdict"] in ("holds", "does not hold", "inconclusive")}
    # Every model ran on the preset's 30 problems a benchmark: each comparison of models is judged.
    models = {"rl_lifts_base", "cold_start_readable", "r1_beats_r1_zero", "thinking_longer_r1_zero",
              "thinking_longer_r1", *(f"distill_beats_rl_{s}" for s in SMALL["student"]["sizes"])}
    assert models <= judged, found
    for f in found:
        if f["key"] in judged:
            assert f["claim"] in report and f"| {f['n']} | {f['verdict']} |" in report
        else:  # the preset's 2 to 8 steps are too few to judge a curve, and its models do not mix
            assert "steps" in f["why"] or "no mixing" in f["why"], f
            assert f"not measured: {f['why']}" in report
    assert "| r1_zero |" in stdout  # `r1flow run` prints the table
    metrics = json.loads((project / "artifacts" / "report" / "metrics.json").read_text())
    assert metrics["missing_models"] == 0


def test_mlflow_parent_run_holds_the_report_and_a_child_per_stage(finished):
    project = finished[0]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{project}/mlflow.db")
    exps = [e.experiment_id for e in client.search_experiments()]
    parents = client.search_runs(exps, "tags.`r1flow.run` != ''")
    assert len(parents) == 1
    parent = parents[0]
    assert "report/rl_lifts_base/verdict" in parent.data.metrics
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "report")} >= {"report/report.md",
                                                                                   "report/report.html"}
    children = client.search_runs(exps, f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert {c.info.run_name for c in children} == set(load_stages(project / "dvc.yaml"))


def test_stage_models_are_logged_and_shipped_ones_registered(finished):
    project = finished[0]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{project}/mlflow.db")
    exps = [e.experiment_id for e in client.search_experiments()]
    assert [client.get_experiment(e).name for e in exps if e != "0"] == ["r1flow"]
    [parent] = client.search_runs(exps, "tags.`r1flow.run` != ''")  # the first run (tests below add runs)
    commit = parent.data.tags["r1flow.lineage_commit"]
    models = client.search_logged_models(exps)
    paths = {m.tags["dvc.path"] for m in models}
    assert set(SMALL["report"]["models"].values()) <= paths  # every evaluated model, trained or not
    assert {"artifacts/reward_model/helpful", "artifacts/reward_model/harmless"} <= paths
    assert all(m.tags["r1flow.lineage_commit"] == commit and m.tags["dvc.md5"].endswith(".dir") for m in models)
    registered = json.loads(parent.data.tags["r1flow.registered"])
    assert sorted(registered) == ["r1", "s64_distill", "s64_rl", "s96_distill", "s96_rl"]
    for name, version in registered.items():
        got = client.get_model_version(name, version)
        assert got.tags["r1flow.lineage_commit"] == commit
        assert got.tags["dvc.path"] == SMALL["report"]["models"][name]
        assert got.tags["dvc.md5"] == next(m.tags["dvc.md5"] for m in models if m.tags["dvc.path"] == got.tags["dvc.path"])


# After the tests above (they count one pipeline run): the same project, run again.

def test_a_second_run_restores_every_stage_from_dvcs_cache(finished):
    project, _, env, first_s = finished
    _, second_s = _run(project, env)
    first, second = _pipeline_runs(project)[-2:]
    assert _stages_that_ran(project, first) == set(load_stages(project / "dvc.yaml"))
    assert _stages_that_ran(project, second) == set()  # all restored: nothing ran
    # Kept for the record (CI keeps test-artifacts/): the wall times of the two runs.
    timing = {"first_run_s": round(first_s, 1), "second_run_s": round(second_s, 1), "stages": len(load_stages(project / "dvc.yaml"))}
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "full_pipeline_runs.json").write_text(json.dumps(timing, indent=1) + "\n")
    print(f"first run {first_s:.0f} s, second run {second_s:.0f} s")


def test_an_uncommitted_param_reruns_that_stage_and_what_depends_on_it_and_is_snapshotted(finished):
    project, _, env, _ = finished
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["distill"] = {**params["distill"], "lr": 0.002}  # edited, not committed (a copy: the preset's
    # sections share one dict, which YAML writes as an alias)
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    _run(project, env)
    run = _pipeline_runs(project)[-1]
    assert _stages_that_ran(project, run) == {"distill@s64", "distill@s96", "evaluate@s64_distill",
                                              "evaluate@s96_distill", "report"}
    assert run.data.tags["git.dirty"] == "true" and run.data.tags["r1flow.uncommitted"] == "params.yaml"
    branch = run.data.tags["r1flow.branch"]
    on_branch = yaml.safe_load(subprocess.run(["git", "show", f"{branch}:params.yaml"], cwd=project,
                                              capture_output=True, text=True, check=True).stdout)
    assert on_branch["distill"]["lr"] == 0.002
    log = subprocess.run(["git", "log", "--format=%s", branch], cwd=project, capture_output=True, text=True).stdout
    assert "uncommitted changes of the launching checkout" in log
    # DVC's own comparisons work on run branches: params from git, metrics from DVC's cache.
    first = _pipeline_runs(project)[0].data.tags["r1flow.branch"]
    dvc = [sys.executable, "-m", "dvc"]
    params = subprocess.run([*dvc, "params", "diff", first, branch, "--json"], cwd=project, env=env,
                            capture_output=True, text=True)
    assert json.loads(params.stdout)["params.yaml"]["distill.lr"] == {"old": _param(project, first, "distill", "lr"),
                                                                      "new": 0.002}, params.stderr
    metrics = subprocess.run([*dvc, "metrics", "diff", first, branch, "--json"], cwd=project, env=env,
                             capture_output=True, text=True)
    changed = json.loads(metrics.stdout)
    assert any(path.startswith("artifacts/distill/") for path in changed), metrics.stdout + metrics.stderr
    assert not any(path.startswith("artifacts/r1_zero/") for path in changed)  # restored: the same
    plots = subprocess.run([*dvc, "plots", "diff", first, branch, "--json"], cwd=project, env=env,
                           capture_output=True, text=True)
    shown = json.loads(plots.stdout)
    assert not shown.get("errors"), shown["errors"]  # every stage's curves read on both branches
    for plot in ("artifacts/distill/s64/steps.json", "artifacts/all_scenario_rl/steps.json", "r1_zero_curves"):
        assert [p["revisions"] for p in shown["data"][plot]] == [[first, branch]], plot


def _param(project, branch: str, section: str, key: str):
    text = subprocess.run(["git", "show", f"{branch}:params.yaml"], cwd=project, capture_output=True, text=True,
                          check=True).stdout
    return yaml.safe_load(text)[section].get(key)


# Last (they browse the tracking store the runs above wrote): the MLflow UI in chromium.

@pytest.fixture(scope="module")
def mlflow_ui(finished, tmp_path_factory):
    """An MLflow server over the tracking store `r1flow run` wrote (its sqlite file), as
    `mlflow ui` in the project shows it: yields its URL."""
    with running_mlflow(tmp_path_factory.mktemp("mlflow_ui"), backend=f"sqlite:///{finished[0]}/mlflow.db") as uri:
        yield uri


def test_the_mlflow_ui_compares_two_runs_reward_curves(finished, mlflow_ui, browser):
    """The compare page of the first run's r1_zero and reasoning_rl stage runs, then its
    `reward` metric: both curves, each to its last GRPO step."""
    from mlflow.tracking import MlflowClient
    from selenium.webdriver.common.by import By

    client = MlflowClient(f"sqlite:///{finished[0]}/mlflow.db")
    first = _pipeline_runs(finished[0])[0]
    children = client.search_runs([first.info.experiment_id], f"tags.`mlflow.parentRunId` = '{first.info.run_id}'")
    runs = {c.info.run_name: c for c in children if c.info.run_name in ("r1_zero", "reasoning_rl")}
    last_step = {name: client.get_metric_history(run.info.run_id, "reward")[-1].step for name, run in runs.items()}
    ids = json.dumps([run.info.run_id for run in runs.values()])
    browser.get(f"{mlflow_ui}/#/compare-runs?runs={ids}&experiments={json.dumps([first.info.experiment_id])}")
    wait_for("the compare page", lambda: element_with_text(browser, "Comparing 2 Runs from 1 Experiment"), browser)
    screenshot(browser, "mlflow-compare-runs")
    click(browser, wait_for("the reward metric", lambda: browser.find_element(By.XPATH, "//a[normalize-space(.)='reward']"),
                            browser))
    wait_for("both runs' curves", lambda: element_with_text(browser, "2/2"), browser)  # "Completed Runs 2/2"
    wait_for("the curves", lambda: browser.find_elements(By.CSS_SELECTOR, ".js-plotly-plot .scatterlayer .trace"), browser)
    page = browser.find_element(By.TAG_NAME, "body").text
    for name, step in last_step.items():
        assert f"{name} (reward)" in page and f"(step={step})" in page, (name, step)
    screenshot(browser, "mlflow-reward-curves")


def test_the_mlflow_ui_shows_the_registered_r1_version_with_its_lineage(finished, mlflow_ui, browser):
    """Models > r1 > its version: the lineage commit and the DVC md5 tags are on the page."""
    from mlflow.tracking import MlflowClient
    from selenium.webdriver.common.by import By

    first = _pipeline_runs(finished[0])[0]
    version = json.loads(first.data.tags["r1flow.registered"])["r1"]
    tags = MlflowClient(f"sqlite:///{finished[0]}/mlflow.db").get_model_version("r1", version).tags
    browser.get(f"{mlflow_ui}/#/models")
    link = wait_for("the r1 model", lambda: browser.find_element(By.LINK_TEXT, "r1"), browser)
    close_dialogs(browser)
    click(browser, link)
    click(browser, wait_for(f"version {version}", lambda: browser.find_element(By.LINK_TEXT, f"Version {version}"),
                            browser))
    wait_for("the version's tags", lambda: element_with_text(browser, tags["r1flow.lineage_commit"]), browser)
    page = browser.find_element(By.TAG_NAME, "body").text
    assert tags["dvc.md5"] in page and "r1flow.lineage_commit" in page
    screenshot(browser, "mlflow-registered-r1")
