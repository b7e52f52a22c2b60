"""Logging set up once per process (CLI entry points call :func:`setup_logging`), and the one
place that knows what a secret is.

Secrets (DESIGN.md, contract 6: they never reach logs, params or artifacts) are masked as
``***`` by :func:`scrub` (text) and :func:`redact` (params, tags, table rows). :func:`scrub`
masks

- the password of any ``scheme://user:password@host`` URL. The user is kept: it tells which
  account ran, and the password is the secret (``http://ann:***@mlflow:5000``). The password
  runs to the last ``@`` before the host, so an unencoded ``@`` in it is masked too;
- the values of the credential variables of this process: those named in :data:`SECRET_ENV`
  and any whose name ends in ``_TOKEN``, ``_SECRET``, ``_PASSWORD``, ``_PASSWD`` or ``_KEY``.
  Identifiers such as ``AWS_ACCESS_KEY_ID`` or ``MLFLOW_TRACKING_USERNAME`` are not secrets
  and stay readable. Values shorter than :data:`MIN_SECRET_LENGTH` are skipped, so a flag
  such as ``HF_HUB_DISABLE_IMPLICIT_TOKEN=1`` does not blank out every ``1``;
- the values of credential query parameters: ``token=``, ``access_token=``, ``api_key=``,
  ``password=``, ``X-Amz-Signature=``, ``X-Amz-Security-Token=`` and the like (presigned S3
  URLs).

:func:`setup_logging` (stage processes, ``r1flow reproduce``) and the Prefect flows call
:func:`scrub_log_records`, which applies it to every log record of the process: r1flow's,
MLflow's, Prefect's (console and UI), DVC's and warnings. Output of subprocesses is scrubbed
line by line by :func:`infra.proc.stream`.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any, Iterable, Mapping

_QUIET = ("DeepSpeed", "deepspeed", "torch.distributed", "httpx", "urllib3", "filelock")

MASK = "***"
# Credential variables by name; names with a credential suffix count too (secret_values).
SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "MLFLOW_TRACKING_PASSWORD",
              "MLFLOW_TRACKING_TOKEN", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "PREFECT_API_KEY",
              "PREFECT_API_AUTH_STRING")
_SECRET_SUFFIXES = ("_TOKEN", "_SECRET", "_PASSWORD", "_PASSWD", "_KEY")
MIN_SECRET_LENGTH = 6  # shorter values are too likely to be ordinary words or numbers
# Linear time on any line: both patterns start at a fixed literal ("://", "?" or "&"), and
# what follows stops at "/", whitespace or "&", so the text after one start never overlaps
# the next and a failed match backtracks at most over its own short run.
_URL_PASSWORD = re.compile(r"(://[^\s/?#@:]*:)[^\s/?#]*@")
_QUERY_SECRET = re.compile(
    r"([?&](?:access_token|refresh_token|id_token|token|api_?key|apikey|password|secret"
    r"|client_secret|signature|sig|x-amz-signature|x-amz-security-token)=)[^&\s#\"']*",
    re.IGNORECASE)
# Credential-like key names, as whole words of the key ("hf_token", "apiKey", "db.password"),
# so that hyperparameters such as max_new_tokens, tokenizer or pad_token_id are not masked.
_SECRET_KEY = re.compile(
    r"(?i)(?<![a-z])(secret|password|passwd|token(?!_?ids?(?![a-z]))|credentials?|access_?key"
    r"|api_?key|private_?key)(?![a-z])")


# ----------------------------------------------------------------------------- secrets


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of the credential variables (:data:`SECRET_ENV` and names ending in a credential
    suffix) of ``environ`` (default: this process's environment), :data:`MIN_SECRET_LENGTH`
    characters or longer."""
    return [value for name, value in (os.environ if environ is None else environ).items()
            if is_secret_env(name) and len(value) >= MIN_SECRET_LENGTH]


def is_secret_env(name: str) -> bool:
    """Whether environment variable ``name`` holds a credential (see :func:`secret_values`)."""
    return name in SECRET_ENV or name.upper().endswith(_SECRET_SUFFIXES)


