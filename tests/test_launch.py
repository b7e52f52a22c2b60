"""Launch settings: which launcher runs a stage on which devices (infra/launch.yaml), and how
the pipeline's runner hands out GPU sets. The GPU ids are given, as a GPU host would show
them; the commands are checked against the launchers' own argument parsers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from infra.schedule import GpuSets
from infra.launch import LaunchSettings, gpu_sets, launch_settings, stage_command

ROOT = Path(__file__).resolve().parents[1]

TRAIN, SAMPLE = ["r1_zero", "sft_cold", "distill"], ["evaluate", "cold_start"]


def settings(**kw) -> LaunchSettings:
    return LaunchSettings(**{"training_stages": TRAIN, "sampling_stages": SAMPLE, **kw})


def test_the_packaged_launch_file_covers_every_stage():
    from flows.cli import STAGES

    s = launch_settings()
    assert s.gpus == "auto" and s.cpu_ranks == 1
    assert {s.kind(name) for name in STAGES} == {"train", "sample", "cpu"}
    assert s.kind("report") == "cpu" and s.kind("distill@s64") == "train" and s.kind("evaluate@r1") == "sample"


def test_launch_file_errors_name_the_file_and_the_key(tmp_path):
    path = tmp_path / "launch.yaml"
    path.write_text(yaml.safe_dump({"gpu": 2}))
    with pytest.raises(ValueError, match=rf"{path}: unknown key\(s\) \['gpu'\]"):
        launch_settings(path)
    path.write_text(yaml.safe_dump({"gpus": -1}))
    with pytest.raises(ValueError, match="gpus must be auto or a count"):
        launch_settings(path)


def test_gpu_sets_cut_the_visible_gpus():
    four = ["0", "1", "2", "3"]
    assert gpu_sets(settings(gpus="auto"), four) == [four]
    assert gpu_sets(settings(gpus=2), four) == [["0", "1"], ["2", "3"]]
    assert gpu_sets(settings(gpus=3), four) == [["0", "1", "2"]]  # the fourth stays idle
    assert gpu_sets(settings(gpus=0), four) == []
    assert gpu_sets(settings(), []) == []
    with pytest.raises(ValueError, match="asks for 8 GPUs per stage; only 4 visible"):
        gpu_sets(settings(gpus=8), four)


def _deepspeed_args(cmd: list[str]):
    """The command's arguments as DeepSpeed's own launcher parses them."""
    from deepspeed.launcher.runner import parse_args

    assert cmd[1:3] == ["-m", "deepspeed.launcher.runner"]
    return parse_args(cmd[3:])


def test_training_stage_on_a_gpu_set_runs_under_the_deepspeed_launcher():
    cmd, env = stage_command("r1_zero", ["--set", "steps=2"], settings(), gpus=["2", "3"])
    args = _deepspeed_args(cmd)
    assert args.include == "localhost:2,3" and args.no_local_rank and args.module
    assert args.user_script == "flows.cli" and args.user_args == ["stage", "r1_zero", "--set", "steps=2"]
    assert env == {"CUDA_VISIBLE_DEVICES": ""}  # removed: the launcher maps ranks to GPUs 2 and 3


def test_hostfile_spreads_a_training_stage_over_nodes(tmp_path):
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("node1 slots=8\nnode2 slots=8\n")
    cmd, _ = stage_command("sft_cold", [], settings(hostfile=str(hostfile)), gpus=["0"])
    assert _deepspeed_args(cmd).hostfile == str(hostfile)


def test_sampling_and_one_gpu_stages_run_one_process_on_the_first_gpu():
    cmd, env = stage_command("evaluate@r1", [], settings(), gpus=["4", "5"])
    assert cmd == [sys.executable, "-m", "flows.cli", "stage", "evaluate@r1"] and env == {"CUDA_VISIBLE_DEVICES": "4"}
    cmd, env = stage_command("sft_cold", [], settings(), gpus=["1"])
    assert cmd[1:] == ["-m", "flows.cli", "stage", "sft_cold"] and env == {"CUDA_VISIBLE_DEVICES": "1"}
    cmd, env = stage_command("report", [], settings(), gpus=["0", "1"])
    assert cmd[1:] == ["-m", "flows.cli", "stage", "report"] and env == {}


def test_cpu_ranks_run_a_training_stage_under_torchrun_and_gpus_0_keeps_the_cpu():
    cmd, env = stage_command("distill@s64", [], settings(cpu_ranks=2), gpus=[])
    assert cmd[1:5] == ["-m", "torch.distributed.run", "--nproc_per_node", "2"]
    assert cmd[-4:] == ["-m", "flows.cli", "stage", "distill@s64"] and int(env["OMP_NUM_THREADS"]) >= 1
    cmd, env = stage_command("r1_zero", [], settings(gpus=0), gpus=["0", "1"])
    assert cmd[1:] == ["-m", "flows.cli", "stage", "r1_zero"] and env == {"CUDA_VISIBLE_DEVICES": "-1"}  # hidden
    cmd, _ = stage_command("evaluate", [], settings(cpu_ranks=2), gpus=[])
    assert "torch.distributed.run" not in cmd  # sampling stages are one process


def test_gpu_stages_take_a_free_set_while_cpu_stages_need_none():
    sets = GpuSets(settings(gpus=1), gpus=["0", "1"])
    assert [sets.take(s) for s in ("r1_zero", "sft_cold", "report")] == [["0"], ["1"], None]
    assert sets.held == {"r1_zero": ["0"], "sft_cold": ["1"]} and sets.free == []
    assert sets.needs_gpu("evaluate@base") and not sets.needs_gpu("report")
    sets.release("sft_cold")
    assert sets.take("evaluate@base") == ["1"]
    cpu_host = GpuSets(settings(), gpus=[])
    assert not cpu_host.needs_gpu("r1_zero") and cpu_host.take("r1_zero") is None and cpu_host.held == {}


def test_r1flow_launch_dry_run_prints_the_command(tmp_path):
    path = tmp_path / "launch.yaml"
    path.write_text(yaml.safe_dump({"cpu_ranks": 2, "training_stages": ["sft_cold"]}))
    env = {"R1FLOW_LAUNCH": str(path), "CUDA_VISIBLE_DEVICES": "", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-m", "flows.cli", "launch", "sft_cold", "--dry-run", "--set", "epochs=1"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "torch.distributed.run --nproc_per_node 2" in proc.stdout
    assert proc.stdout.rstrip().endswith("-m flows.cli stage sft_cold --set epochs=1")


def test_gpus_per_stage_holds_outside_the_runner_too():
    # `dvc repro` on a 2-GPU host with `gpus: 1`: the stage takes the first set, one GPU.
    cmd, env = stage_command("r1_zero", [], settings(gpus=1), gpus=["0", "1"])
    assert "deepspeed.launcher.runner" not in cmd and env == {"CUDA_VISIBLE_DEVICES": "0"}
    with pytest.raises(ValueError, match="asks for 3 GPUs per stage; only 2 visible"):
        stage_command("r1_zero", [], settings(gpus=3), gpus=["0", "1"])
    with pytest.raises(ValueError, match="give their indices"):
        stage_command("r1_zero", [], settings(), gpus=["GPU-8a3f", "GPU-77c1"])


def test_a_launch_file_of_your_own_needs_only_the_keys_it_changes(tmp_path):
    (tmp_path / "hosts").write_text("node1 slots=8\n")
    path = tmp_path / "launch.yaml"
    path.write_text(yaml.safe_dump({"gpus": 2, "hostfile": "hosts"}))
    s = launch_settings(path)
    assert s.gpus == 2 and s.kind("r1_zero") == "train" and s.kind("evaluate@base") == "sample"
    assert s.hostfile == str(tmp_path / "hosts") and s.source == str(path)  # relative to the launch file


@pytest.mark.parametrize("content,message", [
    ("- gpus: 2\n", "expected `key: value` lines"),
    ("gpus: true\n", "gpus must be auto or a count"),
    ("cpu_ranks: true\n", "cpu_ranks must be a count"),
    ("ds_config: zero9\n", "zero9"),
    ("training_stages: r1_zero\n", "training_stages must be a list"),
])
def test_bad_launch_files_fail_naming_the_file(tmp_path, content, message):
    path = tmp_path / "launch.yaml"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as err:
        launch_settings(path)
    assert str(path) in str(err.value)
    with pytest.raises(ValueError, match="not found"):
        launch_settings(tmp_path / "missing.yaml")


def test_a_hostfile_makes_the_nodes_one_set_for_the_runner(tmp_path):
    hostfile = tmp_path / "hosts"
    hostfile.write_text("node1 slots=8\nnode2 slots=8\n")
    sets = GpuSets(settings(hostfile=str(hostfile)), gpus=[])  # a head node without GPUs
    assert sets.take("r1_zero") == [] and sets.free == [] and not sets.needs_gpu("report")


def test_the_runner_hands_its_launch_file_to_every_stage(tmp_path, monkeypatch):
    from tasks.stages import stage_env

    path = tmp_path / "launch.yaml"
    path.write_text("gpus: 0\n")
    monkeypatch.setenv("R1FLOW_LAUNCH", str(path))
    assert stage_env(None, "sqlite:///x.db")["R1FLOW_LAUNCH"] == str(path)


def test_r1flow_launch_refuses_an_unknown_stage():
    proc = subprocess.run([sys.executable, "-m", "flows.cli", "launch", "nosuch", "--dry-run"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "unknown stage 'nosuch'" in proc.stderr


def test_recipes_are_checked_key_by_key_against_params_yaml(tmp_path, monkeypatch):
    from flows.pipeline import load_recipe

    for recipe in ("recipes/qwen2.5-0.5b-gsm8k.yaml", "recipes/qwen2.5-math-1.5b-8gpu.yaml",
                   "recipes/olmoe-1b-7b-gsm8k.yaml"):
        assert load_recipe(ROOT / recipe)["base"]["model"].startswith(("Qwen/", "allenai/OLMoE"))
    monkeypatch.chdir(ROOT)  # params.yaml: sft_cold batch_size 16
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"sft_cold": {"micro_batch": 32}}))  # merged: 16 is not a multiple of 32
    with pytest.raises(ValueError, match=r"recipe .*bad.yaml \[sft_cold\].*batch_size \(16\) must be a multiple"):
        load_recipe(bad)
    bad.write_text(yaml.safe_dump({"r1_zero": {"num_generation": 4}}))
    with pytest.raises(ValueError, match="num_generation.*did you mean 'num_generations'"):
        load_recipe(bad)
    bad.write_text(yaml.safe_dump({"r1_zero": {"dataset": "HuggingFaceH4/aime_2024"}}))
    with pytest.raises(ValueError, match=r"aime24\) has only a test split"):
        load_recipe(bad)
