"""Load benchmarks and user files into the schema of :mod:`data.schema`.

Three kinds of dataset spec are accepted by :func:`load_dataset`:

* a benchmark name (``gsm8k``, ``math500``, ``aime24``, ``humaneval``), read from the shared data
  folder in its published format (see ``shared/data/README.md``). GSM8K has a ``train`` and a
  ``test`` file; the other three are evaluation sets with a ``test`` split only;
* a local ``.jsonl``, ``.jsonl.gz`` or ``.parquet`` file whose rows already use the schema's
  field names, or are renamed to them with ``mapping``;
* a Hugging Face hub id (``owner/name``), read through the optional ``datasets`` package. The
  hub copies of the benchmarks get the same conversion as the local files.

MATH-500 and AIME prompts in the shared files end with a "Please reason step by step ..."
instruction; it is stripped so that ``prompt`` is the bare question (the hub copies lack it),
and the chat template adds its own instruction.

Synthetic tasks (``arithmetic``, ``countdown``, ...) are generated elsewhere, not loaded here.

Local files are checked against the limits below as they are read, and rows as they are written;
a breach is a DatasetError naming the file, the line (or row), the field and the rule. The
JSONL dialect is Python's: ``NaN``, ``Infinity`` and ``-Infinity`` are read as floats, because
:func:`write_jsonl` and the step logs write a diverged metric that way; the schema's fields are
strings, so :func:`data.schema.validate_row` refuses them there and only extra columns keep them.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
import tempfile
import zlib
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, NamedTuple

from data.schema import ANSWER, ENTRY_POINT, ID, PROMPT, SOURCE, TESTS, DatasetError, validate_row

logger = logging.getLogger(__name__)

SHARED_DATA_ENV = "R1FLOW_SHARED_DATA"
FILE_SUFFIXES = (".jsonl.gz", ".jsonl", ".parquet")
HUB_INSTALL_HINT = "pip install 'r1flow[hub]'"

# Longest JSONL line, in bytes of UTF-8 without the line break (Parquet: a row's size as such a
# line). The longest benchmark line is 3.4 KB and a row with a 32k-token reasoning trace about
# 150 KB, so 8 MiB leaves 50x headroom, while a file without line breaks (a binary blob, a
# whole dataset on one line) fails after reading 8 MiB instead of filling memory.
MAX_LINE_BYTES = 8 * 2**20
# Deepest nesting of objects and arrays in a row, the row itself being level 1. Rows are flat
# but for lists such as ``messages[2].content`` (level 3); 100 also keeps the checks far from
# Python's recursion limit (1000), where json.loads would fail.
MAX_DEPTH = 100
_TOO_LONG = f"longer than MAX_LINE_BYTES ({MAX_LINE_BYTES} bytes) as a JSON line"
_TOO_DEEP = f"nested deeper than MAX_DEPTH ({MAX_DEPTH} levels)"

_PROJECT_ROOT = Path(__file__).resolve().parent.parent
_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")
_REASON_SUFFIX = re.compile(
    r"\s*Please reason step by step, and put your final answer within \\boxed\{\}\.?\s*$"
)
_SURROGATE = re.compile(r"[\ud800-\udfff]")  # left unpaired by a JSON "\ud800" escape

Record = tuple[int, dict]  # (1-based line or 0-based row index, raw row)


class _BadField(Exception):
    """Raised by converters; turned into a DatasetError once file and line are known."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(field, problem)
        self.field, self.problem = field, problem


def _req(raw: dict, key: str) -> Any:
    value = raw.get(key)
    if value is None:
        raise _BadField(key, "missing")
    return value


def _extras(raw: dict, *consumed: str) -> dict:
    return {k: v for k, v in raw.items() if k not in consumed}


def _gsm8k_row(raw: dict, index: int, *, split: str = "test") -> dict:
    solution = _req(raw, "answer")
    if not isinstance(solution, str) or "#### " not in solution:
        raise _BadField("answer", "has no '#### ' final-answer line")
    answer = solution.rsplit("#### ", 1)[1].strip().replace(",", "")
    return {
        **_extras(raw, "question", "answer"),
        ID: f"gsm8k-{index:04d}" if split == "test" else f"gsm8k-{split}-{index:04d}",
        PROMPT: _req(raw, "question"),
        SOURCE: "gsm8k",
        ANSWER: answer,
        "solution": solution,
    }