def scrub(text: str, secrets: Iterable[str] | None = None) -> str:
    """``text`` with credentials masked as ``***`` (see the module docstring): secret values
    (default :func:`secret_values`), URL passwords and credential query parameters."""
    for secret in sorted(secret_values() if secrets is None else secrets, key=len, reverse=True):
        if len(secret) >= MIN_SECRET_LENGTH:
            text = text.replace(secret, MASK)
    if "://" in text:
        text = _URL_PASSWORD.sub(rf"\1{MASK}@", text)
    if "=" in text:
        text = _QUERY_SECRET.sub(rf"\1{MASK}", text)
    return text


def is_secret_key(key: Any) -> bool:
    """Whether a key names a credential (``aws_secret_access_key``, ``hfToken``, ``password``)."""
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", str(key))
    return bool(_SECRET_KEY.search(words))


def redact(mapping: Any, secrets: list[str] | None = None) -> Any:
    """A copy of ``mapping`` (nested dicts/lists) with credential-named keys' values masked
    as ``***`` and every string :func:`scrub`-bed."""
    secrets = secret_values() if secrets is None else secrets
    if isinstance(mapping, dict):
        return {k: MASK if is_secret_key(k) and v not in (None, "") else redact(v, secrets)
                for k, v in mapping.items()}
    if isinstance(mapping, (list, tuple)):
        return [redact(v, secrets) for v in mapping]
    if isinstance(mapping, str):
        return scrub(mapping, secrets)
    return mapping


# ----------------------------------------------------------------------------- logging


class ScrubFilter(logging.Filter):
    """Masks credentials in a log record: the message is formatted (``record.getMessage()``),
    scrubbed and stored with ``args = ()``, so a secret passed as an argument is masked too; a
    traceback is formatted and scrubbed into ``record.exc_text``, which
    ``logging.Formatter.format`` then uses instead of formatting the exception again.

    :func:`scrub_log_records` applies it to every record as it is created. On a handler of
    your own it masks what that handler emits (a logger's filters would miss the records of
    its child loggers; Python docs, "Filter Objects").
    """

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: leave it for the handler to report
            return True
        record.msg, record.args = scrub(message), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True


def scrub_log_records() -> None:
    """From now on, pass every log record this process creates through :class:`ScrubFilter`.

    A record factory (``logging.setLogRecordFactory``; every ``Logger.makeRecord`` calls it)
    rather than filters on handlers, because libraries bring handlers of their own after
    logging is set up: importing mlflow gives the ``mlflow`` logger its own stderr handler
    with ``propagate = False`` (mlflow/utils/logging_utils.py ``_configure_mlflow_loggers``),
    and so do transformers and DeepSpeed; Prefect's console and API handlers come from its
    logging.yml. The factory sees the records of all of them. Idempotent.
    """
    make_record = logging.getLogRecordFactory()
    if getattr(make_record, "scrubs", False):
        return

    def scrubbed_record(*args, **kwargs) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        _SCRUB.filter(record)
        return record

    scrubbed_record.scrubs = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(scrubbed_record)


_SCRUB = ScrubFilter()


def setup_logging(level: str | None = None) -> None:
    """Root logger to stderr with timestamps; chatty libraries at WARNING; warnings logged;
    every record scrubbed of credentials (:func:`scrub_log_records`). Idempotent."""
    level = level or os.environ.get("R1FLOW_LOG_LEVEL", "INFO")
    root = logging.getLogger()
    if not getattr(root, "_r1flow", False):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
        root.addHandler(handler)
        root._r1flow = True  # type: ignore[attr-defined]
    root.setLevel(level)
    for name in _QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.captureWarnings(True)  # warnings become records of "py.warnings", so they are scrubbed
    scrub_log_records()


_WARNED: set[tuple[str, str]] = set()


def warn_once(logger: logging.Logger, key: str, message: str, *args) -> None:
    """Log ``message`` at WARNING the first time this process sees ``key`` for ``logger``: a
    reward runs every step, and the same data problem would otherwise flood the log."""
    if (logger.name, key) not in _WARNED:
        _WARNED.add((logger.name, key))
        logger.warning(message, *args)
