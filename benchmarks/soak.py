"""Soak the code reward with hostile programs: does the trainer stay whole? (issue 11). CPU only.

Runs ``--programs`` programs (the kinds of :data:`HOSTILE`, in turn) through the ``code`` reward
in batches of ``--batch``, as GRPO would call it, and prints one row per ``--report-every``
programs: throughput, the verdict reasons, what is left behind (sandbox processes alive, files
in /tmp), and the calling process's resident memory and open file descriptors, which must stay
flat (judges are reused; nothing may leak per program). tests/test_sandbox.py runs 1,000 of
these in CI.

    python -m benchmarks.soak [--programs 10000] [--batch 64] [--report-every 2000]
"""

from __future__ import annotations

import argparse
import importlib
import os
import time
from collections import Counter
from pathlib import Path

from benchmarks.common import table

code_module = importlib.import_module("model.rewards.code")  # `model.rewards.code` is the function

# One program of each kind that fails fast; every one must score 0.0 against TESTS.
HOSTILE = [
    "import os\nos.kill(-1, 9)\n",  # kill every process it can see
    "import os\nwhile True:\n    os.fork()\n",  # fork bomb
    "x = bytearray(4 << 30)\n",  # over the memory limit
    "open('/usr/x', 'w')\n",  # write outside its folder
    "import socket\nsocket.create_connection(('127.0.0.1', 22), timeout=1)\n",  # the network
    "class A:\n    def __eq__(self, o):\n        return True\ndef f(*a):\n    return A()\n",  # fool ==
    "import os\nos.write(4, b'{\"ok\": 8}\\n' * 99)\ndef f(*a):\n    os._exit(0)\n",  # forged replies
    "def f(*a):\n    return f(*a)\n",  # RecursionError
    "import sys\nsys.setrecursionlimit(10**6)\ndef f(*a):\n    return f(*a)\n",  # C stack overflow
    "def f(*a):\n    return 'x' * (9 << 20)\n",  # a reply over 8 MiB
]
TESTS = "def check(candidate):\n    assert candidate(3) == 9\n"


def leftovers() -> int:
    """Live sandbox processes (bwrap or a candidate) on this machine."""
    count = 0
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes() if entry.name.isdigit() else b""
        except OSError:
            continue
        count += b"harness.py\0candidate" in cmdline or b"bwrap" in cmdline
    return count


def resident_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--programs", type=int, default=10000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--report-every", type=int, default=2000)
    args = parser.parse_args()
    tmp_before = set(Path("/tmp").iterdir())
    rows, done, start, reasons, wrong = [], 0, time.perf_counter(), Counter(), 0
    code_module.outcomes()
    while done < args.programs:
        n = min(args.batch, args.programs - done)
        programs = [f"```python\n{HOSTILE[(done + i) % len(HOSTILE)]}\n```" for i in range(n)]
        scores = code_module.code(programs, tests=[TESTS] * n, entry_point=["f"] * n)
        wrong += sum(score != 0.0 for score in scores)
        reasons.update(code_module.outcomes())
        done += n
        if done % args.report_every < args.batch or done == args.programs:
            rows.append({"programs": done, "programs/s": done / (time.perf_counter() - start),
                         "scored above 0": wrong, "reasons": dict(sorted(reasons.items())),
                         "sandbox processes left": leftovers(),
                         "new files in /tmp": len(set(Path("/tmp").iterdir()) - tmp_before),
                         "caller RSS MB": resident_mb(), "caller fds": len(os.listdir("/proc/self/fd"))})
    print(f"{os.cpu_count()} CPUs, {len(HOSTILE)} kinds of hostile program\n")
    print(table(rows, list(rows[0])))


if __name__ == "__main__":
    main()
