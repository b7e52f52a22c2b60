"""N ranks, one result (DESIGN.md contract 4): SFT, reward-model and GRPO stages run as dvc.yaml
runs them (`python -m flows.cli launch NAME`, here with a launch file of `cpu_ranks: 2`, which
starts `flows.cli stage NAME` under torchrun) on two CPU ranks (gloo) into one shared project,
and their saved weights, per-step metrics and samples equal those of one rank at the same global
batch. Ranks say which rows they trained on in DEBUG lines (model.trainer.log_shard)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from conftest import DIST_VARS
from presets import SMALL

SHARD = re.compile(r"shard (\S+) step=(\d+) rank=(\d+) rows=(\[[^\]]*\])")


def _project(path: Path, **sections) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    params = {k: {**v, **sections.get(k, {})} for k, v in SMALL.items()}
    (path / "params.yaml").write_text(yaml.safe_dump(params))
    return path


def _zero3_config(tmp_path: Path) -> Path:
    """zero3.json with every tensor partitioned: the default persistence threshold (100k
    elements) would keep all of a tiny model whole on each rank and hide ZeRO-3 (ENV.md)."""
    from infra.launch import load_ds_config

    cfg = load_ds_config("zero3")
    cfg["zero_optimization"]["stage3_param_persistence_threshold"] = 0
    path = tmp_path / "zero3_all.json"
    path.write_text(json.dumps(cfg))
    return path


def _stage(project: Path, stage: str, ranks: int, ds_config: str | Path = "zero2") -> str:
    """Run one stage as dvc.yaml runs it (``python -m flows.cli launch``), with a launch file
    asking for ``ranks`` CPU processes (torchrun); returns its log (stderr)."""
    from infra.launch import launch_settings

    settings = launch_settings()
    launch_file = project / f"launch_{ranks}.yaml"
    launch_file.write_text(yaml.safe_dump({"cpu_ranks": ranks, "training_stages": settings.training_stages,
                                           "sampling_stages": settings.sampling_stages}))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "R1FLOW_DS_CONFIG": str(ds_config), "R1FLOW_LOG_LEVEL": "DEBUG",
           "R1FLOW_LAUNCH": str(launch_file), "CUDA_VISIBLE_DEVICES": ""}
    for key in DIST_VARS:
        env.pop(key, None)
    cmd = [sys.executable, "-m", "flows.cli", "launch", stage]
    proc = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-6000:]
    launched = proc.stdout.splitlines()[0]
    assert ("torch.distributed.run --nproc_per_node 2" in launched) == (ranks == 2), launched
    return proc.stderr


def _shards(log: str) -> dict[tuple[str, int], dict[int, list[int]]]:
    """(trainer, step) -> rank -> row ids it trained on."""
    out: dict[tuple[str, int], dict[int, list[int]]] = {}
    for trainer, step, rank, rows in SHARD.findall(log):
        out.setdefault((trainer, int(step)), {})[int(rank)] = json.loads(rows)
    return out


def _assert_disjoint_shares(two: str, one: str) -> None:
    """Each step's rows are split between the two ranks with no overlap, and together they are
    the rows the one-rank run trained on at that step."""
    two_ranks, one_rank = _shards(two), _shards(one)
    assert two_ranks and set(two_ranks) == set(one_rank)
    for key, by_rank in two_ranks.items():
        assert set(by_rank) == {0, 1}, key
        assert by_rank[0] and by_rank[1], key
        assert not set(by_rank[0]) & set(by_rank[1]), key
        assert sorted(by_rank[0] + by_rank[1]) == sorted(one_rank[key][0]), key


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert set(wa) == set(wb) and wa
    for name in wa:
        assert wa[name].shape == wb[name].shape and wa[name].numel() > 0, name
        torch.testing.assert_close(wa[name], wb[name], rtol=1e-4, atol=1e-5, msg=name)


def _assert_trained(folder: Path, start: Path) -> None:
    after, before = _weights(folder), _weights(start)
    changed = [n for n in after if n in before and not torch.equal(after[n], before[n])]
    assert len(changed) >= len(after) // 2, changed  # the comparison above is not of untouched weights


def _steps(project: Path, stage: str) -> list[dict]:
    path = project / "artifacts" / stage / "steps.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def _assert_same_metrics(two: list[dict], one: list[dict], keys: list[str]) -> None:
    assert [r["step"] for r in two] == [r["step"] for r in one]  # one row per step, not one per rank
    for a, b in zip(two, one):
        for key in keys:
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6, nan_ok=True), (a["step"], key)


def _one_output(out: Path, name: str = "model") -> None:
    assert (out / name / "model.safetensors").is_file() and (out / name / "config.json").is_file()
    assert not [p.name for p in out.iterdir() if p.name.startswith(f".{name}.")]  # no stray staged folders
    assert not (out / "checkpoints").exists()


def test_sft_on_two_ranks_equals_one_rank(tiny_base, tmp_path):
    from data.synthetic import make_rows

    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps({"prompt": r["prompt"], "completion": f"<answer> {r['answer']} </answer>"}) + "\n"
                            for r in make_rows("arithmetic", "train", 24)))
    # 3 steps of 8 rows (the third straddles two epochs), micro-batches of 2, a checkpoint at step 2.
    section = {"model": str(tiny_base), "data": str(data), "max_steps": 3, "batch_size": 8, "micro_batch": 2,
               "warmup_steps": 1, "checkpoint_every": 2}
    one = _project(tmp_path / "one", sft_cold=section)
    two = _project(tmp_path / "two", sft_cold=section)
    log_one, log_two = _stage(one, "sft_cold", 1), _stage(two, "sft_cold", 2)

    out = two / "artifacts" / "sft_cold"
    _one_output(out)
    _assert_same_weights(out / "model", one / "artifacts" / "sft_cold" / "model")
    _assert_trained(out / "model", tiny_base)
    _assert_same_metrics(_steps(two, "sft_cold"), _steps(one, "sft_cold"), ["loss", "lr", "grad_norm"])
    assert len(_steps(two, "sft_cold")) == 3
    _assert_disjoint_shares(log_two, log_one)


def test_reward_models_on_two_ranks_equal_one_rank(tiny_base, tmp_path):
    section = {"model": str(tiny_base), "pairs": 120, "harmless_rows": 80, "helpful_steps": 2,
               "harmless_steps": 2, "batch_size": 8, "micro_batch": 2, "checkpoint_every": 0}
    one = _project(tmp_path / "one", reward_model=section)
    two = _project(tmp_path / "two", reward_model=section)
    log_one, log_two = _stage(one, "reward_model", 1), _stage(two, "reward_model", 2)

    out = two / "artifacts" / "reward_model"
    for name in ("helpful", "harmless"):
        _one_output(out, name)
        _assert_same_weights(out / name, one / "artifacts" / "reward_model" / name)
    keys = [f"{n}_{k}" for n in ("helpful", "harmless") for k in ("loss", "accuracy", "grad_norm")]
    _assert_same_metrics(_steps(two, "reward_model"), _steps(one, "reward_model"), keys + ["helpful_margin"])
    _assert_disjoint_shares(log_two, log_one)
    metrics = [json.loads((p / "artifacts" / "reward_model" / "metrics.json").read_text()) for p in (two, one)]
    assert metrics[0]["helpful_pair_accuracy"] == pytest.approx(metrics[1]["helpful_pair_accuracy"])


GRPO_KEYS = ["reward", "reward_std", "frac_zero_std_groups", "reward/language_consistency", "accuracy",
             "accuracy/arithmetic", "response_length", "truncated_rate", "format_rate", "kl", "clip_fraction",
             "entropy", "loss", "grad_norm"]


def test_grpo_on_two_ranks_zero2_and_zero3_equals_one_rank(tiny_base, tmp_path):
    # language_consistency varies between completions of an untrained model, so there is a
    # gradient; 2 prompts (8 completions) per generate call: two calls on one rank, one per rank on
    # two; the reference is replaced by the policy after step 2 and checkpointed with it.
    section = {"model": str(tiny_base), "steps": 3, "prompts_per_step": 4, "num_generations": 4,
               "micro_batch": 4, "generation_batch_size": 8, "max_completion_length": 12, "beta": 0.04,
               "lr": 3e-3, "ref_refresh_steps": 2, "checkpoint_every": 2, "sample_every": 1,
               "rewards": {"language_consistency": 1.0, "accuracy": 1.0}, "dataset": "arithmetic", "dataset_size": 32}
    runs = {name: _project(tmp_path / name, reasoning_rl=section) for name in ("one", "zero2", "zero3")}
    logs = {"one": _stage(runs["one"], "reasoning_rl", 1), "zero2": _stage(runs["zero2"], "reasoning_rl", 2),
            "zero3": _stage(runs["zero3"], "reasoning_rl", 2, _zero3_config(tmp_path))}

    reference = runs["one"] / "artifacts" / "reasoning_rl"
    _assert_trained(reference / "model", tiny_base)
    history = _steps(runs["one"], "reasoning_rl")
    assert history[1]["kl"] > 1e-6 and history[2]["kl"] < 1e-7  # refreshed after step 2: ref = rollout policy
    for name in ("zero2", "zero3"):
        out = runs[name] / "artifacts" / "reasoning_rl"
        _one_output(out)
        _assert_same_weights(out / "model", reference / "model")
        _assert_same_metrics(_steps(runs[name], "reasoning_rl"), history, GRPO_KEYS)
        # One writer, and the samples of the whole step: the same completions as on one rank.
        assert (out / "samples.jsonl").read_text() == (reference / "samples.jsonl").read_text()
        _assert_disjoint_shares(logs[name], logs["one"])
    assert "zero stage 3, world size 2" in logs["zero3"]
    _assert_same_logits(runs["zero3"] / "artifacts" / "reasoning_rl" / "model", reference / "model", tiny_base)


def _assert_same_logits(a: Path, b: Path, tokenizer: Path) -> None:
    """Reloaded, the two saved models compute the same logits (the ZeRO-3 save is a whole model)."""
    from model import factory

    ids = factory.load_tokenizer(tokenizer)(["Compute 12 + 30", "Compute 7 + 5"], padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = [factory.load_model(path).eval()(**ids).logits for path in (a, b)]
    torch.testing.assert_close(logits[0], logits[1], rtol=1e-4, atol=1e-5)


def test_grad_accum_names_the_knobs_when_the_batch_does_not_split(monkeypatch):
    from model.trainer import grad_accum_steps, rank_share

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert grad_accum_steps(8, 2) == 2
    assert rank_share(8) == slice(4, 8)
    with pytest.raises(ValueError, match=r"batch_size \(8\) must be a multiple of micro_batch \(8\) x world size \(2\)"):
        grad_accum_steps(8, 8)
    with pytest.raises(ValueError, match="3 prompts per step do not split over 2 ranks"):
        rank_share(3, "prompts")
