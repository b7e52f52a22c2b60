"""MLflow tracking: one run per stage, nested under one parent run per pipeline run.

Where runs go is the standard ``MLFLOW_TRACKING_URI``; unset means the embedded store
``sqlite:///<cwd>/mlflow.db``. The experiment is MLflow's own ``MLFLOW_EXPERIMENT_ID`` or
``MLFLOW_EXPERIMENT_NAME`` (the id wins, as in ``mlflow.start_run``), default ``r1flow``.
A stage's ``main()`` wraps its work in :func:`stage_run`; when the pipeline (Prefect) opened
a parent with :func:`start_pipeline_run` it passes the id down as ``$R1FLOW_PARENT_RUN_ID`` and
the stage run becomes its child. Only rank 0 of a multi-rank job logs.

Every run records its git commit (``git.commit``, ``git.dirty``), ``r1flow.stage`` and
``r1flow.params_hash`` (sha256 of the canonical JSON of the redacted params), so
two runs with the same hash and commit ran the same code on the same config.

Secrets never reach MLflow: params, tags, tables, the error tag and text artifacts pass
through :func:`infra.logs.redact` / :func:`infra.logs.scrub` (credential-named keys, the
values of credential variables, URL passwords), and the tracking URI is logged scrubbed.

Everything here talks to the store through an explicit ``MlflowClient`` (never the fluent,
process-global active run), so a Prefect process can hold a parent run while stages log
from subprocesses. ``import infra.tracking`` does not import mlflow.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import logging
import math
import os
import re
import shutil
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Iterator

from infra import launch
from infra.logs import redact, scrub, secret_values

log = logging.getLogger(__name__)

PARENT_ENV = "R1FLOW_PARENT_RUN_ID"
EXPERIMENT_NAME_ENV = "MLFLOW_EXPERIMENT_NAME"  # MLflow's own variables (mlflow.environment_variables)
EXPERIMENT_ID_ENV = "MLFLOW_EXPERIMENT_ID"
DEFAULT_EXPERIMENT = "r1flow"
STATUSES = ("FINISHED", "FAILED", "KILLED")
_SUPPRESS_URL_ENV = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"

# Which text artifacts are scanned for secret values (checkpoints and other binaries are not).
_TEXT_SUFFIXES = {".json", ".jsonl", ".yaml", ".yml", ".txt", ".md", ".csv", ".log", ".html",
                  ".toml", ".cfg", ".ini", ".py", ".sh", ".env"}
_MAX_SCAN_BYTES = 64 << 20

_FLUSH_S = 5.0  # step metrics are sent at most this often (and at the end of the run)
_MAX_PARAMS_PER_BATCH = 100  # MLflow's log_batch limits
_MAX_METRICS_PER_BATCH = 1000
_MAX_KEY_LENGTH = 250


# ----------------------------------------------------------------------------- where


def tracking_uri() -> str:
    """``$MLFLOW_TRACKING_URI``, else the embedded store ``sqlite:///<cwd>/mlflow.db`` (absolute)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{Path.cwd().resolve() / 'mlflow.db'}"


def experiment_name() -> str:
    """``$MLFLOW_EXPERIMENT_NAME``, else ``r1flow``."""
    return os.environ.get(EXPERIMENT_NAME_ENV) or DEFAULT_EXPERIMENT


def client():
    """An ``MlflowClient`` on :func:`tracking_uri`.

    When the URI carries a credential (``http://user:password@host``), MLflow's own "View run
    ... at <url>" lines are switched off: ``MlflowClient.set_terminated`` writes them straight
    to stdout, built from the URI with its password, unless
    ``MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT`` is true (mlflow 3.17
    tracking/_tracking_service/client.py, ``_log_url``). r1flow logs each run's id and the
    scrubbed URI instead.
    """
    from mlflow import MlflowClient

    uri = tracking_uri()
    if scrub(uri) != uri:
        os.environ[_SUPPRESS_URL_ENV] = "true"
    return MlflowClient(tracking_uri=uri)


def _artifact_location(uri: str) -> str | None:
    """For the embedded sqlite store, artifacts go next to the database (``mlruns/``, as
    MLflow's default), as an absolute URI so any working directory finds them; servers
    choose their own."""
    if not uri.startswith("sqlite:///"):
        return None
    db = Path(uri[len("sqlite:///"):])
    return (db.resolve().parent / "mlruns").as_uri()


