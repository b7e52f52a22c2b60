"""infra.tracking: stage runs in the embedded sqlite store and on a real MLflow server whose
artifacts live in a moto S3 bucket; secrets never reach MLflow."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from servers import mlflow_server, moto_s3  # noqa: F401  (pytest fixtures)

from infra import logs, tracking
from infra.steplog import StepLog

ROOT = Path(__file__).resolve().parents[1]
MARKER = "MARKER-s3cr3t-7f3a9c"


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No tracking settings or credentials inherited from the caller; cwd = tmp_path."""
    for name in ("MLFLOW_TRACKING_URI", tracking.PARENT_ENV, tracking.EXPERIMENT_NAME_ENV,
                 tracking.EXPERIMENT_ID_ENV,
                 "RANK", *logs.SECRET_ENV, "AWS_ACCESS_KEY_ID", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


@pytest.fixture
def on_server(clean_env, mlflow_server, request):  # noqa: F811
    """Tracking against the session's MLflow server, one experiment per test."""
    clean_env.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    clean_env.setenv(tracking.EXPERIMENT_NAME_ENV, f"test-{request.node.name}")
    from mlflow import MlflowClient

    return MlflowClient(mlflow_server)


def canonical_hash(params: dict) -> str:
    text = json.dumps(params, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def git_repo(path: Path) -> str:
    """A one-commit git repo at ``path``; returns HEAD."""
    def git(*args):
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
                              cwd=path, check=True, capture_output=True, text=True).stdout.strip()
    git("init", "-q")
    (path / "README.md").write_text("tiny\n")
    git("add", "README.md")
    git("commit", "-q", "-m", "init")
    return git("rev-parse", "HEAD")


# ----------------------------------------------------------------------------- pure helpers


def test_import_does_not_import_mlflow_or_matplotlib():
    code = "import sys, infra.tracking, infra.plots; print(sorted({'mlflow', 'matplotlib', 'boto3'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_metric_keys_are_valid_for_mlflow():
    from mlflow.utils.validation import _validate_metric_name

    for raw, expected in [("pass@1", "pass_at_1"), ("accuracy/arithmetic", "accuracy/arithmetic"),
                          ("cons@16/gsm8k", "cons_at_16/gsm8k"), ("/a//b/", "a/b"),
                          ("../x", "_/x"), ("loss (mean)", "loss _mean_")]:
        key = tracking.metric_key(raw)
        assert key == expected
        _validate_metric_name(key)  # raises on names MLflow rejects


def test_redact_masks_credentials_not_hyperparameters(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", MARKER)
    out = logs.redact({
        "aws_secret_access_key": "x", "hfToken": "y", "db": {"password": "z"},
        "max_new_tokens": 64, "tokenizer": "bpe", "pad_token_id": 0, "token_ids": [1], "url": f"s3://k:{MARKER}@host/b", "list": [MARKER],
    })
    assert out["aws_secret_access_key"] == out["hfToken"] == out["db"]["password"] == logs.MASK
    assert out["max_new_tokens"] == 64 and out["tokenizer"] == "bpe"
    assert out["pad_token_id"] == 0 and out["token_ids"] == [1]
    assert out["url"] == "s3://k:***@host/b" and out["list"] == ["***"]


def test_flatten_params_and_length_limit():
    flat = tracking.flatten({"a": {"b": 1, "c": [1, 2]}, "rows": [{"x": 1}], "empty": {}})
    assert flat == {"a.b": 1, "a.c": [1, 2], "rows.0.x": 1, "empty": {}}
    assert len(tracking._param_value("x" * 10_000, 500)) == 500


# ----------------------------------------------------------------------------- embedded store


def test_embedded_default_store(clean_env, tmp_path):
    from mlflow import MlflowClient

    params = {"lr": 1e-3, "model": {"hidden": 32}, "rewards": ["accuracy", "format"]}
    assert tracking.tracking_uri() == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    with tracking.stage_run("sft_cold", params) as run:
        steps = StepLog(tmp_path / "steps.jsonl", sinks=[run.log_step])
        for step in range(1, 8):
            steps(step, {"loss": 1.0 / step, "accuracy": float("nan"), "pass@1": step / 10})
        run.log_step(8, {"loss": None, "reward": 0.5})
        run.log_metrics({"eval": {"accuracy/arithmetic": 0.75, "n": None}})
    assert (tmp_path / "mlflow.db").is_file()
    got = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db").get_run(run.run_id)
    assert got.info.status == "FINISHED" and got.info.run_name == "sft_cold"
    assert got.data.params["model.hidden"] == "32" and got.data.params["lr"] == "0.001"
    assert json.loads(got.data.params["rewards"]) == ["accuracy", "format"]
    assert got.data.tags["r1flow.params_hash"] == canonical_hash(params)
    history = MlflowClient(tracking.tracking_uri()).get_metric_history(run.run_id, "loss")
    assert [m.step for m in sorted(history, key=lambda m: m.step)] == list(range(1, 8))
    assert got.data.metrics["pass_at_1"] == pytest.approx(0.7)
    assert "accuracy" not in got.data.metrics  # NaN is skipped, not logged
    assert got.data.metrics["eval/accuracy/arithmetic"] == 0.75 and "eval/n" not in got.data.metrics
    assert got.info.artifact_uri.startswith((tmp_path / "mlruns").resolve().as_uri())


# ----------------------------------------------------------------------------- real server + S3


def test_pipeline_on_server(on_server, clean_env, moto_s3, tmp_path):  # noqa: F811
    head = git_repo(tmp_path)
    parent = tracking.start_pipeline_run("pipeline", {"r1flow.trigger": "test"})
    tracking.set_tags(parent, {"r1flow.note": "two stages"})
    clean_env.setenv(tracking.PARENT_ENV, parent)
    params = {"group_size": 4, "rewards": {"accuracy": 1.0, "format": 0.5}}
    rows = [{"step": s, "reward": s / 20, "kl": 0.01 * s} for s in range(1, 21)]
    with tracking.stage_run("r1_zero", params, tags={"r1flow.model": "tiny"}) as run:
        for row in rows:
            run.log_step(row["step"], {k: v for k, v in row.items() if k != "step"})
        run.log_table([{"prompt": "1+1", "completion": "2", "reward": 1.0}], "samples.json")
        plot = run.log_curves(rows, ["reward", "kl", "absent"], "r1_zero")
        run.log_dataset([{"prompt": "1+1", "answer": "2"}], "train", "training", source=tmp_path / "train.jsonl")
    with tracking.stage_run("evaluate@base", {"k": 4}) as evaluation:
        evaluation.log_metrics({"pass@1": {"gsm8k": 0.25}})
    tracking.end_run(parent)

    assert tracking.find_stage_run(parent, "r1_zero") == run.run_id
    assert tracking.find_stage_run(parent, "evaluate@base") == evaluation.run_id
    assert tracking.find_stage_run(parent, "sft") is None
    got = on_server.get_run(run.run_id)
    assert got.data.tags["mlflow.parentRunId"] == parent and got.info.status == "FINISHED"
    assert got.data.tags["git.commit"] == head and got.data.tags["git.dirty"] == "false"
    assert got.data.tags["r1flow.params_hash"] == canonical_hash(params)
    assert got.data.tags["r1flow.model"] == "tiny" and got.data.params["rewards.format"] == "0.5"
    assert on_server.get_run(parent).info.status == "FINISHED"
    assert on_server.get_run(parent).data.tags["r1flow.note"] == "two stages"
    steps = sorted(m.step for m in on_server.get_metric_history(run.run_id, "reward"))
    assert steps == list(range(1, 21))
    assert on_server.get_run(evaluation.run_id).data.metrics["pass_at_1/gsm8k"] == 0.25
    [dataset] = got.inputs.dataset_inputs
    assert dataset.dataset.name == "train" and dataset.tags[0].value == "training"

    names = {a.path for a in on_server.list_artifacts(run.run_id)} | {
        a.path for a in on_server.list_artifacts(run.run_id, "plots")}
    assert {"samples.json", plot} <= names
    keys = [o["Key"] for o in moto_s3.client().list_objects_v2(
        Bucket=moto_s3.bucket, Prefix="mlflow/")["Contents"]]
    png = [k for k in keys if k.endswith(f"{run.run_id}/artifacts/{plot}")]
    assert png, keys
    body = moto_s3.client().get_object(Bucket=moto_s3.bucket, Key=png[0])["Body"].read()
    assert body[:8] == b"\x89PNG\r\n\x1a\n" and len(body) > 5000


def test_failing_stage_ends_failed(on_server):
    with pytest.raises(RuntimeError, match="boom"):
        with tracking.stage_run("sft", {"lr": 0.1}) as run:
            run.log_step(1, {"loss": 2.0})
            raise RuntimeError("boom")
    got = on_server.get_run(run.run_id)
    assert got.info.status == "FAILED"
    assert got.data.tags["r1flow.error"] == "RuntimeError: boom"
    assert [m.step for m in on_server.get_metric_history(run.run_id, "loss")] == [1]  # flushed
    assert "git.commit" not in got.data.tags  # tmp_path is not a git repo


def test_error_tag_holds_no_password(clean_env, tmp_path):
    url = f"http://ann:{MARKER}@mlflow.internal:5000"
    with pytest.raises(ConnectionError):
        with tracking.stage_run("sft", {"lr": 0.1}) as run:
            raise ConnectionError(f"cannot reach {url}/api")
    got = tracking.client().get_run(run.run_id)
    assert got.info.status == "FAILED"
    assert got.data.tags["r1flow.error"] == "ConnectionError: cannot reach http://ann:***@mlflow.internal:5000/api"


LOGS_A_RUN = """
import logging, os, warnings
from infra import tracking
from infra.logs import setup_logging

setup_logging()
parent = tracking.start_pipeline_run("pipeline", {})
os.environ[tracking.PARENT_ENV] = parent
with tracking.stage_run("sft", {"lr": 0.1}):
    logging.getLogger("mlflow.store").info("tracking at %s", os.environ["MLFLOW_TRACKING_URI"])
    warnings.warn("server " + os.environ["MLFLOW_TRACKING_URI"])
tracking.end_run(parent)
"""


def test_password_in_tracking_uri_never_printed(clean_env, mlflow_server, tmp_path):  # noqa: F811
    # MLflow's server does not check basic-auth credentials it was not told to, so the URI
    # works; r1flow's INFO lines, MLflow's own lines and warnings all pass through the process.
    uri = mlflow_server.replace("http://", f"http://ann:{MARKER}@")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLFLOW_TRACKING_URI": uri,
           tracking.EXPERIMENT_NAME_ENV: "test-uri-password"}
    done = subprocess.run([sys.executable, "-c", LOGS_A_RUN], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    shown = mlflow_server.replace("http://", "http://ann:***@")
    assert "MLflow pipeline run pipeline" in done.stderr and f"at {shown}" in done.stderr
    assert f"tracking at {shown}" in done.stderr and f"UserWarning: server {shown}" in done.stderr
    assert MARKER not in done.stdout + done.stderr
    assert "View run" not in done.stdout  # MLflow would print the URI with its password


def test_secrets_never_reach_mlflow(on_server, clean_env, tmp_path):
    clean_env.setenv("AWS_SECRET_ACCESS_KEY", MARKER)
    params = {"remote": {"aws_secret_access_key": "keyed-secret-value", "url": f"s3://u:{MARKER}@h/b"},
              "note": MARKER, "max_new_tokens": 64}
    (tmp_path / "run.json").write_text(json.dumps({"config": params}))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "log.txt").write_text(f"connecting with {MARKER}\n")
    (tmp_path / "out" / "weights.bin").write_bytes(b"\0" * 16)
    with pytest.raises(ValueError):
        with tracking.stage_run("cold_start", params, tags={"cred": MARKER}) as run:
            run.log_table([{"prompt": MARKER, "token": "t0k"}], "rows.json")
            run.log_artifact(tmp_path / "run.json")
            run.log_artifact(tmp_path / "out")
            raise ValueError(f"bad credential {MARKER}")
    got = on_server.get_run(run.run_id)
    logged = json.dumps({"params": got.data.params, "tags": got.data.tags})
    assert MARKER not in logged and "keyed-secret-value" not in logged
    assert got.data.params["max_new_tokens"] == "64" and got.data.params["note"] == "***"

    import mlflow.artifacts
    local = Path(mlflow.artifacts.download_artifacts(run_id=run.run_id, dst_path=str(tmp_path / "dl"),
                                                     tracking_uri=on_server.tracking_uri))
    files = {p.relative_to(local).as_posix(): p.read_bytes() for p in local.rglob("*") if p.is_file()}
    assert set(files) == {"rows.json", "run.json", "out/log.txt", "out/weights.bin"}
    assert not [name for name, data in files.items() if MARKER.encode() in data]
    assert (tmp_path / "run.json").read_text().count(MARKER) == 2  # the user's file is untouched


# ----------------------------------------------------------------------------- MLflow's conventions


def test_mlflow_experiment_variables_are_honoured(clean_env):
    with tracking.stage_run("base", {}) as default:
        pass
    clean_env.setenv("MLFLOW_EXPERIMENT_NAME", "named-by-mlflow")
    with tracking.stage_run("base", {}) as named:
        pass
    other = tracking.client().create_experiment("picked-by-id")
    clean_env.setenv("MLFLOW_EXPERIMENT_ID", other)  # the id wins over the name, as in MLflow
    with tracking.stage_run("base", {}) as by_id:
        pass
    mlflow_client = tracking.client()
    names = [mlflow_client.get_experiment(mlflow_client.get_run(r.run_id).info.experiment_id).name
             for r in (default, named, by_id)]
    assert names == ["r1flow", "named-by-mlflow", "picked-by-id"]
    clean_env.setenv("MLFLOW_EXPERIMENT_ID", "987654")
    from mlflow.exceptions import MlflowException
    with pytest.raises(MlflowException):
        tracking.experiment_id()


def workspace_with_models(root: Path, tiny: Path) -> Path:
    """A pipeline workspace after its stages ran: model folders, params.yaml and a dvc.lock
    whose outs hold made-up md5s."""
    import shutil

    import yaml

    from model import factory, reward_model

    folders = {"all_scenario_rl": "artifacts/all_scenario_rl/model", "distill@s64": "artifacts/distill/s64/model",
               "r1_zero": "artifacts/r1_zero/model"}
    for path in folders.values():
        shutil.copytree(tiny, root / path)
    tokenizer = factory.load_tokenizer(tiny)
    factory.save_pretrained(reward_model.from_base(tiny, tokenizer), tokenizer, root / "artifacts/reward_model/helpful")
    (root / "artifacts/reward_model/checkpoints").mkdir()  # not a model
    (root / "params.yaml").write_text(yaml.safe_dump({"report": {"models": {
        "r1": folders["all_scenario_rl"], "s64_distill": folders["distill@s64"], "r1_zero": folders["r1_zero"],
        "s96_distill": "artifacts/distill/s96/model"}}}))
    lock = {"stages": {stage: {"outs": [{"path": path, "md5": f"{i}" * 32 + ".dir"}]}
                       for i, (stage, path) in enumerate(folders.items())}}
    (root / "dvc.lock").write_text(yaml.safe_dump(lock))
    return root


@pytest.mark.parametrize("store", ["sqlite", "server"])
def test_stage_models_are_logged_and_shipped_ones_registered(store, clean_env, tiny_base, tmp_path, request):
    import mlflow.pyfunc
    import pandas as pd

    from infra.stage import publish
    from tasks.tracking import close_pipeline_run

    if store == "server":
        request.getfixturevalue("on_server")
    mlflow_client = tracking.client()
    mlflow.set_tracking_uri(mlflow_client.tracking_uri)  # the fluent loader below
    workspace = workspace_with_models(tmp_path, tiny_base)
    stages = ["r1_zero", "all_scenario_rl", "distill@s64", "reward_model"]
    parent = tracking.start_pipeline_run("pipeline", {})
    clean_env.setenv(tracking.PARENT_ENV, parent)
    for stage in stages:
        with tracking.stage_run(stage, {}) as run:
            publish(run, Path("artifacts", *stage.split("@")), {"loss": 1.0})
    close_pipeline_run.fn(parent, str(workspace), stages, "c0ffee")

    r1_run = tracking.find_stage_run(parent, "all_scenario_rl")
    models = tracking.stage_models(r1_run)
    assert list(models) == ["artifacts/all_scenario_rl/model"]
    logged = mlflow_client.get_logged_model(models["artifacts/all_scenario_rl/model"])
    assert logged.tags["dvc.md5"] == "0" * 32 + ".dir" and logged.tags["r1flow.lineage_commit"] == "c0ffee"
    assert logged.tags["r1flow.stage"] == "all_scenario_rl" and logged.name == "all_scenario_rl-model"
    loaded = mlflow.pyfunc.load_model(logged.model_uri)
    [completion] = loaded.predict(["Compute 12 + 30"], params={"max_new_tokens": 4})
    assert isinstance(completion, str) and completion
    sizes = [a.file_size for a in mlflow_client.list_logged_model_artifacts(logged.model_id)]
    assert sum(s or 0 for s in sizes) < 20_000  # a pointer at the DVC folder, not the weights

    registered = json.loads(mlflow_client.get_run(parent).data.tags["r1flow.registered"])
    assert registered == {"r1": "1", "s64_distill": "1"}  # not r1_zero; s96 did not run
    version = mlflow_client.get_model_version("s64_distill", "1")
    assert version.tags["dvc.md5"] == "1" * 32 + ".dir" and version.tags["r1flow.lineage_commit"] == "c0ffee"
    assert version.tags["dvc.path"] == "artifacts/distill/s64/model" and version.source.startswith("models:/m-")
    assert mlflow.pyfunc.load_model("models:/r1/1").predict(["Compute 1 + 1"], params={"max_new_tokens": 2})
    [helpful] = tracking.stage_models(tracking.find_stage_run(parent, "reward_model")).values()
    scores = mlflow.pyfunc.load_model(f"models:/{helpful}").predict(
        pd.DataFrame({"prompt": ["Compute 1 + 1", "Compute 2 + 2"], "response": ["2", "5"]}))
    assert len(scores) == 2 and all(isinstance(s, float) for s in scores)
    with pytest.raises(ValueError, match="holds no model"):
        with tracking.stage_run("reward_model", {}) as run:
            run.log_model(tmp_path / "artifacts", "nothing", "reward_model")

    # The next pipeline run restores every stage from DVC's cache: no stage runs, no new versions.
    again = tracking.start_pipeline_run("pipeline-2", {})
    close_pipeline_run.fn(again, str(workspace), stages, "beef")
    assert json.loads(mlflow_client.get_run(again).data.tags["r1flow.registered"]) == registered
    assert len(mlflow_client.search_model_versions("name = 'r1'")) == 1


# Where r1flow's code lives (the installed packages and the benchmarks that drive them).
SOURCE_DIRS = ("flows", "tasks", "model", "data", "infra", "benchmarks")
VARIABLE = r"\bR1FLOW_[A-Z0-9_]*[A-Z0-9]\b"


def test_every_r1flow_variable_is_in_the_readme():
    import re

    used = {name: str(path.relative_to(ROOT)) for folder in SOURCE_DIRS for path in sorted((ROOT / folder).rglob("*.py"))
            for name in re.findall(VARIABLE, path.read_text())}
    readme = (ROOT / "README.md").read_text()
    listed = set(re.findall(r"^\| `(R1FLOW_[A-Z0-9_]+)` \|", readme, flags=re.M))
    missing = {name: where for name, where in used.items() if name not in listed}
    assert not missing, f"add these to the README's table of variables (name: a file that reads it): {missing}"
    assert listed <= set(used), f"the README lists variables no code reads: {sorted(listed - set(used))}"