def _boxed_row(raw: dict, index: int, *, source: str) -> dict:
    problem = _req(raw, "problem")
    prompt = _REASON_SUFFIX.sub("", problem) if isinstance(problem, str) else problem
    answer = _req(raw, "answer")
    return {
        **_extras(raw, "problem", "answer", "id"),
        ID: f"{source}-{index:04d}",
        PROMPT: prompt,
        SOURCE: source,
        # AIME copies on the hub store the answer as an int.
        ANSWER: str(answer).strip() if isinstance(answer, int) else answer,
    }


def _humaneval_row(raw: dict, index: int) -> dict:
    return {
        **_extras(raw, "task_id", "prompt", "test", "entry_point"),
        ID: _req(raw, "task_id"),
        PROMPT: _req(raw, "prompt"),
        SOURCE: "humaneval",
        TESTS: _req(raw, "test"),
        ENTRY_POINT: _req(raw, "entry_point"),
    }


class _Benchmark(NamedTuple):
    files: dict[str, str]  # split -> file relative to shared_data_dir()
    convert: Callable[..., dict]  # (raw, index) -> row; GSM8K's also takes split=
    hub_id: str


_BENCHMARKS = {
    "gsm8k": _Benchmark(
        {"train": "gsm8k/train.jsonl", "test": "gsm8k/test.jsonl"}, _gsm8k_row, "openai/gsm8k"
    ),
    "math500": _Benchmark(
        {"test": "math500/test.jsonl"}, partial(_boxed_row, source="math500"), "HuggingFaceH4/MATH-500"
    ),
    "aime24": _Benchmark(
        {"test": "aime24/test.jsonl"}, partial(_boxed_row, source="aime24"), "HuggingFaceH4/aime_2024"
    ),
    "humaneval": _Benchmark(
        {"test": "humaneval/HumanEval.jsonl.gz"}, _humaneval_row, "openai/openai_humaneval"
    ),
}
BENCHMARKS = tuple(_BENCHMARKS)
EVAL_ONLY_BENCHMARKS = tuple(name for name, b in _BENCHMARKS.items() if set(b.files) == {"test"})


def benchmark_splits(name: str) -> tuple[str, ...]:
    """The splits stored locally for benchmark ``name`` (KeyError for another name)."""
    return tuple(_BENCHMARKS[name].files)


def benchmark_of(spec: str) -> tuple[str, str | None] | None:
    """``(benchmark, split)`` for a dataset spec that reads a benchmark, however it is named:
    its name or hub id (split None: the stage's ``split`` decides; ``HuggingFaceH4/aime_2024``
    -> ``aime24``) or the path of one of its files in the shared data folder (that file's
    split). None for anything else (other files, other hub ids, synthetic tasks)."""
    if spec in _BENCHMARKS:
        return spec, None
    if spec.lower() in _HUB:
        return _HUB[spec.lower()][0], None
    path = Path(spec).expanduser()
    if not path.is_file():
        return None
    try:
        folder = shared_data_dir()
    except FileNotFoundError:
        return None
    return next(((name, split) for name, b in _BENCHMARKS.items() for split, f in b.files.items()
                 if (folder / f).resolve() == path.resolve()), None)


# Lower-cased hub id -> (benchmark, hub config, split renames). aime_2024 has only "train".
_HUB = {
    "openai/gsm8k": ("gsm8k", "main", {}),
    "huggingfaceh4/math-500": ("math500", None, {}),
    "huggingfaceh4/aime_2024": ("aime24", None, {"test": "train"}),
    "openai/openai_humaneval": ("humaneval", None, {}),
}


