"""Stage configs: params.yaml section, then --set overrides; unknown keys and bad types fail."""

from __future__ import annotations

import pytest

from infra.config import ConfigError, build_config, load_stage_config, parse_overrides
from model.grpo import GRPOArgs
from model.stages.base import BaseConfig
from model.stages.r1_zero import R1ZeroConfig


def _params(tmp_path, text):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def test_section_then_overrides(tmp_path):
    path = _params(tmp_path, "r1_zero:\n  steps: 7\n  lr: 0.01\n")
    cfg = load_stage_config(R1ZeroConfig, "r1_zero", path, ["lr=2e-4", "rewards={accuracy: 1.0}"])
    assert cfg.steps == 7 and cfg.lr == 2e-4 and cfg.rewards == {"accuracy": 1.0}
    assert cfg.num_generations == GRPOArgs().num_generations  # untouched default


def test_unknown_key_names_key_and_suggests(tmp_path):
    path = _params(tmp_path, "r1_zero:\n  num_generatoins: 4\n")
    with pytest.raises(ConfigError, match=r"unknown key 'num_generatoins' \(did you mean 'num_generations'\?\)"):
        load_stage_config(R1ZeroConfig, "r1_zero", path)


def test_wrong_type_names_key_and_type(tmp_path):
    path = _params(tmp_path, "r1_zero:\n  steps: many\n")
    with pytest.raises(ConfigError, match=r"key 'steps'.*expected int"):
        load_stage_config(R1ZeroConfig, "r1_zero", path)
    with pytest.raises(ConfigError, match=r"key 'steps'.*expected an integer"):
        build_config(R1ZeroConfig, {"steps": True})


def test_int_accepted_for_float_and_lists_checked():
    cfg = build_config(GRPOArgs, {"lr": 1, "reflection_phrases": ["wait"]})
    assert isinstance(cfg.lr, float)
    with pytest.raises(ConfigError, match="reflection_phrases"):
        build_config(GRPOArgs, {"reflection_phrases": "wait"})


def test_post_init_checks_say_what_to_change():
    with pytest.raises(ConfigError, match="loss_type 'ppo'"):
        build_config(GRPOArgs, {"loss_type": "ppo"})
    with pytest.raises(ConfigError, match="must be a multiple of micro_batch"):
        build_config(GRPOArgs, {"prompts_per_step": 3, "num_generations": 3, "micro_batch": 4})
    with pytest.raises(ConfigError, match="unknown reward 'speed'"):
        build_config(GRPOArgs, {"rewards": {"speed": 1.0}})
    with pytest.raises(ConfigError, match="mix: unknown task families"):
        build_config(BaseConfig, {"mix": {"chess": 1.0}})


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_overrides(["lr"])


def test_repo_params_yaml_is_valid():
    """Every section of the shipped params.yaml builds its stage's config."""
    from pathlib import Path

    from flows.cli import STAGES
    import importlib
    import yaml

    params = yaml.safe_load((Path(__file__).parents[1] / "params.yaml").read_text())
    for stage, section in params.items():
        module = importlib.import_module(STAGES[stage])
        cls = next(v for k, v in vars(module).items()
                   if k.endswith("Config") and isinstance(v, type) and v.__module__ == module.__name__)
        build_config(cls, section, where=stage)