def experiment_id(mlflow_client=None, name: str | None = None) -> str:
    """Id of experiment ``name``, created or restored as needed. Without ``name``:
    ``$MLFLOW_EXPERIMENT_ID`` when set (it must exist: MLflow does not create experiments by
    id; a missing one raises ``MlflowException``), else :func:`experiment_name`."""
    from mlflow.exceptions import MlflowException

    mlflow_client = mlflow_client or client()
    if name is None and os.environ.get(EXPERIMENT_ID_ENV):
        exp = mlflow_client.get_experiment(os.environ[EXPERIMENT_ID_ENV])  # raises if unknown
        if exp.lifecycle_stage == "deleted":
            raise MlflowException(f"MLflow experiment {exp.experiment_id} ({exp.name}) named by "
                                  f"${EXPERIMENT_ID_ENV} is deleted; restore it or unset the variable")
        return exp.experiment_id
    name = name or experiment_name()
    exp = mlflow_client.get_experiment_by_name(name)
    if exp is None:
        try:
            return mlflow_client.create_experiment(
                name, artifact_location=_artifact_location(mlflow_client.tracking_uri))
        except MlflowException as err:  # another process created it first
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            exp = mlflow_client.get_experiment_by_name(name)
    if exp.lifecycle_stage == "deleted":
        log.warning("MLflow experiment %r was deleted; restoring it", name)
        mlflow_client.restore_experiment(exp.experiment_id)
    return exp.experiment_id


# ----------------------------------------------------------------------------- names and values


def metric_key(name: Any) -> str:
    """``name`` made valid as an MLflow metric/param key: ``@`` becomes ``_at_`` ("pass@1" ->
    "pass_at_1"), other characters outside ``[A-Za-z0-9_.- /]`` become ``_``, and empty, ``.``
    and ``..`` path segments are dropped or replaced (MLflow rejects names that normalise)."""
    text = re.sub(r"[^\w.\- /]", "_", str(name).replace("@", "_at_"))
    parts = ["_" if p in (".", "..") else p for p in text.split("/") if p]
    return "/".join(parts)[:_MAX_KEY_LENGTH] or "_"


def flatten(obj: Any, sep: str = ".", prefix: str = "") -> dict[str, Any]:
    """Nested dicts (and lists that hold dicts or lists) as one level of ``a.b.0.c`` keys;
    lists of scalars stay one value."""
    if isinstance(obj, dict):
        items = [(str(k), v) for k, v in obj.items()]
    elif isinstance(obj, (list, tuple)) and any(isinstance(v, (dict, list, tuple)) for v in obj):
        items = [(str(i), v) for i, v in enumerate(obj)]
    else:
        return {prefix: obj}
    if not items:
        return {prefix: obj} if prefix else {}
    out: dict[str, Any] = {}
    for key, value in items:
        out.update(flatten(value, sep, f"{prefix}{sep}{key}" if prefix else key))
    return out


def _param_value(value: Any, limit: int) -> str:
    if isinstance(value, (list, tuple, dict)):
        text = json.dumps(value, default=str)
    else:
        text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def params_hash(params: dict) -> str:
    """sha256 of the canonical JSON (sorted keys, compact) of ``params``."""
    text = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _finite(value: Any) -> float | None:
    """``value`` as a finite float, or None (None, NaN, inf, non-numbers are not logged)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def git_tags(cwd: str | Path | None = None) -> dict[str, str]:
    """``git.commit``/``git.dirty`` (and MLflow's own commit tag) of the repo at ``cwd``;
    empty outside a git repo or without git. Dirty means tracked files changed."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=15)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return {}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"git.commit": commit, "mlflow.source.git.commit": commit,
            "git.dirty": "unknown" if status is None else str(bool(status)).lower()}


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return "unknown"


# ----------------------------------------------------------------------------- pipeline runs


def _create_run(mlflow_client, name: str, tags: dict, parent_run_id: str | None = None) -> str:
    """A RUNNING run named ``name`` (a child of ``parent_run_id`` in the parent's experiment)."""
    tags = {"mlflow.user": _user(), **git_tags(), **tags}
    if parent_run_id:
        exp_id = mlflow_client.get_run(parent_run_id).info.experiment_id
        tags["mlflow.parentRunId"] = parent_run_id
    else:
        exp_id = experiment_id(mlflow_client)
    safe = {metric_key(k): str(v) for k, v in redact(tags).items()}
    run = mlflow_client.create_run(exp_id, tags=safe, run_name=name)
    return run.info.run_id


