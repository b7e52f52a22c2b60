"""Great Expectations suites, as code, for every dataset a stage writes (DESIGN contract 5).

A suite is a function returning a list of GX 1.x expectations, registered in :data:`SUITES`
under the dataset's name; each expectation carries ``meta={"reason": "<one word>"}`` saying
why the rule exists. Adding a suite for a new dataset is one small function plus one
registry line. Validation runs on an ephemeral GX context: the rows become a pandas
DataFrame, a whole-dataframe batch definition yields one batch, and ``batch.validate``
checks the suite. Nothing is kept on disk except what :func:`write_checked_jsonl` writes.

Per-source rules use GX 1.x row conditions (``Column("source").is_in(...)``), which the
pandas engine turns into a ``DataFrame.query``; the string ``condition_parser="pandas"`` form
is deprecated since GX 1.9 and is not used.

Derived columns, computed here in pandas before validation because GX has no expectation for
them (each is documented in :data:`DERIVED`):

- ``is_code``: the row is graded by unit tests (has ``tests`` or ``entry_point``), as in
  :func:`data.schema.validate_row`; code rows skip the answer rules and get the code rules.
- ``numbers_ok``: ``numbers`` is a non-empty list of positive ints; null when ``numbers`` is
  absent (column rules skip nulls, so presence is a separate rule where it is required).
- ``n_scripts``: how many Unicode scripts the reasoning (data/completions.py: before the last
  ``</think>``, else the whole completion) is written in, by the words of :mod:`data.language` (one-letter Latin or
  Greek variables such as ``x``, ``π`` and LaTeX commands are not language); Han, Hiragana and
  Katakana count as one (``CJK``) because Japanese writes one language in all three.
- ``switched``: the row declares ``code_switched`` (the base corpus's deliberate language
  switches, data/synthetic.py), which the corpus's language rule lets through.
- ``summary``: the stripped text after the last ``</think>`` of a closed reasoning block; null
  without one.
- ``boxed_ok``: the summary's boxed answer is the gold ``answer`` by data/answers.py's rules
  (spaces, ``$``, thousands commas aside, ``18.0`` equal to ``18``); null without an answer or a
  summary.
  GX compares a column with a constant, not one column's text with a part of another's.

Usage from a data stage::

    report = write_checked_jsonl(rows, out_dir / "prompts.jsonl", "prompts",
                                 report_dir=out_dir / "quality")

which validates first, writes the rows atomically only on success, and otherwise raises
:class:`DataQualityError` naming the file, the failed rules and example rows, leaving the
previous file untouched. ``report_dir`` receives ``<suite>.json`` and the Data Docs page
``<suite>.html`` in both outcomes, for logging as run artifacts.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from data.answers import same_answer
from data.completions import boxed_answer, parse_completion
from data.language import script_label, scripts_in
from data.loaders import write_jsonl

logger = logging.getLogger(__name__)

# Sources whose reward checker compares integers (math-verify / exact match on the number).
INTEGER_SOURCES = ("arithmetic", "countdown", "gsm8k", "aime24")
# Sources whose boxed answer must equal the gold one. Countdown boxes an expression, and
# free-form answers (MATH) may be boxed in another equivalent form that only math-verify
# (model/, out of data/'s reach) can judge: those need a non-empty \boxed{} only.
EXACT_SOURCES = ("arithmetic", "gsm8k", "aime24")
KINDS = ("reasoning", "general")  # the two halves of the SFT mix (paper 2.3.3)
MAX_PROMPT_CHARS = 8_000  # well above HumanEval's longest prompt; longer is a broken join
MAX_COMPLETION_CHARS = 16_000  # corpus documents are a few hundred chars; longer is runaway text
MAX_EXAMPLES = 5  # example rows per failed rule in errors and reports

_INTEGER = r"^-?\d+$"
_NON_BLANK = r"\S"
_THINK_BLOCK = r"(?s)^\s*<think>.*</think>"
_IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]*$"
_ANSWER_TAG = r"</?answer>"
_BOXED = r"\\boxed\{\s*[^\s}]"  # a \boxed{} with something in it
_RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": MAX_EXAMPLES}


# ----------------------------------------------------------------------------- derived columns

def scripts_of(text: Any) -> list[str]:
    """Sorted distinct script labels of the reasoning in a completion (see the module docstring)."""
    if not isinstance(text, str):
        return []
    return sorted({script_label(s) for s in scripts_in(parse_completion(text).reasoning_or_text)})


def _numbers_ok(value: Any) -> bool | None:
    if value is None or (isinstance(value, float) and value != value):  # absent / NaN
        return None
    return (isinstance(value, (list, tuple)) and len(value) > 0
            and all(type(x) is int and x > 0 for x in value))


def _is_code(row: dict) -> bool:
    return row.get("tests") is not None or row.get("entry_point") is not None


def _summary(completion: Any) -> str | None:
    """The summary after a closed reasoning block (data/completions.py); None without one."""
    if not isinstance(completion, str):
        return None
    parsed = parse_completion(completion)
    return parsed.summary if parsed.tagged and parsed.closed else None


def _boxed_ok(row: dict) -> bool | None:
    """The summary's boxed answer is the gold one by data/answers.py's rules (``$18.90`` is
    ``18.9``); None without an answer or a summary."""
    answer, summary = row.get("answer"), _summary(row.get("completion"))
    if not isinstance(answer, str) or not answer.strip() or summary is None:
        return None
    boxed = boxed_answer(summary)
    return boxed is not None and bool(same_answer(boxed, answer))


# name -> (row -> value, source column shown in examples)
DERIVED: dict[str, tuple[Callable[[dict], Any], str]] = {
    "is_code": (_is_code, "tests"),
    "numbers_ok": (lambda row: _numbers_ok(row.get("numbers")), "numbers"),
    "n_scripts": (lambda row: len(scripts_of(row.get("completion"))), "completion"),
    "switched": (lambda row: row.get("code_switched") is True, "code_switched"),
    "summary": (lambda row: _summary(row.get("completion")), "completion"),
    "boxed_ok": (_boxed_ok, "completion"),
}


# ----------------------------------------------------------------------------- suites


def _expect(kind: str, reason: str, **kwargs: Any):
    """One GX expectation of class ``kind`` carrying its one-word ``reason``."""
    import great_expectations.expectations as gxe

    return getattr(gxe, kind)(meta={"reason": reason}, **kwargs)


def _text(column: str, **kwargs: Any):
    """Non-null values of ``column`` are ``str``, as :mod:`data.schema` requires."""
    return _expect("ExpectColumnValuesToBeOfType", "schema", column=column, type_="str", **kwargs)


def _row_rules() -> list:
    """What every dataset of the row schema (:mod:`data.schema`) must satisfy."""
    return [
        _expect("ExpectTableRowCountToBeBetween", "nonempty", min_value=1),
        _expect("ExpectColumnValuesToNotBeNull", "traceability", column="id"),
        _text("id"),
        _expect("ExpectColumnValuesToBeUnique", "identity", column="id"),
        _expect("ExpectColumnValuesToNotBeNull", "provenance", column="source"),
        _text("source"),
        _expect("ExpectColumnValuesToNotBeNull", "input", column="prompt"),
        _text("prompt"),
        _expect("ExpectColumnValuesToMatchRegex", "content", column="prompt", regex=_NON_BLANK),
        _expect("ExpectColumnValueLengthsToBeBetween", "context", column="prompt",
                min_value=1, max_value=MAX_PROMPT_CHARS),
    ]


def _answer_rules(scope=None) -> list:
    """Answers the reward checker can parse: integers where it compares numbers.

    ``scope`` (a GX row condition) limits the rules to some rows, e.g. the reasoning half of
    the SFT mix; all rows by default.
    """
    from great_expectations.expectations.row_conditions import Column

    graded_by_answer = Column("is_code") == False  # noqa: E712 (builds a condition)
    integer = Column("source").is_in(INTEGER_SOURCES)
    if scope is not None:
        graded_by_answer, integer = graded_by_answer & scope, integer & scope
    free_form = Column("source").is_not_in(INTEGER_SOURCES) & graded_by_answer
    return [
        _expect("ExpectColumnValuesToNotBeNull", "reward", column="answer",
                row_condition=graded_by_answer),
        _text("answer"),
        _expect("ExpectColumnValuesToMatchRegex", "verifiable", column="answer", regex=_INTEGER,
                row_condition=integer),
        _expect("ExpectColumnValuesToMatchRegex", "gradable", column="answer", regex=_NON_BLANK,
                row_condition=free_form),
    ]


def _code_rules() -> list:
    """Code rows (HumanEval style) need tests to run and a function name to call."""
    from great_expectations.expectations.row_conditions import Column

    code = Column("is_code") == True  # noqa: E712 (builds a condition)
    return [
        _expect("ExpectColumnValuesToNotBeNull", "testable", column="tests", row_condition=code),
        _text("tests"),
        _expect("ExpectColumnValuesToMatchRegex", "testable", column="tests", regex=_NON_BLANK,
                row_condition=code),
        _expect("ExpectColumnValuesToNotBeNull", "callable", column="entry_point",
                row_condition=code),
        _text("entry_point"),
        _expect("ExpectColumnValuesToMatchRegex", "callable", column="entry_point",
                regex=_IDENTIFIER, row_condition=code),
    ]


def _countdown_rules(*, required: bool) -> list:
    """Countdown rows carry the numbers the countdown reward checks usage against."""
    from great_expectations.expectations.row_conditions import Column

    countdown = Column("source") == "countdown"
    rules = [_expect("ExpectColumnValuesToBeInSet", "solvable", column="numbers_ok",
                     value_set=[True], row_condition=countdown)]
    if required:
        rules.insert(0, _expect("ExpectColumnValuesToNotBeNull", "solvable", column="numbers",
                                row_condition=countdown))
    return rules


def _completion_rules() -> list:
    """Completions the base model learns the R1-Zero format and one language from.

    An answer outside ``<answer>`` tags, and a reasoning that switches language midway on a
    row that says so (``code_switched``), are deliberate noise in the corpus and pass.
    """
    from great_expectations.expectations.row_conditions import Column

    return [
        _expect("ExpectColumnValuesToNotBeNull", "supervision", column="completion"),
        _text("completion"),
        _expect("ExpectColumnValuesToMatchRegex", "format", column="completion",
                regex=_THINK_BLOCK),
        _expect("ExpectColumnValueLengthsToBeBetween", "length", column="completion",
                min_value=1, max_value=MAX_COMPLETION_CHARS),
        _expect("ExpectColumnValuesToBeBetween", "language", column="n_scripts",
                min_value=0, max_value=1,
                row_condition=Column("switched") == False),  # noqa: E712 (builds a condition)
    ]


def corpus_suite() -> list:
    """The base pretraining corpus: prompt + worked completion + gold answer."""
    return [*_row_rules(), *_answer_rules(), *_countdown_rules(required=False),
            *_completion_rules()]


def prompts_suite() -> list:
    """RL and evaluation prompt sets: graded by answer or by unit tests."""
    return [*_row_rules(), *_answer_rules(), *_code_rules(), *_countdown_rules(required=True)]


SUITES: dict[str, Callable[[], list]] = {
    "corpus": corpus_suite,
    "prompts": prompts_suite,
}


# ----------------------------------------------------------------------------- reports


@dataclass
class Failure:
    """One failed expectation: what rule, on which column, why it exists, which rows broke it.

    ``examples`` are dicts ``{"row": 0-based index into the rows, "id", "value"}``; ``error``
    is set instead when the expectation could not be evaluated at all.
    """

    rule: str
    column: str | None
    reason: str
    unexpected_count: int | None
    examples: list[dict] = field(default_factory=list)
    error: str | None = None

    def describe(self) -> str:
        """The rule in one line: ``expect_column_values_to_be_unique on 'id' [identity]``."""
        where = f" on {self.column!r}" if self.column else ""
        return f"{self.rule}{where} [{self.reason}]"


@dataclass
class QualityReport:
    """The outcome of validating rows against one suite; ``result`` is GX's raw JSON result."""

    suite: str
    success: bool
    n_rows: int
    failures: list[Failure]
    statistics: dict
    result: dict
    _ge_result: Any = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        """A JSON-able dict of everything but the live GX object."""
        data = asdict(self)
        data.pop("_ge_result")
        return data