def shared_data_dir() -> Path:
    """Return the folder of real benchmark files.

    ``$R1FLOW_SHARED_DATA`` if set, else ``../shared/data`` next to the project root, or next
    to the nearest folder above it (a run workspace inside ``.r1flow/workspaces/`` finds the
    one of the checkout it belongs to).

    Raises:
        FileNotFoundError: if that folder does not exist.
    """
    env = os.environ.get(SHARED_DATA_ENV)
    candidates = [Path(env).expanduser()] if env else [d / "shared" / "data" for d in _PROJECT_ROOT.parents]
    path = next((c for c in candidates if c.is_dir()), candidates[0])
    if not path.is_dir():
        raise FileNotFoundError(
            f"shared data folder {path} not found: set ${SHARED_DATA_ENV} to the folder that "
            "holds gsm8k/, math500/, aime24/ and humaneval/, or pass an explicit path"
        )
    return path


def _open_binary(path: Path | str, mode: str, *, gz: bool | None = None):
    # Binary, so that a line is cut at MAX_LINE_BYTES and decoded on its own (its number known).
    if str(path).endswith(".gz") if gz is None else gz:
        return gzip.open(path, mode + "b")
    return open(path, mode + "b")


def _surrogate(text: str) -> str | None:
    """The rule a lone surrogate in ``text`` breaks (None if it has none), escape-safe to print."""
    found = None if text.isascii() else _SURROGATE.search(text)
    if found is None:
        return None
    code, at = ord(found.group()), found.start()
    return f"has a lone surrogate U+{code:04X} at character {at}, which UTF-8 cannot encode"


def _check_value(value: Any, depth: int = 1) -> None:
    """Raise _BadField(path, rule) for the first lone surrogate in a string or key of ``value``,
    or for containers nested deeper than MAX_DEPTH. ``path`` is dotted below ``value``
    (``messages[2].content``; ``""`` for ``value`` itself); the recursion stops at MAX_DEPTH."""
    if isinstance(value, str):
        problem = _surrogate(value)
        if problem:
            raise _BadField("", problem)
        return
    is_list = isinstance(value, (list, tuple))
    if not (is_list or isinstance(value, dict)):
        return
    if depth > MAX_DEPTH:
        raise _BadField("", _TOO_DEEP)
    for key, item in enumerate(value) if is_list else value.items():
        name = f"[{key}]" if is_list else str(key)
        problem = None if is_list else _surrogate(name)
        if problem:
            raise _BadField(name.encode("utf-8", "backslashreplace").decode(), f"(a key) {problem}")
        try:
            _check_value(item, depth + 1)
        except _BadField as err:
            tail = err.field if not err.field or err.field.startswith("[") else "." + err.field
            raise _BadField(name + tail, err.problem) from None


def _check_row(row: Any, *, path: Any, line: int, unit: str) -> None:
    """DatasetError naming ``path``, ``line`` (in ``unit``) and the field, for a lone surrogate
    or nesting deeper than MAX_DEPTH anywhere in ``row``; linear in the row's size."""
    try:
        _check_value(row)
    except _BadField as err:
        where = {"path": path, "line": line, "field": err.field or None, "unit": unit}
        raise DatasetError(err.problem, **where) from None


def _json_line(
    row: Any, *, path: Any, line: int, unit: str, default: Callable | None = None
) -> bytes:
    """``row`` as one UTF-8 JSONL line, newline included.

    Raises:
        DatasetError: as :func:`_check_row`, or for a line over MAX_LINE_BYTES.
        TypeError: for a value json cannot write (unless ``default`` converts it).
    """
    _check_row(row, path=path, line=line, unit=unit)
    data = (json.dumps(row, ensure_ascii=False, default=default) + "\n").encode("utf-8")
    if len(data) > MAX_LINE_BYTES + 1:
        raise DatasetError(_TOO_LONG, path=path, line=line, unit=unit)
    return data


