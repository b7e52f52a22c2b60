"""The one row schema shared by every dataset in the project.

A row is a plain ``dict``. Every row has ``id`` (unique within its dataset), ``prompt`` (the
bare user question, no chat template or instruction suffix) and ``source`` (benchmark name or
file stem). A row is graded either by ``answer`` (gold final answer, already extracted) or by
``tests`` + ``entry_point`` (Python code defining ``check(candidate)``, as in HumanEval).
Any further columns (``numbers`` for countdown, ``solution``, ...) are kept as they are.

A value of ``None`` counts as missing, because Parquet and the hub store absent cells as null.
"""

from __future__ import annotations

from typing import Any

ID = "id"
PROMPT = "prompt"
SOURCE = "source"
ANSWER = "answer"
TESTS = "tests"
ENTRY_POINT = "entry_point"

REQUIRED_FIELDS = (ID, PROMPT, SOURCE)
CODE_FIELDS = (TESTS, ENTRY_POINT)


class DatasetError(ValueError):
    """A bad row or line in a dataset, located by file, line (or row) and field.

    ``str(err)`` reads like ``gsm8k/test.jsonl line 17: field 'answer' missing``. ``line`` is
    1-based for JSONL files and the 0-based row index (``unit="row"``) for Parquet and hub data.
    """

    def __init__(
        self,
        problem: str,
        *,
        path: Any = None,
        line: int | None = None,
        field: str | None = None,
        unit: str = "line",
    ) -> None:
        self.problem = problem
        self.path = str(path) if path is not None else None
        self.line = line
        self.field = field
        self.unit = unit
        where = self.path or "<rows>"
        if line is not None:
            where = f"{where} {unit} {line}"
        what = f"field '{field}' {problem}" if field else problem
        super().__init__(f"{where}: {what}")

    def __reduce__(self):
        # Keyword-only __init__ would break the default pickling that process pools rely on.
        kwargs = {"path": self.path, "line": self.line, "field": self.field, "unit": self.unit}
        return (_rebuild_error, (self.problem, kwargs))


def _rebuild_error(problem: str, kwargs: dict) -> DatasetError:
    return DatasetError(problem, **kwargs)


def _check_str(row: dict, field: str, *, path: Any, line: int | None, unit: str) -> None:
    value = row.get(field)
    if value is None:
        raise DatasetError("missing", path=path, line=line, field=field, unit=unit)
    if not isinstance(value, str):
        problem = f"must be a string, got {type(value).__name__} {value!r:.40}"
        raise DatasetError(problem, path=path, line=line, field=field, unit=unit)
    if not value.strip():
        raise DatasetError("is empty", path=path, line=line, field=field, unit=unit)


def validate_row(
    row: Any, *, path: Any = None, line: int | None = None, unit: str = "line"
) -> dict:
    """Check that ``row`` follows the schema and return it unchanged.

    Raises:
        DatasetError: naming ``path``, ``line`` and the first offending field, when a required
            field is missing, not a string or empty, or when the row has neither ``answer`` nor
            both ``tests`` and ``entry_point``.
    """
    if not isinstance(row, dict):
        problem = f"expected a JSON object, got {type(row).__name__}"
        raise DatasetError(problem, path=path, line=line, unit=unit)
    for field in REQUIRED_FIELDS:
        _check_str(row, field, path=path, line=line, unit=unit)
    has_code = any(row.get(f) is not None for f in CODE_FIELDS)
    if row.get(ANSWER) is not None or not has_code:
        _check_str(row, ANSWER, path=path, line=line, unit=unit)
    if has_code:
        for field in CODE_FIELDS:
            _check_str(row, field, path=path, line=line, unit=unit)
    return row