def start_pipeline_run(name: str, tags: dict) -> str:
    """Open a parent run named ``name`` for one pipeline run and return its id; it stays
    RUNNING until :func:`end_run`. Stages become its children via ``$R1FLOW_PARENT_RUN_ID``."""
    run_id = _create_run(client(), name, {"r1flow.pipeline": name, **tags})
    log.info("MLflow pipeline run %s (%s) at %s", name, run_id, scrub(tracking_uri()))
    return run_id


def end_run(run_id: str, status: str = "FINISHED") -> None:
    """Close run ``run_id`` as FINISHED, FAILED or KILLED."""
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
    client().set_terminated(run_id, status=status)


def set_tags(run_id: str, tags: dict) -> None:
    """Set (redacted) tags on run ``run_id``."""
    from mlflow.entities import RunTag

    items = [RunTag(metric_key(k), str(v)) for k, v in redact(tags).items()]
    mlflow_client = client()
    for i in range(0, len(items), _MAX_PARAMS_PER_BATCH):
        mlflow_client.log_batch(run_id, tags=items[i:i + _MAX_PARAMS_PER_BATCH])


def find_stage_run(parent_run_id: str, stage: str) -> str | None:
    """Id of the newest child run of ``parent_run_id`` named ``stage``, or None."""
    mlflow_client = client()
    exp_id = mlflow_client.get_run(parent_run_id).info.experiment_id
    runs = mlflow_client.search_runs(
        [exp_id], filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}' "
                                f"AND attributes.run_name = {_quoted(stage)}",
        order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0].info.run_id if runs else None


# ----------------------------------------------------------------------------- models and the registry


def _quoted(value: str) -> str:
    """``value`` as a string literal of MLflow's search syntax."""
    return json.dumps(value) if "'" in value else f"'{value}'"


def stage_models(run_id: str) -> dict[str, str]:
    """``{dvc.path: model id}`` of the READY models logged by run ``run_id``
    (:meth:`StageRun.log_model`); the newest wins if one folder was logged twice."""
    mlflow_client = client()
    exp_id = mlflow_client.get_run(run_id).info.experiment_id
    models = mlflow_client.search_logged_models(
        [exp_id], filter_string=f"source_run_id = {_quoted(run_id)}",
        order_by=[{"field_name": "creation_timestamp", "ascending": True}])
    return {m.tags["dvc.path"]: m.model_id for m in models if _ready(m) and "dvc.path" in m.tags}


def _ready(model) -> bool:
    """Whether a LoggedModel finished uploading (mlflow 3.17's sqlite store cannot filter
    ``status = 'READY'``: it compares the enum's number)."""
    from mlflow.entities import LoggedModelStatus

    return model.status == LoggedModelStatus.READY


def tag_model(model_id: str, tags: dict) -> None:
    """Set (redacted) tags on logged model ``model_id``."""
    client().set_logged_model_tags(model_id, {metric_key(k): str(v) for k, v in redact(tags).items()})


def find_model(path: str, md5: str) -> str | None:
    """Id of the newest READY model of this experiment logged from folder ``path`` whose
    weights had DVC md5 ``md5`` (tagged by an earlier pipeline run), or None: how a stage
    restored from DVC's cache, which logged nothing this time, finds its model."""
    mlflow_client = client()
    models = mlflow_client.search_logged_models(
        [experiment_id(mlflow_client)],
        filter_string=f"tags.`dvc.path` = {_quoted(path)} AND tags.`dvc.md5` = {_quoted(md5)}",
        order_by=[{"field_name": "creation_timestamp", "ascending": False}])
    return next((m.model_id for m in models if _ready(m)), None)


def register_model(name: str, model_id: str, tags: dict) -> str:
    """Register logged model ``model_id`` as a new version of registered model ``name``
    (created when missing) carrying ``tags``, and return the version number. When a version
    of ``name`` already has the same ``dvc.md5`` tag (the same weights), that version is
    returned and nothing is created."""
    from mlflow.exceptions import MlflowException

    mlflow_client = client()
    try:
        mlflow_client.create_registered_model(name)
    except MlflowException as err:
        if err.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    if md5 := tags.get("dvc.md5"):
        same = mlflow_client.search_model_versions(
            f"name = {_quoted(name)} AND tags.`dvc.md5` = {_quoted(md5)}", max_results=1)
        if same:
            return str(same[0].version)
    model = mlflow_client.get_logged_model(model_id)
    version = mlflow_client.create_model_version(
        name, source=model.model_uri, run_id=model.source_run_id, model_id=model_id,
        tags={metric_key(k): str(v) for k, v in redact(tags).items()})
    log.info("registered model %s version %s (%s)", name, version.version, model_id)
    return str(version.version)