def _lines(path: Path | str) -> Iterator[tuple[int, str]]:
    """Yield ``(line_no, text)`` for every line of a text or gzip file, ``line_no`` 1-based.

    Memory is bounded by MAX_LINE_BYTES: a longer line is refused as soon as its first
    MAX_LINE_BYTES + 1 bytes are read. Raises DatasetError naming file and line for such a line,
    for bytes that are not UTF-8, and for corrupt or truncated gzip data.
    """
    with _open_binary(path, "r") as f:
        line_no = 0
        while True:
            line_no += 1
            try:
                raw = f.readline(MAX_LINE_BYTES + 1)
            except (gzip.BadGzipFile, EOFError, zlib.error) as err:
                raise DatasetError(f"corrupt gzip data ({err})", path=path, line=line_no) from err
            if not raw:
                return
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                raise DatasetError(_TOO_LONG, path=path, line=line_no)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                problem = f"not UTF-8: {err.reason} at byte {err.start} of the line"
                raise DatasetError(problem, path=path, line=line_no) from None
            yield line_no, text


def read_jsonl(path: Path | str) -> Iterator[Record]:
    """Yield ``(line_no, row)`` for each non-blank line of a ``.jsonl`` or ``.jsonl.gz`` file.

    ``line_no`` is 1-based. Time is linear in the file's size and memory bounded by
    MAX_LINE_BYTES. Raises DatasetError naming the file, the line, the rule and, where one
    applies, the field (dotted: ``messages[2].content``) for: bytes that are not UTF-8, corrupt
    gzip data, a line over MAX_LINE_BYTES, malformed JSON, a line that is not a JSON object,
    nesting deeper than MAX_DEPTH, and a lone surrogate (a ``"\\ud800"`` escape without its
    pair) in a string or key, which no UTF-8 file could hold when the row is written again.
    """
    for line_no, text in _lines(path):
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except RecursionError:
            raise DatasetError(_TOO_DEEP, path=path, line=line_no) from None
        except ValueError as err:  # JSONDecodeError, or an integer of over 4300 digits
            problem = f"malformed JSON ({getattr(err, 'msg', err)})"
            raise DatasetError(problem, path=path, line=line_no) from err
        if not isinstance(row, dict):
            problem = f"expected a JSON object, got {type(row).__name__}"
            raise DatasetError(problem, path=path, line=line_no)
        _check_row(row, path=path, line=line_no, unit="line")
        yield line_no, row


def _read_parquet(path: Path) -> Iterator[Record]:
    """Yield ``(row_index, row)``, 0-based; rows are checked as JSONL lines (see read_jsonl)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except pa.ArrowException as err:
        raise DatasetError(f"unreadable Parquet ({err})", path=path) from err
    for index, row in enumerate(table.to_pylist()):
        # default=str: dates and bytes count at about their size as text.
        _json_line(row, path=path, line=index, unit="row", default=str)
        yield index, row


def _records(path: Path) -> tuple[Iterator[Record], str]:
    """Records of a local file and the unit ("line" or "row") its positions count in."""
    if not path.is_file():
        raise FileNotFoundError(f"dataset file {path} not found")
    if path.name.endswith(".parquet"):
        return _read_parquet(path), "row"
    if path.name.endswith((".jsonl", ".jsonl.gz")):
        return read_jsonl(path), "line"
    raise ValueError(f"{path}: unsupported file type; expected one of {', '.join(FILE_SUFFIXES)}")


def _stem(path: Path) -> str:
    for suffix in FILE_SUFFIXES:
        if path.name.endswith(suffix):
            return path.name[: -len(suffix)]
    return path.name


def _collect(
    records: Iterable[Record],
    make_row: Callable[[dict, int], dict],
    *,
    path: Any,
    unit: str,
    limit: int | None = None,
) -> list[dict]:
    """Convert, validate and de-duplicate records into schema rows, stopping after ``limit``."""
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0 or None, got {limit}")
    rows: list[dict] = []
    first_seen: dict[str, int] = {}
    for index, (line, raw) in enumerate(records):
        if limit is not None and index >= limit:
            break
        try:
            row = make_row(raw, index)
        except _BadField as err:
            where = {"path": path, "line": line, "field": err.field, "unit": unit}
            raise DatasetError(err.problem, **where) from None
        validate_row(row, path=path, line=line, unit=unit)
        if row[ID] in first_seen:
            problem = f"duplicate {row[ID]!r} (first at {unit} {first_seen[row[ID]]})"
            raise DatasetError(problem, path=path, line=line, field=ID, unit=unit)
        first_seen[row[ID]] = line
        rows.append(row)
    logger.info("loaded %d rows from %s", len(rows), path)
    return rows


def _load_benchmark(name: str, path: Path | str | None, limit: int | None = None,
                    split: str = "test") -> list[dict]:
    bench = _BENCHMARKS[name]
    path = Path(path) if path is not None else shared_data_dir() / bench.files[split]
    records, unit = _records(path)
    convert = partial(bench.convert, split=split) if name == "gsm8k" else bench.convert
    return _collect(records, convert, path=path, unit=unit, limit=limit)


def load_gsm8k(path: Path | str | None = None, split: str = "test") -> list[dict]:
    """Load GSM8K ``split`` (published JSONL, train or test); ``answer`` is the number after
    ``#### ``, no commas; ids are ``gsm8k-NNNN`` (test) and ``gsm8k-train-NNNN`` (train)."""
    return _load_benchmark("gsm8k", path, split=split)


