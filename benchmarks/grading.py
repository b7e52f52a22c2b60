"""How fast the accuracy reward grades, and how long its worst inputs take (issue 10).

Three tables, CPU only:

1. Throughput on MATH-500-shaped completions: for each of the 500 problems, ``k`` readable
   completions (``<think>`` ~1 KB of reasoning ``</think> The answer is \\boxed{…}.``) whose
   answers are the gold, the gold respelled (``\\dfrac``, spaces, ``\\left``), another row's
   gold, and no box. Cold (the equivalence cache and the workers' parse cache empty) and warm,
   with 1 and 2 math-verify worker processes. Plus GSM8K- and arithmetic-shaped completions
   (plain numbers: decided without math-verify), the shape of the default GRPO run.
2. One default ``r1_zero`` step's batch (``prompts_per_step`` x ``num_generations``
   arithmetic completions): grading milliseconds per step, to set against the step's
   ``step_s`` (every GRPO run logs ``reward_s`` and ``step_s`` to MLflow).
3. The adversarial inputs of the grading issue: seconds each takes to grade (worst of 3) and
   the score, which must be 0.

    python -m benchmarks.grading [--k 4] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import random
import time

from benchmarks.common import table

REASONING = ("Let me work through this carefully. First I restate the problem, then I set up the "
             "equations and check each step again. Wait, let me verify the arithmetic once more. ") * 6


def respell(gold: str) -> str:
    """The same answer written differently (what a model writes that a string match misses)."""
    return ("\\left( " + gold[1:-1] + " \\right)" if gold.startswith("(") and gold.endswith(")")
            else " " + gold.replace("\\frac", "\\dfrac") + " ")


def math500_completions(golds: list[str], k: int, seed: int = 0) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    texts, answers = [], []
    for i, gold in enumerate(golds):
        choices = [gold, respell(gold), golds[(i + 1 + rng.randrange(len(golds) - 1)) % len(golds)], None]
        for j in range(k):
            pred = choices[j % len(choices)]
            summary = "I could not finish." if pred is None else f"The answer is \\boxed{{{pred}}}."
            texts.append(f"<think> {REASONING} </think> {summary}")
            answers.append(gold)
    return texts, answers


def throughput(name: str, texts: list[str], answers: list[str], workers: int) -> list[dict]:
    from model.rewards import equivalence, get_reward

    equivalence.set_workers(workers)  # a fresh pool: the workers' parse caches are empty
    equivalence.clear_cache()
    rows = []
    for state in ("cold", "warm"):
        start = time.perf_counter()
        scores = get_reward("accuracy")(texts, answer=answers)
        seconds = time.perf_counter() - start
        rows.append({"completions": name, "workers": workers, "cache": state, "n": len(texts),
                     "completions/s": len(texts) / seconds, "mean score": sum(scores) / len(scores)})
    return rows


def synthetic(task: str, n: int) -> tuple[list[str], list[str]]:
    from data.synthetic import make_rows

    rows = make_rows(task, "train", n)
    texts = [f"<think> {REASONING[:300]} </think> <answer> {r['answer'] if i % 2 else int(r['answer']) + 1} </answer>"
             for i, r in enumerate(rows)]
    return texts, [r["answer"] for r in rows]


def step_batch() -> list[dict]:
    from infra.config import load_stage_config
    from model.grpo import score
    from model.stages.r1_zero import R1ZeroConfig

    cfg = load_stage_config(R1ZeroConfig, "r1_zero")
    n = cfg.prompts_per_step * cfg.num_generations
    texts, answers = synthetic("arithmetic", n)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        score(texts, {"answer": answers, "source": ["arithmetic"] * n}, cfg.rewards)
        times.append(time.perf_counter() - start)
    return [{"batch": f"r1_zero step ({cfg.prompts_per_step} x {cfg.num_generations})",
             "rewards": "+".join(cfg.rewards), "ms per step (median of 5)": sorted(times)[2] * 1e3}]


ADVERSARIAL = {
    "20 KB of unclosed \\boxed{": ("\\boxed{" * 2_900, "5"),
    "200 KB of unclosed \\boxed{": ("\\boxed{" * 29_000, "5"),
    "200 KB of unclosed <answer>": ("<answer>" * 25_000, "5"),
    "200 KB of unclosed <think>": ("<think>" * 29_000, "5"),
    "200 KB of nested boxes": ("</think>" + "\\boxed{" * 25_000 + "5" + "}" * 25_000, "6"),
    "\\boxed{10^{10^{10}}} (math-verify)": ("</think> \\boxed{10^{10^{10}}}", "5"),
    "\\boxed{(x+1)^{100000}} (math-verify)": ("</think> \\boxed{(x+1)^{100000}}", "x^{100000}"),
    "a number and 2,000 letters (unit words)": ("</think> \\boxed{1 " + "a" * 2_000 + "!}", "1"),
    "6,000-character expression": ("</think> \\boxed{" + "+".join(["x^{2}"] * 1_200) + "}", "y"),
}


def adversarial() -> list[dict]:
    import threading

    from model.rewards import equivalence, get_reward

    rows = []
    for name, (text, gold) in ADVERSARIAL.items():
        worst, scores = 0.0, []
        for _ in range(3):
            equivalence.clear_cache()  # each repeat grades from scratch
            result = {}
            start = time.perf_counter()
            # A worker thread, as a Prefect task runner or a thread pool grades.
            thread = threading.Thread(target=lambda: result.update(s=get_reward("accuracy")([text], answer=[gold])[0]))
            thread.start()
            thread.join()
            worst = max(worst, time.perf_counter() - start)
            scores.append(result["s"])
        rows.append({"input": name, "chars": len(text), "worst s (of 3)": worst, "score": max(scores)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--k", type=int, default=4, help="completions per MATH-500 problem")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="math-verify processes")
    args = parser.parse_args()
    from data.loaders import load_gsm8k, load_math500

    golds = [row["answer"] for row in load_math500()]
    math_texts, math_answers = math500_completions(golds, args.k)
    gsm = load_gsm8k()
    gsm_texts = [f"<think> {REASONING} </think> The answer is \\boxed{{{r['answer']}}}." for r in gsm]
    arithmetic = synthetic("arithmetic", 2000)
    rows = []
    for workers in args.workers:
        rows += throughput("MATH-500", math_texts, math_answers, workers)
    rows += throughput("GSM8K", gsm_texts, [r["solution"] for r in gsm], args.workers[0])
    rows += throughput("arithmetic", *arithmetic, args.workers[0])
    print("## Accuracy reward throughput\n")
    print(table(rows, ["completions", "workers", "cache", "n", "completions/s", "mean score"]))
    print("\n## Grading one default GRPO step\n")
    print(table(step_batch(), ["batch", "rewards", "ms per step (median of 5)"]))
    print("\n## Adversarial inputs (graded in a worker thread)\n")
    print(table(adversarial(), ["input", "chars", "worst s (of 3)", "score"]))


if __name__ == "__main__":
    main()
