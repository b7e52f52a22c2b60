"""infra.logs.scrub and where it is applied outside MLflow: log handlers and the output of
subprocesses (infra.proc), which the Prefect log receives line by line."""

from __future__ import annotations

import io
import logging
import os
import sys
import time

import pytest

from infra import logs, proc

PASSWORD = "pw-Zq81x"  # not in any environment variable: only the URL rule can mask it
TOKEN = "tok-5c1d9e77a0"


@pytest.fixture
def no_secrets(monkeypatch):
    """No credential variable inherited from the caller."""
    for name in [n for n in os.environ if logs.is_secret_env(n)]:
        monkeypatch.delenv(name)
    return monkeypatch


def test_url_password_is_masked_and_user_kept(no_secrets):
    line = (f"MLflow at http://ann:{PASSWORD}@mlflow:5000/x and postgresql://bo:{PASSWORD}@db/r1, "
            f"odd one s3://k:p@ss{PASSWORD}@host/b")
    assert logs.scrub(line) == ("MLflow at http://ann:***@mlflow:5000/x and postgresql://bo:***@db/r1, "
                                "odd one s3://k:***@host/b")
    assert logs.scrub("http://:secret-only@h") == "http://:***@h"


def test_secret_variable_values_are_masked(no_secrets):
    no_secrets.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI")
    no_secrets.setenv("MY_SERVICE_TOKEN", TOKEN)  # any *_TOKEN, *_SECRET, *_PASSWORD, *_KEY
    no_secrets.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")  # an identifier, kept
    text = f"key AKIAEXAMPLE secret wJalrXUtnFEMI token {TOKEN}{TOKEN}"
    assert logs.scrub(text) == "key AKIAEXAMPLE secret *** token ******"


def test_short_values_and_plain_text_are_left_alone(no_secrets):
    no_secrets.setenv("HF_HUB_DISABLE_IMPLICIT_TOKEN", "1")
    no_secrets.setenv("DB_PASSWORD", "true")
    plain = ("step 1: reward 0.5, max_new_tokens=64 true; https://huggingface.co/Qwen/x?revision=main "
             "user@example.com a:b@c http://host:8080/p?key=value&page=2")
    assert logs.scrub(plain) == plain


def test_credential_query_parameters_are_masked(no_secrets):
    url = ("https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4&X-Amz-Credential=AKIA%2F2026"
           "&X-Amz-Signature=ab12cd&X-Amz-Security-Token=FwoG&part=1 and http://h/cb?token=abc#top")
    assert logs.scrub(url) == ("https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4&X-Amz-Credential=AKIA%2F2026"
                               "&X-Amz-Signature=***&X-Amz-Security-Token=***&part=1 and http://h/cb?token=***#top")


@pytest.mark.parametrize("line", ["a://" * 250_000, "http://u:" + "x" * 1_000_000, "://" + ":" * 1_000_000,
                                  "?token=&" * 125_000, "a" * 1_000_000 + "://", "http://u:p" + "@" * 1_000_000])
def test_long_lines_take_linear_time(no_secrets, line):
    started = time.perf_counter()
    logs.scrub(line)
    assert time.perf_counter() - started < 2.0  # quadratic would be ~1e12 steps


def _logger_to(name: str, handler: logging.Handler) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.handlers, logger.propagate = [handler], False  # as mlflow sets up its own logger
    logger.setLevel(logging.INFO)
    return logger


def test_filter_on_a_handler_scrubs_child_loggers_args_and_tracebacks(no_secrets):
    no_secrets.setenv("HF_TOKEN", TOKEN)
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(logs.ScrubFilter())
    _logger_to("r1flow-test-filter", handler)
    child = logging.getLogger("r1flow-test-filter.store")
    child.info("View run at %s", f"http://ann:{PASSWORD}@h/#/runs/1")
    try:
        raise ValueError(f"bad token {TOKEN}")
    except ValueError:
        child.exception("failed %d", 1)
    text = out.getvalue()
    assert "View run at http://ann:***@h/#/runs/1" in text and "failed 1" in text
    assert "ValueError: bad token ***" in text and PASSWORD not in text and TOKEN not in text


def test_every_record_is_scrubbed_once_set_up(no_secrets):
    no_secrets.setenv("PREFECT_API_KEY", TOKEN)
    factory = logging.getLogRecordFactory()
    out = io.StringIO()
    try:
        logs.scrub_log_records()
        logs.scrub_log_records()  # idempotent: one wrapper
        # A library logger with a handler of its own, made after logging was set up.
        library = _logger_to("r1flow-test-library", logging.StreamHandler(out))
        library.warning("key %s at %s", TOKEN, f"https://u:{PASSWORD}@h")
    finally:
        logging.setLogRecordFactory(factory)
    assert out.getvalue() == "key *** at https://u:***@h\n"


def test_stream_passes_scrubbed_lines_and_errors(no_secrets, tmp_path):
    # STAGE_API_KEY: a credential of the child only; PLAIN: not a credential variable, so only
    # the URL rule masks it.
    env = proc.tool_env({"STAGE_API_KEY": TOKEN, "PLAIN": PASSWORD})
    code = ("import os, sys; print('uri http://ann:%s@h:5000' % os.environ['PLAIN']); "
            "print('key', os.environ['STAGE_API_KEY'], end='\\r'); print('done'); sys.exit(int(sys.argv[1]))")
    seen: list[str] = []
    tail = proc.stream([sys.executable, "-c", code, "0"], cwd=tmp_path, env=env, on_line=seen.append)
    assert seen == tail == ["uri http://ann:***@h:5000", "key ***", "done"]

    with pytest.raises(proc.CommandError) as failed:
        proc.stream([sys.executable, "-c", code, "3", f"--url=http://x:{PASSWORD}@h"], cwd=tmp_path, env=env)
    message = str(failed.value)
    assert "exited with 3" in message and "uri http://ann:***@h:5000" in message and "--url=http://x:***@h" in message
    assert PASSWORD not in message + " ".join(failed.value.cmd) and TOKEN not in message


def test_command_error_of_run_is_scrubbed(no_secrets, tmp_path):
    no_secrets.setenv("MLFLOW_TRACKING_PASSWORD", TOKEN)
    with pytest.raises(proc.CommandError) as failed:
        proc.run([sys.executable, "-c", f"import sys; sys.exit('denied for {TOKEN}')"], cwd=tmp_path)
    assert "denied for ***" in str(failed.value) and TOKEN not in str(failed.value)
