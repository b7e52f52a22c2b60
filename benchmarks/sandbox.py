"""What the code reward's sandbox costs (issue 11). CPU only.

Two tables:

1. One trivial program (``def f(): return 1`` and one assert), judged one after another:
   milliseconds per program with the namespace sandbox (bwrap, the default) and without it
   (``R1FLOW_CODE_SANDBOX=unsafe-no-isolation``: the same judge, the program as a plain
   process). The difference is the sandbox's own cost. Median of ``--repeats`` after warm-up.
2. HumanEval's 164 canonical solutions (../shared/data), written as whole functions, through
   the ``code`` reward with 1 and 2 workers: programs per second, CPU milliseconds per program
   (wall x workers / programs) and how many pass (all 164 must).

    python -m benchmarks.sandbox [--repeats 30] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import time

from benchmarks.common import table
from data.loaders import load_humaneval
from model.rewards import sandbox

code_module = importlib.import_module("model.rewards.code")  # `model.rewards.code` is the function


def per_program_ms(repeats: int) -> list[dict]:
    job = code_module.Job("def f():\n    return 1\n", "", "assert f() == 1\n", None)
    rows = []
    for mode in ("bwrap", sandbox.UNSAFE):
        os.environ[sandbox.MODE_ENV] = mode
        code_module.run_job(job)  # warm: a judge process is started and kept
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            assert code_module.run_job(job).passed
            times.append((time.perf_counter() - start) * 1000)
        rows.append({"mode": mode, "ms per program (median)": statistics.median(times),
                     "min": min(times), "max": max(times)})
    os.environ[sandbox.MODE_ENV] = "bwrap"
    return rows


def humaneval(workers: list[int]) -> list[dict]:
    rows = load_humaneval()
    completions = ["```python\n" + r["prompt"] + r["canonical_solution"] + "\n```" for r in rows]
    columns = {name: [r[name] for r in rows] for name in ("tests", "entry_point", "prompt")}
    out = []
    for n in workers:
        code_module.code(completions[:n], max_workers=n, **{k: v[:n] for k, v in columns.items()})  # warm
        code_module.outcomes()  # reset the counts
        start = time.perf_counter()
        scores = code_module.code(completions, max_workers=n, **columns)
        wall = time.perf_counter() - start
        out.append({"workers": n, "programs/s": len(rows) / wall, "CPU ms per program": wall * n / len(rows) * 1000,
                    "passed": f"{int(sum(scores))}/{len(rows)}", "reasons": str(code_module.outcomes())})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs\n")
    print(table(per_program_ms(args.repeats), ["mode", "ms per program (median)", "min", "max"]))
    print()
    print(table(humaneval(args.workers), ["workers", "programs/s", "CPU ms per program", "passed", "reasons"]))


if __name__ == "__main__":
    main()
