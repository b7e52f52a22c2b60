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


@pytest.mark.parametrize("word", ["no", "off", "yes", "on", "NO", "n"])
def test_yaml_11_booleans_keep_the_word_in_text_settings(tmp_path, word):
    from model.stages.reasoning_rl import ReasoningRLConfig

    path = _params(tmp_path, f"reasoning_rl:\n  language: {word}\n")
    assert load_stage_config(ReasoningRLConfig, "reasoning_rl", path).language == word
    assert load_stage_config(ReasoningRLConfig, "reasoning_rl", path, [f"language={word}"]).language == word
    assert parse_overrides([f"language={word}"]) == {"language": word}


@pytest.mark.parametrize("value", [False, True])
def test_a_boolean_in_a_text_setting_says_how_to_quote_it(tmp_path, value):
    from flows.pipeline import check_overrides
    from model.stages.reasoning_rl import ReasoningRLConfig

    with pytest.raises(ConfigError, match=r"key 'language': expected text, got the boolean .*language: \"no\""):
        build_config(ReasoningRLConfig, {"language": value})
    path = _params(tmp_path, f"reasoning_rl:\n  language: {str(value).lower()}\n")
    with pytest.raises(ConfigError, match="quote the word"):
        load_stage_config(ReasoningRLConfig, "reasoning_rl", path)
    with pytest.raises(ValueError, match=r"flow parameters \[reasoning_rl\]: key 'language'.*quote the word"):
        check_overrides({"reasoning_rl": {"language": value}}, where="flow parameters")  # a Prefect parameter


def test_yaml_11_words_still_set_booleans_and_true_false_stay_booleans():
    from infra.config import _coerce, load_yaml

    assert load_yaml("a: true\nb: False\nc: no\nd: 'yes'") == {"a": True, "b": False, "c": "no", "d": "yes"}
    assert [_coerce(w, bool, "k") for w in ("yes", "on", "no", "off", True)] == [True, True, False, False, True]
    with pytest.raises(ConfigError, match="expected true/false"):
        _coerce("maybe", bool, "k")


def _help_lines(text: str) -> dict[str, str]:
    """``{key: "value  (type, source)"}`` of ``r1flow stage X --help``'s key lines."""
    return {line.split(" = ")[0].strip(): line.split(" = ", 1)[1].rsplit(")  ", 1)[0] + ")"
            for line in text.splitlines() if line.startswith("  ") and " = " in line}


def test_help_shows_the_values_that_run_and_their_source(tmp_path, capsys):
    from infra.stage import parse_args
    from model.stages.distill import DistillConfig
    from model.stages.rl_student import RLStudentConfig
    from model.stages.student import StudentConfig

    path = _params(tmp_path, "student:\n  max_steps: 500\n  sizes: {s64: {hidden_size: 64, num_heads: 2, num_kv_heads: 1}}\n"
                              "distill:\n  lr: 0.003\nevaluate:\n  benchmarks: [gsm8k]\n")
    with pytest.raises(SystemExit):
        parse_args("student", StudentConfig, ["--help", "--params", str(path), "--set", "item=s64", "--set", "lr=0.01"])
    text = capsys.readouterr().out
    shown = _help_lines(text)
    assert "Run stage 'student@s64'" in text
    assert shown["max_steps"] == f"500  (int, {path} [student]; default 100)"
    assert shown["lr"] == "0.01  (float, --set; default 0.003)"
    assert shown["hidden_size"] == "64  (int, @s64; default 128)"  # the item's size, not the base's
    assert shown["warmup_steps"] == "20  (int, default)"

    with pytest.raises(SystemExit):
        parse_args("distill", DistillConfig, ["--params", str(path), "--set", "item=s64", "-h"])
    shown = _help_lines(capsys.readouterr().out)
    assert shown["lr"] == f"0.003  (float, {path} [distill]; default 0.001)"
    assert shown["model"] == "'artifacts/student/s64/model'  (str, @s64; default 'artifacts/student/{item}/model')"
    with pytest.raises(SystemExit):
        parse_args("rl_student", RLStudentConfig, ["--params", str(path), "--set", "item=s64", "-h"])
    shown = _help_lines(capsys.readouterr().out)
    assert shown["eval_sets"].startswith(f"['gsm8k']  (list, {path} evaluate.benchmarks; default [")

    with pytest.raises(SystemExit):  # a file the config refuses: why, then the defaults
        parse_args("distill", DistillConfig, ["--params", str(tmp_path / "none.yaml"), "--help"])
    text = capsys.readouterr().out
    assert "none.yaml: params file not found; the defaults follow" in text
    assert _help_lines(text)["lr"] == "0.001  (float, default)"