# ----------------------------------------------------------------------------- stage runs


@contextlib.contextmanager
def stage_run(stage: str, params: dict, *, tags: dict | None = None) -> Iterator["StageRun"]:
    """Open the MLflow run of ``stage`` for the block and yield its :class:`StageRun`.

    The run is named ``stage``, nested under ``$R1FLOW_PARENT_RUN_ID`` when set, and carries
    the redacted ``params`` (flattened to ``a.b`` keys), git and hash tags, and ``tags``. It
    ends FAILED (KILLED on Ctrl-C) if the block raises, FINISHED otherwise. Ranks other than
    0 get a :class:`NullRun` that logs nothing.
    """
    if launch.rank() != 0:
        yield NullRun()
        return
    safe = redact(params)
    mlflow_client = client()
    run_id = _create_run(mlflow_client, stage, {
        "r1flow.stage": stage, "r1flow.params_hash": params_hash(safe), **(tags or {})},
        parent_run_id=os.environ.get(PARENT_ENV) or None)
    run = StageRun(mlflow_client, run_id)
    log.info("MLflow run %s for stage %s at %s", run_id, stage, scrub(mlflow_client.tracking_uri))
    status = "FAILED"
    try:
        run.log_params(safe)
        yield run
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    except BaseException as err:
        run.note_error(err)
        raise
    finally:
        run.close(status)


class ArtifactUploadError(RuntimeError):
    """An artifact did not reach the run's artifact store.

    MLflow's own message names only the URL it gave up on, and a tracking server that proxies
    artifacts (``--artifacts-destination``) answers 500, or drops the connection, when its
    store fails: this says which file, which run, and where the cause is written.
    """

    def __init__(self, path: Path, run_id: str, uri: str, err: Exception):
        super().__init__(scrub(
            f"{path} was not stored in the artifacts of MLflow run {run_id} at {uri} "
            f"({type(err).__name__}: {err}). A server that proxies artifacts fails like this when "
            f"its artifact store (S3) does; the server's log names the cause."))


