"""Does thinking pay in the default world? Base -> R1-Zero for several corpus and size settings.

For each setting: writes the base corpus (data/synthetic.py ``Noise``), trains the tokenizer and
the tiny base (SFT pretraining), scores it on the validation splits (never test: this is where
knobs are chosen), runs R1-Zero's GRPO with params.yaml's r1_zero knobs, and scores it again.
Prints one row per setting: validation pass@1 before and after RL, and R1-Zero's rollouts'
mean length and reflection rate in the first and last tenth of its steps (paper 2.2.1, Figure
3: length grows, reflection appears) with the ratio last/first.

Settings run as separate processes, ``--workers`` at once, one CPU thread each (or on the GPU
when there is one). Uses the trainers directly (no MLflow, DVC or Great Expectations).

    python -m benchmarks.thinking --set check=0 --set check=0.3 [--pretrain-steps 300] [--rl-steps 60]
    python -m benchmarks.thinking --set "check=0.3 hidden_size=96 num_layers=3" --workers 2

A setting is space-separated KEY=VALUE of Noise fields (slip, forget_carry, fix, unformatted,
check, direct), model size (hidden_size, num_layers, num_heads, num_kv_heads, intermediate_size,
family, architecture), corpus_size, pretrain_steps, pretrain_batch, pretrain_lr, rl_steps, lr (GRPO), seed, and
any other r1_zero knob (max_completion_length, temperature, beta, ...).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

NOISE = ("slip", "forget_carry", "fix", "unformatted", "check", "direct", "code_switch")
SIZE = ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size", "family", "architecture")
VALIDATION = ("arithmetic_validation", "countdown_validation")


def parse_setting(text: str) -> dict:
    """``"check=0.3 hidden_size=96"`` -> ``{"check": 0.3, "hidden_size": 96}`` (numbers parsed)."""
    out = {}
    for part in text.split():
        key, _, value = part.partition("=")
        try:
            out[key] = int(value) if value.lstrip("-").isdigit() else float(value)
        except ValueError:
            out[key] = value
    return out


def _validation_scores(model, tokenizer, limit: int, seed: int) -> dict:
    from data.tasks import benchmark_rows
    from model.evaluate import Protocol, score_problems, summarize
    from model.grpo import DEFAULT_REFLECTION

    protocol = Protocol(k=4, max_new_tokens=128, batch_size=256, seed=seed)
    out = {}
    for name in VALIDATION:
        rows = benchmark_rows(name, limit=limit, warn_short=False)
        out[name] = summarize(score_problems(model, tokenizer, rows, protocol, DEFAULT_REFLECTION), protocol.k)
    return out


def run_one(setting: dict, out: Path) -> dict:
    """Base then R1-Zero for one setting; returns its numbers (also written to ``out``)."""
    import torch
    import yaml

    from data.formatting import r1_zero_prompt
    from data.synthetic import Noise, base_corpus
    from infra.config import load_stage_config
    from model import factory
    from model.grpo import GRPOTrainer
    from model.sft import SFTArgs, SFTTrainer
    from model.stages.r1_zero import R1ZeroConfig
    from model.stages import report
    from model.trainer import save_model

    root = Path(__file__).resolve().parents[1]
    params = yaml.safe_load((root / "params.yaml").read_text())
    base = params["base"]
    seed = int(setting.get("seed", 0))
    noise = Noise(**{k: setting[k] for k in NOISE if k in setting},
                  **({"code_switch": base.get("code_switch", 0.0)} if "code_switch" not in setting else {}))
    mix = {"arithmetic": 0.75, "countdown": 0.25}
    languages = base.get("languages", {"en": 1.0})
    rows = base_corpus(int(setting.get("corpus_size", base["corpus_size"])), mix=mix, noise=noise, seed=seed,
                       languages=languages)
    tok = factory.train_tokenizer((r1_zero_prompt(r["prompt"]) + " " + r["completion"] for r in rows),
                                  vocab_size=512)
    size = {k: setting[k] for k in SIZE if k in setting}
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = factory.build_tiny_model(tok, seed=seed, **size).to(device)
    work = Path(tempfile.mkdtemp(prefix="thinking-"))
    t0 = time.time()
    sft = SFTTrainer(model, tok, SFTArgs(max_steps=int(setting.get("pretrain_steps", base["max_steps"])),
                                         batch_size=int(setting.get("pretrain_batch", base["batch_size"])),
                                         micro_batch=int(setting.get("pretrain_batch", base["batch_size"])),
                                         lr=float(setting.get("pretrain_lr", base["lr"])),
                                         checkpoint_every=0, seed=seed), work / "base")
    sft.train(rows)
    t_base = time.time() - t0
    save_model(sft.engine, tok, work / "base" / "model")
    policy = factory.load_model(work / "base" / "model", dtype="float32").to(device)
    before = _validation_scores(policy, tok, 100, seed)
    import dataclasses

    knobs = {f.name for f in dataclasses.fields(R1ZeroConfig)} - {"steps", "lr", "seed", "checkpoint_every"}
    cfg = load_stage_config(R1ZeroConfig, "r1_zero", root / "params.yaml",
                            [f"steps={int(setting.get('rl_steps', params['r1_zero']['steps']))}",
                             f"lr={float(setting.get('lr', params['r1_zero']['lr']))}", "checkpoint_every=0",
                             f"seed={seed}", *(f"{k}={v}" for k, v in setting.items() if k in knobs)])
    prompts, _ = cfg.training_rows(cfg.dataset_size, seed, "thinking")
    grpo = GRPOTrainer(policy, tok, prompts, cfg, work / "r1_zero")
    t0 = time.time()
    grpo.train()
    t_rl = time.time() - t0
    after = _validation_scores(policy, tok, 100, seed)
    history = grpo.steps.read()

    def window(key: str, last: bool) -> float:
        part = report.window(history, key, last=last)
        return sum(part) / len(part)

    result = {
        "setting": setting, "base_s": round(t_base, 1), "rl_s": round(t_rl, 1),
        "corpus_reflection": sum("wait ," in r["completion"] for r in rows) / len(rows),
        "before": {b: before[b]["pass@1"] for b in VALIDATION},
        "after": {b: after[b]["pass@1"] for b in VALIDATION},
        "length": [window("response_length", False), window("response_length", True)],
        "reflection": [window("reflection_rate", False), window("reflection_rate", True)],
        "eval_length": [sum(before[b]["mean_length"] for b in VALIDATION) / 2,
                        sum(after[b]["mean_length"] for b in VALIDATION) / 2],
        "eval_reflection": [sum(before[b]["reflection_rate"] for b in VALIDATION) / 2,
                            sum(after[b]["reflection_rate"] for b in VALIDATION) / 2],
    }
    out.write_text(json.dumps(result))
    return result


def _row(r: dict) -> str:
    (l0, l1), (f0, f1) = r["length"], r["reflection"]
    before, after = r["before"], r["after"]
    return (f"| {' '.join(f'{k}={v}' for k, v in r['setting'].items()) or 'default'} "
            f"| {100 * r['corpus_reflection']:.0f}% "
            f"| {100 * before[VALIDATION[0]]:.1f} → {100 * after[VALIDATION[0]]:.1f} "
            f"| {100 * before[VALIDATION[1]]:.1f} → {100 * after[VALIDATION[1]]:.1f} "
            f"| {l0:.1f} → {l1:.1f} ({l1 / max(l0, 1e-9):.2f}x) | {100 * f0:.1f} → {100 * f1:.1f} "
            f"| {r['base_s']:.0f} + {r['rl_s']:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="'KEY=VALUE ...'",
                        help="one setting (repeat for several); default: params.yaml as it is")
    parser.add_argument("--pretrain-steps", type=int, help="for every setting (default: base.max_steps)")
    parser.add_argument("--rl-steps", type=int, help="for every setting (default: r1_zero.steps)")
    parser.add_argument("--workers", type=int, default=2, help="settings at once (default 2)")
    parser.add_argument("--out", default="", help="folder for one JSON per setting (default: a temp folder)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:  # a worker process
        run_one(json.loads(args.one), Path(args.out))
        return
    common = {k: v for k, v in (("pretrain_steps", args.pretrain_steps), ("rl_steps", args.rl_steps)) if v}
    settings = [{**common, **parse_setting(s)} for s in args.settings or [""]]
    out = Path(args.out or tempfile.mkdtemp(prefix="thinking-results-"))
    out.mkdir(parents=True, exist_ok=True)

    def launch(i: int) -> dict | None:
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "MASTER_PORT": str(29600 + i)}
        path = out / f"setting{i}.json"
        log = (out / f"setting{i}.log").open("w")
        proc = subprocess.run([sys.executable, "-m", "benchmarks.thinking", "--one", json.dumps(settings[i]),
                               "--out", str(path)], env=env, stdout=log, stderr=subprocess.STDOUT)
        if proc.returncode != 0:
            print(f"setting {settings[i]} failed: see {out}/setting{i}.log", file=sys.stderr)
            return None
        return json.loads(path.read_text())

    with ThreadPoolExecutor(args.workers) as pool:
        results = list(pool.map(launch, range(len(settings))))
    print(f"\nresults in {out}")
    print("| setting | corpus re-checks | arithmetic_validation pass@1 base → r1_zero | countdown_validation | "
          "rollout length first → last tenth | reflection % first → last | seconds base + RL |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        if r:
            print(_row(r))


if __name__ == "__main__":
    main()
