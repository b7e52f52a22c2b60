"""Loaders on the real benchmark files, and on deliberately broken user files."""

from __future__ import annotations

import gzip
import json
import pickle
import re
import sys
import tracemalloc

import pytest

from data import loaders
from data.loaders import (
    load_aime24,
    load_dataset,
    load_gsm8k,
    load_humaneval,
    load_math500,
    load_rows,
    read_jsonl,
    read_rows_jsonl,
    shared_data_dir,
    write_jsonl,
)
from data.schema import DatasetError, validate_row


def _write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _write_parquet(path, records):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(records), path)
    return path


# --- real benchmark files -------------------------------------------------------------------


def test_gsm8k_all_rows_with_numeric_answer_from_final_line():
    rows = load_gsm8k()
    raw = [r for _, r in read_jsonl(shared_data_dir() / "gsm8k" / "test.jsonl")]
    assert len(rows) == len(raw) == 1319  # completeness
    assert len({r["id"] for r in rows}) == 1319  # uniqueness
    assert rows[0]["id"] == "gsm8k-0000"  # stability
    for row, src in zip(rows, raw):
        float(row["answer"])  # numeric: raises if not
        final = src["answer"].splitlines()[-1]
        assert final.startswith("#### ")
        assert row["answer"] == final[5:].replace(",", "").strip()  # extraction
        assert row["prompt"] == src["question"] and row["source"] == "gsm8k"
    # GSM8K has some thousands separators; they must be gone.
    assert any("," in s["answer"].splitlines()[-1] for s in raw)


def test_math500_rows_keep_latex_and_strip_instruction():
    rows = load_math500()
    assert len(rows) == 500 and len({r["id"] for r in rows}) == 500
    assert rows[0]["answer"] == r"\left( 3, \frac{\pi}{2} \right)"  # LaTeX as-is
    assert not any("Please reason step by step" in r["prompt"] for r in rows)  # no template
    assert all(r["prompt"].strip() for r in rows)


def test_aime24_integer_answers():
    rows = load_aime24()
    assert len(rows) == 30 and len({r["id"] for r in rows}) == 30
    assert all(re.fullmatch(r"\d+", r["answer"]) for r in rows)  # integer strings
    assert all(0 <= int(r["answer"]) <= 999 for r in rows)  # AIME range
    assert rows[0]["answer"] == "204"


def test_humaneval_rows_have_tests_and_entry_point():
    rows = load_humaneval()
    assert len(rows) == 164 and len({r["id"] for r in rows}) == 164
    assert rows[0]["id"] == "HumanEval/0"
    for row in rows:
        assert "def check(candidate)" in row["tests"]  # grader
        assert f"def {row['entry_point']}(" in row["prompt"]  # signature in prompt
        assert "answer" not in row
        # prompt + canonical solution + tests must be one runnable program
        compile(row["prompt"] + row["canonical_solution"] + row["tests"], row["id"], "exec")


def test_load_dataset_by_benchmark_name_and_limit():
    rows = load_dataset("gsm8k", split="test", limit=5)
    assert [r["id"] for r in rows] == [f"gsm8k-{i:04d}" for i in range(5)]
    train = load_dataset("gsm8k", split="train", limit=5)
    assert [r["id"] for r in train] == [f"gsm8k-train-{i:04d}" for i in range(5)]
    assert train[0]["prompt"].startswith("Natalia sold clips") and train[0]["answer"] == "72"
    with pytest.raises(ValueError, match="name the split"):
        load_dataset("gsm8k")
    with pytest.raises(ValueError, match="openai/gsm8k"):
        load_dataset("gsm8k", split="validation")
    with pytest.raises(ValueError, match="math500 has only a test split: it is an evaluation set"):
        load_dataset("math500", split="train")


def test_shared_data_dir_env_override(tmp_path, monkeypatch):
    monkeypatch.setenv("R1FLOW_SHARED_DATA", str(tmp_path))
    assert shared_data_dir() == tmp_path
    monkeypatch.setenv("R1FLOW_SHARED_DATA", str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="R1FLOW_SHARED_DATA"):
        shared_data_dir()


# --- broken user files ----------------------------------------------------------------------

GOOD = '{"id": "a", "prompt": "1+1?", "answer": "2"}'


def test_malformed_json_names_file_and_line(tmp_path):
    path = _write_lines(tmp_path / "bad.jsonl", [GOOD, "", '{"id": "b", "prompt": ', GOOD])
    with pytest.raises(DatasetError) as info:
        load_rows(path)
    assert info.value.line == 3  # 1-based, blank line counted
    assert "bad.jsonl line 3" in str(info.value) and "malformed JSON" in str(info.value)


