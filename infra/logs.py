"""Logging set up once per process (CLI entry points call :func:`setup_logging`)."""

from __future__ import annotations

import logging
import os

_QUIET = ("DeepSpeed", "deepspeed", "torch.distributed", "httpx", "urllib3", "filelock")


def setup_logging(level: str | None = None) -> None:
    """Root logger to stderr with timestamps; chatty libraries at WARNING. Idempotent."""
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


_WARNED: set[tuple[str, str]] = set()


def warn_once(logger: logging.Logger, key: str, message: str, *args) -> None:
    """Log ``message`` at WARNING the first time this process sees ``key`` for ``logger``: a
    reward runs every step, and the same data problem would otherwise flood the log."""
    if (logger.name, key) not in _WARNED:
        _WARNED.add((logger.name, key))
        logger.warning(message, *args)