class StageRun:
    """The open run of one stage: what a stage logs to MLflow (see :func:`stage_run`).

    ``log_step`` is a :class:`infra.steplog.StepLog` sink: ``StepLog(path, sinks=[run.log_step])``.
    """

    def __init__(self, mlflow_client, run_id: str):
        self.client = mlflow_client
        self.run_id = run_id
        self.last_step = 0
        self._pending: list = []
        self._last_flush = 0.0

    def log_params(self, params: dict) -> None:
        """Log ``params`` (nested; redacted) as flattened ``a.b`` params."""
        from mlflow.entities import Param
        from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

        flat = flatten(redact(params))
        items = [Param(metric_key(k), _param_value(v, MAX_PARAM_VAL_LENGTH)) for k, v in flat.items()]
        for i in range(0, len(items), _MAX_PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=items[i:i + _MAX_PARAMS_PER_BATCH])

    def log_step(self, step: int, metrics: dict) -> None:
        """Queue ``metrics`` (flat or nested; None/NaN skipped) at ``step``; they are sent in
        batches at most every few seconds and when the run ends."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        for key, value in flatten(metrics, sep="/").items():
            if (number := _finite(value)) is not None:
                self._pending.append(Metric(metric_key(key), number, now, int(step)))
        self.last_step = max(self.last_step, int(step))
        if time.monotonic() - self._last_flush >= _FLUSH_S or len(self._pending) >= _MAX_METRICS_PER_BATCH:
            self.flush(strict=False)

    def flush(self, strict: bool = True) -> None:
        """Send queued step metrics. With ``strict=False`` a failure is a warning and the
        metrics stay queued for the next try (a tracking hiccup must not kill training)."""
        self._last_flush = time.monotonic()
        while self._pending:
            batch = self._pending[:_MAX_METRICS_PER_BATCH]
            try:
                self.client.log_batch(self.run_id, metrics=batch)
            except Exception as err:
                if strict:
                    raise
                log.warning("MLflow: %d step metrics not sent yet (%s)", len(self._pending), err)
                return
            del self._pending[:len(batch)]

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        """Log final metrics (nested dicts flattened with ``/``) at ``step``, by default the
        last logged step, so they are the runs' latest values."""
        from mlflow.entities import Metric

        self.flush()
        step = self.last_step if step is None else int(step)
        now = int(time.time() * 1000)
        items = [Metric(metric_key(k), v, now, step) for k, value in flatten(metrics, sep="/").items()
                 if (v := _finite(value)) is not None]
        for i in range(0, len(items), _MAX_METRICS_PER_BATCH):
            self.client.log_batch(self.run_id, metrics=items[i:i + _MAX_METRICS_PER_BATCH])

    def set_tags(self, tags: dict) -> None:
        """Set (redacted) tags on this run: text lineage such as the pinned model revision."""
        set_tags(self.run_id, tags)

    def log_table(self, rows: list[dict], artifact_file: str) -> None:
        """Log ``rows`` (redacted) as an MLflow table (``.json`` or ``.parquet``), viewable
        in the run's artifacts and comparable across runs in the evaluation view."""
        import pandas as pd

        self.client.log_table(self.run_id, data=pd.DataFrame(redact(list(rows))),
                              artifact_file=artifact_file)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Log a file, or a folder (under its own name unless ``artifact_path`` is given).
        Text files that contain a secret value are uploaded scrubbed. Raises
        :class:`ArtifactUploadError` when the server fails it (after MLflow's HTTP retries:
        ``MLFLOW_HTTP_REQUEST_MAX_RETRIES``, ``MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR``)."""
        import requests
        from mlflow.exceptions import MlflowException

        path = Path(path)
        try:
            with _scrubbed(path) as upload:
                if path.is_dir():
                    self.client.log_artifacts(self.run_id, str(upload), artifact_path or path.name)
                else:
                    self.client.log_artifact(self.run_id, str(upload), artifact_path)
        except (MlflowException, requests.RequestException) as err:
            raise ArtifactUploadError(path, self.run_id, self.client.tracking_uri, err) from err

    def log_model(self, folder: str | Path, name: str, stage: str) -> str:
        """Log the HF model in ``folder`` as an MLflow model of this run, named ``name`` (no
        ``/ : .``), and return its model id (``models:/<id>`` loads it with
        ``mlflow.pyfunc.load_model``).

        The model is a pyfunc pointer at the weights, not a copy (:mod:`model.mlflow_model`
        says why): its tags name the stage (``r1flow.stage``), the folder relative to the
        working directory (``dvc.path``, the DVC output) and its absolute path
        (``r1flow.weights``); the DVC md5 is added when the pipeline knows it
        (``tasks.tracking.close_pipeline_run``). Raises ValueError when ``folder`` holds no
        model; an upload failure marks the model FAILED and raises :class:`ArtifactUploadError`.
        """
        import mlflow.pyfunc
        import requests
        from mlflow.entities import LoggedModelOutput, LoggedModelStatus
        from mlflow.exceptions import MlflowException
        from mlflow.models import Model

        from model import mlflow_model
        from model.factory import model_kind

        folder = Path(folder).resolve()
        kind = model_kind(folder)
        if kind is None:
            raise ValueError(f"{folder} holds no model (no config.json or hub reference)")
        config = {"weights": str(folder), "path": os.path.relpath(folder, Path.cwd().resolve()),
                  "stage": stage, "kind": kind}
        logging.getLogger("mlflow.pyfunc").addFilter(mlflow_model.QUIET_PICKLE)  # once per process
        exp_id = self.client.get_run(self.run_id).info.experiment_id
        logged = self.client.create_logged_model(
            exp_id, name=name, source_run_id=self.run_id, model_type=kind,
            tags={"r1flow.stage": stage, "dvc.path": config["path"], "r1flow.weights": config["weights"]})
        try:
            with tempfile.TemporaryDirectory(prefix="r1flow-model-") as tmp, warnings.catch_warnings():
                # No input example on purpose: MLflow would load the weights to validate it.
                warnings.filterwarnings("ignore", message=".*input example was not provided")
                meta = Model(artifact_path=logged.artifact_location, model_uuid=logged.model_id,
                             run_id=self.run_id, model_id=logged.model_id)
                mlflow.pyfunc.save_model(
                    Path(tmp) / "model", python_model=mlflow_model.WeightsPointer(), model_config=config,
                    signature=mlflow_model.signature(kind), pip_requirements=mlflow_model.requirements(),
                    mlflow_model=meta)
                self.client.log_model_artifacts(logged.model_id, str(Path(tmp) / "model"))
            self.client.log_outputs(self.run_id, [LoggedModelOutput(logged.model_id, self.last_step)])
        except BaseException as err:
            with contextlib.suppress(Exception):
                self.client.finalize_logged_model(logged.model_id, LoggedModelStatus.FAILED)
            if isinstance(err, (MlflowException, requests.RequestException)):
                raise ArtifactUploadError(folder, self.run_id, self.client.tracking_uri, err) from err
            raise
        self.client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
        return logged.model_id

    def log_curves(self, rows: list[dict], keys: list[str], name: str) -> str:
        """Plot ``keys`` of step rows (see :func:`infra.plots.plot_curves`) and log the PNG as
        ``plots/<name>.png``; returns that artifact path."""
        from infra.plots import plot_curves

        with tempfile.TemporaryDirectory(prefix="r1flow-plot-") as tmp:
            png = plot_curves(rows, keys, Path(tmp) / f"{name}.png", title=name)
            self.client.log_artifact(self.run_id, str(png), "plots")
        return f"plots/{name}.png"

    def log_dataset(self, rows: list[dict], name: str, context: str,
                    source: str | Path | None = None) -> None:
        """Record ``rows`` as an input dataset of the run (schema, row count, digest) with
        ``context`` ("training", "eval", ...) and ``source`` (the file it was read from)."""
        import mlflow.data
        import pandas as pd
        from mlflow.entities import DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        with warnings.catch_warnings():  # mlflow registers local paths twice and says so
            warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
            dataset = mlflow.data.from_pandas(pd.DataFrame(list(rows)), name=name,
                                              source=str(source) if source is not None else None)
        entity = DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)])
        self.client.log_inputs(self.run_id, datasets=[entity])

    def note_error(self, err: BaseException) -> None:
        """Tag the run with the (scrubbed) exception that ended it."""
        with contextlib.suppress(Exception):
            text = scrub(f"{type(err).__name__}: {err}")[:1000]
            self.client.set_tag(self.run_id, "r1flow.error", text)

    def close(self, status: str) -> None:
        """Send what is queued and end the run with ``status``."""
        try:
            self.flush(strict=False)
        finally:
            self.client.set_terminated(self.run_id, status=status)


class NullRun:
    """What :func:`stage_run` yields on ranks other than 0: the same methods, no logging."""

    run_id = None
    last_step = 0

    def log_params(self, params: dict) -> None:
        """No-op."""

    def log_step(self, step: int, metrics: dict) -> None:
        """No-op."""

    def flush(self, strict: bool = True) -> None:
        """No-op."""

    def set_tags(self, tags: dict) -> None:
        """No-op."""

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        """No-op."""

    def log_table(self, rows: list[dict], artifact_file: str) -> None:
        """No-op."""

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """No-op."""

    def log_model(self, folder: str | Path, name: str, stage: str) -> None:
        """No-op."""

    def log_curves(self, rows: list[dict], keys: list[str], name: str) -> str:
        """No-op."""
        return f"plots/{name}.png"

    def log_dataset(self, rows: list[dict], name: str, context: str,
                    source: str | Path | None = None) -> None:
        """No-op."""


# ----------------------------------------------------------------------------- artifact scrubbing


def _needs_scrub(path: Path, secrets: list[str]) -> bool:
    if path.suffix.lower() not in _TEXT_SUFFIXES or path.stat().st_size > _MAX_SCAN_BYTES:
        return False
    text = path.read_text(errors="replace")
    return scrub(text, secrets) != text


@contextlib.contextmanager
def _scrubbed(path: Path) -> Iterator[Path]:
    """``path`` itself when no text file in it holds a secret, else a scrubbed copy."""
    secrets = secret_values()
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
    dirty = [p for p in files if _needs_scrub(p, secrets)]
    if not dirty:
        yield path
        return
    log.warning("masking secrets in %d artifact file(s) under %s", len(dirty), path)
    with tempfile.TemporaryDirectory(prefix="r1flow-scrub-") as tmp:
        copy = Path(tmp) / path.name
        if path.is_dir():
            shutil.copytree(path, copy, symlinks=False)
            for p in dirty:
                target = copy / p.relative_to(path)
                target.write_text(scrub(p.read_text(errors="replace"), secrets))
        else:
            copy.write_text(scrub(path.read_text(errors="replace"), secrets))
        yield copy