def test_missing_field_names_field_and_line(tmp_path):
    path = _write_lines(tmp_path / "user.jsonl", [GOOD, '{"id": "b", "prompt": "x"}'])
    with pytest.raises(DatasetError) as info:
        load_rows(path)
    err = info.value
    assert (err.line, err.field) == (2, "answer")
    assert str(err) == f"{path} line 2: field 'answer' missing"


def test_wrong_type_names_field_and_line(tmp_path):
    path = _write_lines(tmp_path / "user.jsonl", [GOOD, GOOD.replace('"a"', '"b"'),
                                                  '{"id": "c", "prompt": 7, "answer": "2"}'])
    with pytest.raises(DatasetError) as info:
        load_rows(path)
    assert (info.value.line, info.value.field) == (3, "prompt")
    assert "line 3: field 'prompt' must be a string, got int" in str(info.value)


def test_code_row_needs_entry_point(tmp_path):
    line = '{"prompt": "def f():", "tests": "def check(c): pass"}'
    path = _write_lines(tmp_path / "code.jsonl", [line])
    with pytest.raises(DatasetError, match="line 1: field 'entry_point' missing"):
        load_rows(path)


def test_duplicate_id_rejected(tmp_path):
    path = _write_lines(tmp_path / "dup.jsonl", [GOOD, GOOD])
    expected = "line 2: field 'id' duplicate 'a' (first at line 1)"
    with pytest.raises(DatasetError, match=re.escape(expected)):
        load_rows(path)


def test_parquet_errors_name_row_and_field(tmp_path):
    path = _write_parquet(tmp_path / "p.parquet", [
        {"prompt": "a", "answer": "1"},
        {"prompt": "b", "answer": None},  # null cell counts as missing
    ])
    with pytest.raises(DatasetError) as info:
        load_rows(path)
    assert (info.value.line, info.value.field) == (1, "answer")
    assert "p.parquet row 1: field 'answer' missing" in str(info.value)

    path = _write_parquet(tmp_path / "q.parquet", [{"prompt": "a", "answer": 3}])
    with pytest.raises(DatasetError, match="q.parquet row 0: field 'answer' must be a string"):
        load_rows(path)


def _write_bytes(path, lines: list[bytes]):
    data = b"\n".join(lines) + b"\n"
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


_DEEP = b'{"id": "b", "prompt": "p", "answer": "1", "extra": ' + b"[" * 150 + b"]" * 150 + b"}"
_DIGITS = b'{"id": "b", "n": ' + b"9" * 5000 + b"}"  # over int's 4300 digits: a ValueError


@pytest.mark.parametrize("name, line, problem", [
    ("utf8.jsonl", b'{"id": "b", "prompt": "\xff"}', "not UTF-8: invalid start byte at byte 23"),
    ("utf8.jsonl.gz", b'{"id": "b", "prompt": "\xe9t\xe9"}', "not UTF-8: invalid continuation"),
    ("deeper.jsonl", b"[" * 5000 + b"]" * 5000, "nested deeper than MAX_DEPTH (100 levels)"),
    ("deep.jsonl", _DEEP, "field 'extra[0][0][0]"),  # 150 levels: json reads it, the check refuses
    ("digits.jsonl", _DIGITS, "malformed JSON (Exceeds the limit"),
])
def test_unreadable_line_names_file_and_line(tmp_path, name, line, problem):
    path = _write_bytes(tmp_path / name, [GOOD.encode(), line, GOOD.encode()])
    with pytest.raises(DatasetError) as info:
        load_rows(path)
    assert info.value.line == 2  # the first bad line, not a bare UnicodeDecodeError/RecursionError
    assert f"{name} line 2: " in str(info.value) and problem in str(info.value)


def test_nesting_limit_is_exact(tmp_path):
    def row(levels):  # the row itself is level 1
        lists = levels - 1
        return '{"id": "a", "prompt": "p", "answer": "1", "x": ' + "[" * lists + "]" * lists + "}"

    assert len(load_rows(_write_lines(tmp_path / "ok.jsonl", [row(loaders.MAX_DEPTH)]))) == 1
    with pytest.raises(DatasetError, match=r"line 1: field 'x(\[0\]){99}' nested deeper than MAX_"):
        load_rows(_write_lines(tmp_path / "deep.jsonl", [row(loaders.MAX_DEPTH + 1)]))