def test_help_of_every_repo_stage_matches_the_config_it_runs():
    """For each stage (two items of a foreach one) of the shipped params.yaml, --help shows each key with
    the value of the config the stage builds (after its item's own settings)."""
    import dataclasses
    import importlib
    from pathlib import Path

    from flows.cli import STAGES
    from infra.config import config_help, load_yaml

    params_path = Path(__file__).parents[1] / "params.yaml"
    params = load_yaml(params_path.read_text())
    items = {"student": params["student"]["sizes"], "distill": params["student"]["sizes"],
             "rl_student": params["student"]["sizes"], "evaluate": params["report"]["models"]}
    for stage, module in STAGES.items():
        module = importlib.import_module(module)
        cls = next(v for k, v in vars(module).items()
                   if k.endswith("Config") and isinstance(v, type) and v.__module__ == module.__name__)
        for item in list(items.get(stage, [""]))[:2]:
            sets = [f"item={item}"] * bool(item)
            cfg = load_stage_config(cls, stage, params_path, sets)
            cfg = cfg.for_item() if item and hasattr(cfg, "for_item") else cfg
            shown = _help_lines(config_help(cls, stage, params_path, sets))
            assert {k: v.split("  (")[0] for k, v in shown.items()} == {
                k: repr(v) for k, v in dataclasses.asdict(cfg).items()}, (stage, item)


def _evaluate(path, *sets):
    from model.stages.evaluate import EvaluateConfig, load_benchmarks

    return load_benchmarks(load_stage_config(EvaluateConfig, "evaluate", path, list(sets)))


def test_benchmark_problems_follow_benchmark_seed_not_the_run_seed(tmp_path):
    path = _params(tmp_path, "evaluate:\n  benchmarks: [arithmetic_test, countdown_hard]\n  limit: 40\n")
    published = _evaluate(path, "seed=0")
    assert published == _evaluate(path, "seed=7")  # ids and prompts (and answers): whole rows
    assert [(r["id"], r["prompt"]) for r in published["arithmetic_test"][:2]] == [
        ("arithmetic-test-00000", "Compute 16 + 593"), ("arithmetic-test-00001", "Compute 375 + 69")]  # as before issue 12
    other = _evaluate(path, "seed=7", "benchmark_seed=1")
    assert [r["id"] for r in other["countdown_hard"]] == [r["id"] for r in published["countdown_hard"]]
    assert all({r["prompt"] for r in other[b]} != {r["prompt"] for r in published[b]} for b in published)


@pytest.mark.parametrize("section", ["  benchmark_seed: 3\n", ""], ids=["benchmark_seed_3", "inherited_default"])
def test_training_stages_are_decontaminated_against_evaluates_problems(tmp_path, section):
    from model.stages.cold_start import ColdStartConfig
    from model.stages.r1_zero import R1ZeroConfig

    path = _params(tmp_path, f"evaluate:\n  benchmarks: [arithmetic_test, countdown_test]\n  limit: 30\n{section}"
                             "r1_zero:\n  seed: 5\ncold_start:\n  seed: 5\n  eval_limit: 30\n")
    scored = [r["prompt"] for rows in _evaluate(path, "seed=5").values() for r in rows]
    r1_zero = load_stage_config(R1ZeroConfig, "r1_zero", path)
    assert r1_zero.benchmark_seed == (3 if section else 0)  # inherited from evaluate
    assert set(scored) <= set(r1_zero.eval_prompts())  # its eval_limit (2000) reads further
    cold_start = load_stage_config(ColdStartConfig, "cold_start", path)
    assert cold_start.eval_prompts() == scored  # the same limit: the very problems evaluate scores
    leaked = [{"id": "leak", "prompt": scored[0]}, {"id": "clean", "prompt": "Compute 1 + 1 + 1 + 1 + 1 + 1 + 1"}]
    assert [r["id"] for r in r1_zero.decontaminated(leaked, "r1_zero")[0]] == ["clean"]


def test_the_language_ablation_runs_with_what_reasoning_rl_resolves_minus_the_language_reward(tmp_path):
    """reasoning_rl_nolang takes reasoning_rl's values wherever they come from (its section, an
    inherited key, a default), its rewards without language_consistency, and its own section
    and --set on top."""
    from model.stages.reasoning_rl import ReasoningRLConfig
    from model.stages.reasoning_rl_nolang import ReasoningRLNoLangConfig

    params = tmp_path / "params.yaml"
    params.write_text("evaluate: {benchmarks: [arithmetic_test]}\n"
                      "reasoning_rl: {steps: 7, rewards: {accuracy: 2.0, language_consistency: 1.0, format: 0.3},"
                      " eval_sets: [countdown_test]}\n"
                      "reasoning_rl_nolang: {lr: 0.002}\n")
    full = load_stage_config(ReasoningRLConfig, "reasoning_rl", params)
    ablation = load_stage_config(ReasoningRLNoLangConfig, "reasoning_rl_nolang", params, ["seed=3"])
    assert (ablation.steps, ablation.eval_sets) == (7, ["countdown_test"])  # reasoning_rl's, not evaluate's
    assert ablation.rewards == {"accuracy": 2.0, "format": 0.3}
    assert (ablation.lr, ablation.seed, full.lr, full.seed) == (0.002, 3, full.lr, full.seed)
    assert full.lr != 0.002
    params.write_text("reasoning_rl: {}\n")  # reasoning_rl's defaults, less the language reward
    ablation = load_stage_config(ReasoningRLNoLangConfig, "reasoning_rl_nolang", params)
    default = ReasoningRLConfig()
    assert "language_consistency" in default.rewards
    assert ablation.rewards == {k: v for k, v in default.rewards.items() if k != "language_consistency"}
    assert ablation.steps == default.steps
    assert ReasoningRLNoLangConfig().rewards == ablation.rewards  # built directly, derived from the defaults