def load_math500(path: Path | str | None = None) -> list[dict]:
    """Load MATH-500 (published JSONL); ``answer`` is the LaTeX answer as published."""
    return _load_benchmark("math500", path)


def load_aime24(path: Path | str | None = None) -> list[dict]:
    """Load AIME 2024 I+II (published JSONL); ``answer`` is the integer as a string."""
    return _load_benchmark("aime24", path)


def load_humaneval(path: Path | str | None = None) -> list[dict]:
    """Load HumanEval (``HumanEval.jsonl.gz``); rows carry ``tests`` and ``entry_point``.

    ``prompt`` is the prompt as published: the imports and helper functions the problem needs,
    then the signature and docstring of ``entry_point`` (the code reward runs the helpers with
    the model's function); ``id`` is the ``task_id``; ``canonical_solution`` is kept.
    """
    return _load_benchmark("humaneval", path)


def _user_row(
    raw: dict, index: int, *, mapping: dict[str, str], source: str | None, stem: str
) -> dict:
    row = {mapping.get(k, k): v for k, v in raw.items()}
    if row.get(ID) is None:
        row[ID] = f"{stem}-{index}"
    if source is not None:
        row[SOURCE] = source
    elif row.get(SOURCE) is None:
        row[SOURCE] = stem
    return row


def load_rows(
    path: Path | str,
    *,
    mapping: dict[str, str] | None = None,
    source: str | None = None,
    limit: int | None = None,
) -> list[dict]:
    """Load a user ``.jsonl``, ``.jsonl.gz`` or ``.parquet`` file as schema rows.

    Args:
        path: the file.
        mapping: renames file fields to schema fields, e.g. ``{"question": "prompt"}``.
        source: ``source`` for every row; default: the row's own, else the file stem.
        limit: keep only the first ``limit`` rows.

    A missing ``id`` becomes ``<stem>-<index>`` (0-based). Every row is validated; a bad one
    raises DatasetError naming the file, the line (JSONL, 1-based) or row (Parquet, 0-based)
    and the field.
    """
    path = Path(path)
    records, unit = _records(path)
    make_row = partial(_user_row, mapping=dict(mapping or {}), source=source, stem=_stem(path))
    return _collect(records, make_row, path=path, unit=unit, limit=limit)


def _load_hub(
    hub_id: str, *, split: str | None, limit: int | None, mapping: dict[str, str] | None,
    revision: str | None,
) -> list[dict]:
    try:
        import datasets
    except ImportError as err:
        raise ImportError(
            f"loading {hub_id!r} from the Hugging Face hub needs the optional 'datasets' "
            f"package: {HUB_INSTALL_HINT}"
        ) from err
    if not split:
        raise ValueError(f"hub dataset {hub_id!r}: name the split to read (e.g. train or test)")
    known = _HUB.get(hub_id.lower())
    if known is not None:
        name, config, split_renames = known
        make_row = partial(_gsm8k_row, split=split) if name == "gsm8k" else _BENCHMARKS[name].convert
        split = split_renames.get(split, split)
    else:
        config = None
        stem = hub_id.rsplit("/", 1)[1]
        make_row = partial(_user_row, mapping=dict(mapping or {}), source=None, stem=stem)
    pin = {"revision": revision} if revision else {}  # unnamed: datasets' default branch
    ds = datasets.load_dataset(hub_id, config, split=split, **pin)
    where = f"{hub_id}@{revision}[{split}]" if revision else f"{hub_id}[{split}]"
    return _collect(enumerate(ds), make_row, path=where, unit="row", limit=limit)