class DataQualityError(ValueError):
    """A dataset failed its suite; the message names the path, each failed rule and examples."""

    def __init__(self, report: QualityReport, *, path: Any = None) -> None:
        self.report = report
        self.suite = report.suite
        self.path = str(path) if path is not None else None
        self.failures = report.failures
        super().__init__(_error_message(report, self.path))


def _error_message(report: QualityReport, path: str | None) -> str:
    lines = [f"{path or '<rows>'}: {len(report.failures)} data-quality rule(s) of suite "
             f"{report.suite!r} failed on {report.n_rows} rows"]
    for failure in report.failures:
        count = "error" if failure.error else f"{failure.unexpected_count} unexpected"
        lines.append(f"  - {failure.describe()}: {count}")
        if failure.error:
            lines.append(f"      {failure.error}")
        for ex in failure.examples:
            lines.append(f"      row {ex['row']} id={ex['id']!r}: {ex['value']}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- validation


def _frame(rows: list[dict], expectations: list):
    """The rows as a DataFrame with derived columns and every column the suite names."""
    import pandas as pd

    frame = pd.DataFrame.from_records(rows) if rows else pd.DataFrame(index=pd.RangeIndex(0))
    for name, (derive, _) in DERIVED.items():
        frame[name] = pd.Series([derive(row) for row in rows], index=frame.index, dtype=object)
    frame["is_code"] = frame["is_code"].astype(bool)
    frame["n_scripts"] = frame["n_scripts"].astype(int)
    frame["switched"] = frame["switched"].astype(bool)
    for exp in expectations:
        column = getattr(exp, "column", None)
        if column and column not in frame.columns:
            frame[column] = pd.Series([None] * len(frame), index=frame.index, dtype=object)
    return frame


def _validate_frame(frame, name: str, expectations: list):
    """Run one suite over a DataFrame on an ephemeral GX context; returns GX's result."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    gx_logger = logging.getLogger("great_expectations")
    if gx_logger.level == logging.NOTSET:  # its INFO lines repeat on every call; keep warnings
        gx_logger.setLevel(logging.WARNING)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    batch_definition = (context.data_sources.add_pandas("r1flow").add_dataframe_asset(name)
                        .add_batch_definition_whole_dataframe("rows"))
    batch = batch_definition.get_batch(batch_parameters={"dataframe": frame})
    suite = gx.ExpectationSuite(name=name, expectations=expectations)
    return batch.validate(suite, result_format=_RESULT_FORMAT)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _example(rows: list[dict], frame, index: int, column: str | None) -> dict:
    row = rows[index]
    if column in DERIVED:
        source, derived = DERIVED[column][1], frame.at[index, column]
        derived = derived.item() if hasattr(derived, "item") else derived  # numpy -> Python
        value = f"{column}={derived!r} from {source}={_shown(row.get(source))}"
        if column == "n_scripts":
            value = f"{column}={derived!r} {scripts_of(row.get(source))}"
        elif column == "summary":
            value = f"{column}={_shown(derived)}"
        elif column == "boxed_ok":  # the completion's head says nothing of its boxed answer
            boxed = boxed_answer(_summary(row.get(source)) or "")
            value = f"{column}={derived!r}: boxed {_shown(boxed)}, answer {_shown(row.get('answer'))}"
    else:
        value = _shown(row.get(column)) if column else ""
    return {"row": int(index), "id": row.get("id"), "value": value}


def _failure(rows: list[dict], frame, outcome: dict) -> Failure:
    config, result = outcome["expectation_config"], outcome.get("result") or {}
    column = config["kwargs"].get("column")
    indices = result.get("partial_unexpected_index_list") or []
    error = None
    if (outcome.get("exception_info") or {}).get("raised_exception"):
        error = outcome["exception_info"].get("exception_message")
    return Failure(
        rule=config["type"],
        column=column,
        reason=(config.get("meta") or {}).get("reason", ""),
        unexpected_count=result.get("unexpected_count"),
        examples=[_example(rows, frame, i, column) for i in indices[:MAX_EXAMPLES]],
        error=error,
    )


def validate_rows(rows: list[dict], suite: str) -> QualityReport:
    """Validate ``rows`` against the registered suite ``suite`` and return the report.

    Raises:
        ValueError: for an unknown suite name, listing the registered ones.
    """
    if suite not in SUITES:
        raise ValueError(f"unknown data-quality suite {suite!r}; registered: {sorted(SUITES)}")
    rows = list(rows)
    expectations = SUITES[suite]()
    frame = _frame(rows, expectations)
    ge_result = _validate_frame(frame, suite, expectations)
    raw = ge_result.to_json_dict()
    failures = [_failure(rows, frame, r) for r in raw["results"] if not r["success"]]
    report = QualityReport(suite=suite, success=bool(raw["success"]), n_rows=len(rows),
                           failures=failures, statistics=raw["statistics"], result=raw,
                           _ge_result=ge_result)
    logger.info("data quality %r: %d rows, %d/%d rules passed", suite, len(rows),
                raw["statistics"]["successful_expectations"],
                raw["statistics"]["evaluated_expectations"])
    return report


def check_rows(rows: list[dict], suite: str, *, path: Any = None) -> QualityReport:
    """:func:`validate_rows`, raising :class:`DataQualityError` (naming ``path``) on failure."""
    report = validate_rows(rows, suite)
    if not report.success:
        raise DataQualityError(report, path=path)
    return report


# ----------------------------------------------------------------------------- artifacts


def _failures_section(report: QualityReport):
    """A Data Docs section listing failed rules with their reasons and example rows."""
    from great_expectations.render.components import RenderedSectionContent, RenderedTableContent

    table = [[f.rule, f.column or "", f.reason, f.error or str(f.unexpected_count),
              "; ".join(f"row {e['row']} {e['id']}: {e['value']}" for e in f.examples)]
             for f in report.failures]
    block = RenderedTableContent(
        content_block_type="table", header=f"r1flow: failed rules of suite {report.suite}",
        header_row=["expectation", "column", "reason", "unexpected", "examples"],
        table=table or [["none", "", "", "0", ""]],
        styling={"body": {"classes": ["table", "table-sm"]}},
    )
    return RenderedSectionContent(content_blocks=[block], section_name="Failed rules")


def _render_data_docs(report: QualityReport) -> str:
    """The GX Data Docs validation page for ``report``, led by a failed-rules table."""
    from great_expectations.render.renderer import ValidationResultsPageRenderer
    from great_expectations.render.view import DefaultJinjaPageView

    document = ValidationResultsPageRenderer().render(report._ge_result)
    document.sections.insert(1, _failures_section(report))
    return DefaultJinjaPageView().render(document)


def _write_report(report: QualityReport, report_dir: Path | str, path: Any) -> None:
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    payload = {"path": str(path), **report.to_dict()}
    (report_dir / f"{report.suite}.json").write_text(
        json.dumps(payload, indent=2, default=str), encoding="utf-8")
    (report_dir / f"{report.suite}.html").write_text(_render_data_docs(report), encoding="utf-8")
    logger.info("data-quality report for %s in %s", path, report_dir)


def write_checked_jsonl(
    rows: Iterable[dict], path: Path | str, suite: str, *, report_dir: Path | str | None = None
) -> QualityReport:
    """Validate ``rows`` against ``suite``, then write them atomically to ``path``.

    On failure nothing is written to ``path`` (a previous file stays byte-for-byte intact) and
    :class:`DataQualityError` is raised. With ``report_dir``, ``<suite>.json`` (the report) and
    ``<suite>.html`` (the Data Docs page) are written there in both outcomes, before raising.
    In a job of several ranks every rank validates and only rank 0 writes.
    """
    from infra import launch

    rows = list(rows)
    report = validate_rows(rows, suite)
    writer = launch.rank() == 0  # every rank checks (and fails alike); rank 0 alone writes
    if report_dir is not None and writer:
        _write_report(report, report_dir, path)
    if not report.success:
        raise DataQualityError(report, path=path)
    if writer:
        write_jsonl(rows, path)
    return report


# ----------------------------------------------------------------------------- reward-model data

SPLIT_VALUES = ("train", "test")


def _response_rules(column: str) -> list:
    """A scored response: present, text, not blank, not runaway."""
    return [
        _expect("ExpectColumnValuesToNotBeNull", "supervision", column=column),
        _text(column),
        _expect("ExpectColumnValuesToMatchRegex", "content", column=column, regex=_NON_BLANK),
        _expect("ExpectColumnValueLengthsToBeBetween", "length", column=column,
                min_value=1, max_value=MAX_COMPLETION_CHARS),
    ]


def _split_rules() -> list:
    return [
        _expect("ExpectColumnValuesToNotBeNull", "holdout", column="split"),
        _expect("ExpectColumnValuesToBeInSet", "holdout", column="split", value_set=list(SPLIT_VALUES)),
    ]


def preferences_suite() -> list:
    """Helpfulness pairs (data/preferences.py): two different non-blank responses per prompt."""
    return [
        *_row_rules(), *_response_rules("chosen"), *_response_rules("rejected"),
        _expect("ExpectSelectColumnValuesToBeUniqueWithinRecord", "contrast",
                column_list=["chosen", "rejected"]),
        *_split_rules(),
    ]


def harmlessness_suite() -> list:
    """Pointwise safety rows (data/preferences.py): a response and a 0/1 label (1 = safe)."""
    return [
        *_row_rules(), *_response_rules("response"),
        _expect("ExpectColumnValuesToNotBeNull", "label", column="label"),
        _expect("ExpectColumnValuesToBeInSet", "binary", column="label", value_set=[0, 1]),
        *_split_rules(),
    ]


SUITES["preferences"] = preferences_suite
SUITES["harmlessness"] = harmlessness_suite


# ----------------------------------------------------------------------------- readable completions


def _readable_rules() -> list:
    """Completions in the readable format of cold start, the SFT mix and distillation:
    ``<think>`` reasoning ``</think>`` then a non-blank summary, no ``<answer>`` tags left, the
    reasoning in one language."""
    return [
        _expect("ExpectColumnValuesToNotBeNull", "supervision", column="completion"),
        _text("completion"),
        _expect("ExpectColumnValuesToMatchRegex", "format", column="completion",
                regex=_THINK_BLOCK),
        _expect("ExpectColumnValuesToMatchRegex", "summary", column="summary", regex=_NON_BLANK),
        _expect("ExpectColumnValuesToNotMatchRegex", "readable", column="completion",
                regex=_ANSWER_TAG),
        _expect("ExpectColumnValueLengthsToBeBetween", "length", column="completion",
                min_value=1, max_value=MAX_COMPLETION_CHARS),
        _expect("ExpectColumnValuesToBeBetween", "language", column="n_scripts",
                min_value=0, max_value=1),
    ]


def _boxed_rules(scope) -> list:
    """Rows in ``scope`` state their answer in a ``\\boxed{}`` of the summary, which the
    ``accuracy`` reward grades; where answers compare exactly (:data:`EXACT_SOURCES`), the
    last boxed answer is the gold one (``boxed_ok``)."""
    from great_expectations.expectations.row_conditions import Column

    return [
        _expect("ExpectColumnValuesToMatchRegex", "boxed", column="summary", regex=_BOXED,
                row_condition=scope),
        _expect("ExpectColumnValuesToBeInSet", "agreement", column="boxed_ok", value_set=[True],
                row_condition=scope & Column("source").is_in(EXACT_SOURCES)),
    ]


def sft_mix_suite() -> list:
    """The SFT mix of rejection sampling (paper 2.3.3): ``kind`` ``reasoning`` rows (graded,
    answer boxed) and ``general`` rows (facts, instructions, safety; answer may be empty)."""
    from great_expectations.expectations.row_conditions import Column

    reasoning = Column("kind") == "reasoning"
    graded = reasoning & (Column("is_code") == False)  # noqa: E712 (builds a condition)
    return [
        *_row_rules(),
        _expect("ExpectColumnValuesToNotBeNull", "mixture", column="kind"),
        _expect("ExpectColumnValuesToBeInSet", "mixture", column="kind", value_set=list(KINDS)),
        *_readable_rules(), *_answer_rules(reasoning), *_boxed_rules(graded),
    ]


def traces_suite() -> list:
    """Readable reasoning traces with a gold answer: the teacher's correct samples that
    distillation trains on (paper 2.4), and the cold-start set (2.3.1)."""
    from great_expectations.expectations.row_conditions import Column

    graded = Column("is_code") == False  # noqa: E712 (builds a condition)
    return [*_row_rules(), *_readable_rules(), *_answer_rules(), *_boxed_rules(graded),
            *_countdown_rules(required=False)]


def prompt_mix_suite() -> list:
    """The prompt mix of all-scenario RL: the ``prompts`` rules, the answer rules on reasoning
    rows only (general prompts have no gold answer), and a ``kind`` on every row."""
    from great_expectations.expectations.row_conditions import Column

    reasoning = Column("kind") == "reasoning"
    return [*_row_rules(),
            _expect("ExpectColumnValuesToNotBeNull", "mixture", column="kind"),
            _expect("ExpectColumnValuesToBeInSet", "mixture", column="kind", value_set=list(KINDS)),
            *_answer_rules(reasoning), *_code_rules(), *_countdown_rules(required=True)]


SUITES["sft_mix"] = sft_mix_suite
SUITES["traces"] = traces_suite
SUITES["prompt_mix"] = prompt_mix_suite