def test_lone_surrogate_names_dotted_field(tmp_path):
    pair = '{"role": "user", "content": "ok \\ud83d\\ude00"}'  # an escaped pair: one emoji, fine
    lone = '{"role": "assistant", "content": "x\\ud800"}'
    line = '{"id": "b", "prompt": "p", "answer": "1", "messages": [' + pair + ", " + lone + "]}"
    path = _write_lines(tmp_path / "s.jsonl", [GOOD, line])
    with pytest.raises(DatasetError) as info:
        load_rows(path)
    assert (info.value.line, info.value.field) == (2, "messages[1].content")
    expected = "s.jsonl line 2: field 'messages[1].content' has a lone surrogate U+D800"
    assert expected in str(info.value)

    path = _write_lines(tmp_path / "k.jsonl", ['{"\\udc00k": 1, ' + GOOD[1:]])
    with pytest.raises(DatasetError) as info:
        next(read_jsonl(path))
    assert info.value.field == "\\udc00k"  # escaped, so the message itself is printable
    assert "(a key) has a lone surrogate U+DC00" in str(info.value)
    str(info.value).encode("utf-8")


@pytest.mark.parametrize("name", ["long.jsonl", "long.jsonl.gz"])
def test_overlong_line_refused_in_bounded_memory(tmp_path, name):
    limit = loaders.MAX_LINE_BYTES
    head = b'{"id": "a", "prompt": "p", "answer": "1", "pad": "'
    at_limit = head + b"x" * (limit - len(head) - 2) + b'"}'
    assert len(load_rows(_write_bytes(tmp_path / name, [at_limit]))) == 1  # exactly the limit

    path = _write_bytes(tmp_path / name, [GOOD.encode(), b"x" * (4 * limit), GOOD.encode()])
    tracemalloc.start()
    try:
        with pytest.raises(DatasetError, match=f"{name} line 2: longer than MAX_LINE_BYTES"):
            load_rows(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * limit  # the 32 MiB line was never held whole (readline copies once)


def test_corrupt_files_name_file(tmp_path):
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(gzip.compress((GOOD + "\n").encode() * 1000)[:-50])  # truncated download
    with pytest.raises(DatasetError, match=r"cut.jsonl.gz line \d+: corrupt gzip data"):
        list(read_jsonl(path))
    path = tmp_path / "junk.parquet"
    path.write_bytes(b"not parquet")
    with pytest.raises(DatasetError, match="junk.parquet: unreadable Parquet"):
        load_rows(path)


def test_nan_literals_only_in_extra_columns(tmp_path):
    ok = '{"id": "a", "prompt": "p", "answer": "1", "score": NaN, "hi": Infinity}'
    row = load_rows(_write_lines(tmp_path / "ok.jsonl", [ok]))[0]
    assert row["score"] != row["score"] and row["hi"] == float("inf")  # Python's JSON dialect
    bad = '{"id": "a", "prompt": "p", "answer": NaN}'
    with pytest.raises(DatasetError, match="line 1: field 'answer' must be a string, got float"):
        load_rows(_write_lines(tmp_path / "bad.jsonl", [bad]))


def test_parquet_row_over_line_limit_names_row(tmp_path):
    big = "é" * (loaders.MAX_LINE_BYTES // 2)  # within the limit in characters, over it in bytes
    path = _write_parquet(tmp_path / "big.parquet", [{"prompt": "a", "answer": "1"},
                                                     {"prompt": big, "answer": "2"}])
    with pytest.raises(DatasetError, match="big.parquet row 1: longer than MAX_LINE_BYTES"):
        load_rows(path)


def test_dataset_error_pickles():
    err = DatasetError("missing", path="f.jsonl", line=4, field="answer")
    back = pickle.loads(pickle.dumps(err))
    assert (str(back), back.path, back.line, back.field) == (str(err), "f.jsonl", 4, "answer")


def test_validate_row_rejects_empty_and_non_dict():
    with pytest.raises(DatasetError, match="field 'id' is empty"):
        validate_row({"id": " ", "prompt": "p", "source": "s", "answer": "1"}, path="x", line=1)
    with pytest.raises(DatasetError, match="expected a JSON object"):
        validate_row(["not", "a", "row"], path="x", line=1)


# --- mapping, round trips, atomic writes ----------------------------------------------------


def test_mapping_defaults_and_extras(tmp_path):
    raw = [
        {"question": "2+2?", "final": "4", "numbers": [2, 2]},
        {"question": "3+3?", "final": "6"},
    ]
    mapping = {"question": "prompt", "final": "answer"}
    path = tmp_path / "my_set.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("".join(json.dumps(r) + "\n" for r in raw))
    rows = load_rows(path, mapping=mapping)
    assert rows[0] == {"id": "my_set-0", "prompt": "2+2?", "answer": "4", "numbers": [2, 2],
                       "source": "my_set"}
    assert rows[1]["id"] == "my_set-1"
    assert [r["source"] for r in load_rows(path, mapping=mapping, source="mine")] == ["mine"] * 2
    assert len(load_dataset(str(path), limit=1, mapping=mapping)) == 1
    with pytest.raises(DatasetError, match="field 'prompt' missing"):
        load_rows(path)  # without the mapping the file is not in the schema


def test_parquet_round_trip(tmp_path):
    import pandas as pd

    rows = load_aime24()[:5] + load_humaneval()[:3]
    path = tmp_path / "mixed.parquet"
    pd.DataFrame(rows).to_parquet(path)  # union of columns: answer and tests rows mixed
    back = load_dataset(str(path))
    # Parquet unifies columns, so absent fields come back as None; compare the present ones.
    assert [{k: v for k, v in r.items() if v is not None} for r in back] == rows


def test_jsonl_round_trip(tmp_path):
    rows = load_gsm8k()[:20]
    for name in ("rows.jsonl", "rows.jsonl.gz"):
        assert write_jsonl(rows, tmp_path / name) == 20
        assert read_rows_jsonl(tmp_path / name) == rows
    with gzip.open(tmp_path / "rows.jsonl.gz", "rt") as f:  # really gzip
        assert json.loads(f.readline())["id"] == "gsm8k-0000"


def test_read_rows_jsonl_requires_id(tmp_path):
    path = _write_lines(tmp_path / "r.jsonl", ['{"prompt": "p", "source": "s", "answer": "1"}'])
    with pytest.raises(DatasetError, match="line 1: field 'id' missing"):
        read_rows_jsonl(path)


def test_write_jsonl_is_atomic(tmp_path):
    path = tmp_path / "out.jsonl"
    write_jsonl([{"id": "old"}], path)
    before = path.read_bytes()

    def rows():
        yield {"id": "new-0"}
        yield {"id": "new-1"}
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        write_jsonl(rows(), path)
    assert path.read_bytes() == before  # old content intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]  # no temp file left

    with pytest.raises(TypeError):  # unserialisable value mid-stream
        write_jsonl([{"id": "x"}, {"id": object()}], path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def test_write_jsonl_refuses_rows_read_jsonl_would_refuse(tmp_path):
    path = tmp_path / "out.jsonl.gz"
    write_jsonl([{"id": "old"}], path)
    before = path.read_bytes()
    bad = {"id": "b", "messages": [{"content": "cut emoji \ud83d"}]}
    with pytest.raises(DatasetError) as info:
        write_jsonl([{"id": "a"}, bad], path)
    assert (info.value.line, info.value.field) == (1, "messages[0].content")
    expected = "out.jsonl.gz row 1: field 'messages[0].content' has a lone surrogate U+D83D"
    assert expected in str(info.value)
    deep: list = []
    for _ in range(loaders.MAX_DEPTH):
        deep = [deep]
    with pytest.raises(DatasetError, match="row 0: field 'x(\\[0\\]){99}' nested deeper"):
        write_jsonl([{"x": deep}], path)
    with pytest.raises(DatasetError, match="row 0: longer than MAX_LINE_BYTES"):
        write_jsonl([{"x": "x" * loaders.MAX_LINE_BYTES}], path)
    assert path.read_bytes() == before  # old content intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl.gz"]  # no temp file left


# --- spec resolution ------------------------------------------------------------------------


@pytest.mark.parametrize("hub_id", ["openai/gsm8k", "HuggingFaceH4/MATH-500", "someone/their_data"])
def test_hub_id_without_datasets_says_how_to_install(monkeypatch, hub_id):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import fails; never reaches network
    with pytest.raises(ImportError, match=re.escape("pip install 'r1flow[hub]'")):
        load_dataset(hub_id)


def test_known_hub_id_uses_benchmark_conversion(monkeypatch):
    calls = []

    class FakeDatasets:
        @staticmethod
        def load_dataset(name, config, split):
            calls.append((name, config, split))
            return [{"question": "q?", "answer": "work\n#### 1,234"}]

    monkeypatch.setitem(sys.modules, "datasets", FakeDatasets)
    rows = load_dataset("openai/gsm8k", split="train")
    assert calls == [("openai/gsm8k", "main", "train")]
    assert rows[0]["answer"] == "1234" and rows[0]["id"] == "gsm8k-train-0000"


def test_unknown_spec_lists_what_is_accepted(tmp_path):
    with pytest.raises(ValueError) as info:
        load_dataset("arithmetic")
    for accepted in ("gsm8k", "math500", "aime24", "humaneval", ".jsonl", ".parquet", "owner/name"):
        assert accepted in str(info.value)
    with pytest.raises(FileNotFoundError):
        load_dataset(str(tmp_path / "missing.jsonl"))
    csv = tmp_path / "x.csv"
    csv.write_text("a,b\n")
    with pytest.raises(ValueError, match="unsupported file type"):
        load_dataset(str(csv))


def test_benchmark_loader_reports_converter_errors(tmp_path):
    path = _write_lines(tmp_path / "test.jsonl", ['{"question": "q", "answer": "no final line"}'])
    with pytest.raises(DatasetError, match="line 1: field 'answer' has no '#### '"):
        loaders.load_gsm8k(path)