def load_dataset(
    spec: str,
    *,
    split: str | None = None,
    limit: int | None = None,
    mapping: dict[str, str] | None = None,
    revision: str | None = None,
) -> list[dict]:
    """Load a dataset by benchmark name, local file path or Hugging Face hub id.

    Args:
        spec: ``gsm8k``/``math500``/``aime24``/``humaneval``; a ``.jsonl``, ``.jsonl.gz`` or
            ``.parquet`` path; or a hub id ``owner/name`` (needs ``r1flow[hub]``).
        split: which split; required for benchmark names (``gsm8k``: train or test; the others:
            test) and hub ids (any split the dataset has); a file is one split, so it is ignored.
        limit: keep only the first ``limit`` rows.
        mapping: field renames for files and unknown hub datasets (see :func:`load_rows`).
        revision: hub ids only: the dataset's git revision (commit, tag or branch) to pin.

    Raises:
        ValueError: for a spec of none of these kinds (listing what is accepted), a benchmark or
            hub id without ``split``, or a split the benchmark does not have here.
        ImportError: for a hub id when ``datasets`` is not installed.
    """
    if spec in _BENCHMARKS:
        splits = benchmark_splits(spec)
        if split not in splits:
            raise ValueError(_missing_split(spec, split, splits))
        return _load_benchmark(spec, None, limit, split=split)
    path = Path(spec).expanduser()
    if path.exists() or _stem(path) != path.name:
        return load_rows(path, mapping=mapping, limit=limit)
    if spec.lower() in _HUB or _HUB_ID.fullmatch(spec):
        return _load_hub(spec, split=split, limit=limit, mapping=mapping, revision=revision)
    raise ValueError(
        f"unknown dataset {spec!r}; expected a benchmark name ({', '.join(_BENCHMARKS)}), "
        f"a file path ending in {', '.join(FILE_SUFFIXES)}, or a Hugging Face hub id "
        "'owner/name' (e.g. 'openai/gsm8k'). Synthetic tasks are not loaded from here."
    )


def _missing_split(spec: str, split: str | None, splits: tuple[str, ...]) -> str:
    if split is None:
        return f"{spec}: name the split to read ({' or '.join(splits)})"
    if splits == ("test",):
        return (f"{spec} has only a test split: it is an evaluation set; train on gsm8k (split train) "
                "or a file")
    return (f"{spec} has no {split!r} split here (it has {', '.join(splits)}); for another split use "
            f"the hub id {_BENCHMARKS[spec].hub_id!r}")


def write_jsonl(rows: Iterable[dict], path: Path | str) -> int:
    """Write ``rows`` as JSONL (gzip if ``path`` ends in ``.gz``) atomically; return the count.

    Rows go to a temporary file in the same folder that replaces ``path`` only once complete,
    so a failure mid-write (including one raised by a ``rows`` generator) leaves any previous
    file intact and no temporary file behind.

    Raises:
        DatasetError: naming ``path``, the row (0-based) and the field, for a row that
            :func:`read_jsonl` would refuse: a lone surrogate in a string or key, nesting deeper
            than MAX_DEPTH, or a line over MAX_LINE_BYTES.
        TypeError: for a value json cannot write.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    count = 0
    try:
        with _open_binary(tmp, "w", gz=path.name.endswith(".gz")) as f:
            for row in rows:
                f.write(_json_line(row, path=path, line=count, unit="row"))
                count += 1
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    logger.info("wrote %d rows to %s", count, path)
    return count


def read_rows_jsonl(path: Path | str) -> list[dict]:
    """Read back a schema JSONL file (as written by :func:`write_jsonl`), validating every row.

    Unlike :func:`load_rows`, nothing is filled in: ``id`` and ``source`` must be present.
    """
    return _collect(read_jsonl(path), lambda raw, _index: raw, path=path, unit="line")
