"""dvc.yaml's code deps are each stage's import closure (infra/deps.py), so a changed module
re-runs every stage that imports it and no stale output counts as up to date."""

from __future__ import annotations

import shutil
from pathlib import Path

from infra import deps

ROOT = Path(__file__).resolve().parents[1]


def test_dvc_yaml_code_deps_match_the_import_closure():
    drift = deps.drift(ROOT / "dvc.yaml")
    assert drift == {}, f"run `python -m infra.deps --fix`: {drift}"


def test_the_closure_follows_imports_inside_functions_and_files_read_at_run_time(tmp_path):
    for path, text in {
        "model/__init__.py": "",
        "model/stages/__init__.py": "",
        "model/stages/toy.py": "from model import helper\n\ndef run():\n    from data.late import x\n",
        "model/helper.py": "import torch\nfrom . import sandbox_user\nfrom infra import tracking\n",
        "infra/tracking.py": "from model import unused\n",  # reports only: neither it nor its imports
        "model/sandbox_user.py": "",
        "model/unused.py": "",
        "data/__init__.py": "",
        "data/late.py": "x = 1\n",
        "infra/__init__.py": "",
        "infra/launch.py": "",
    }.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    got = deps.import_closure(["model.stages.toy", "infra.launch"], tmp_path)
    assert got == ["data/__init__.py", "data/late.py", "infra/__init__.py", "infra/ds_configs", "infra/launch.py",
                   "infra/launch.yaml", "model/__init__.py", "model/helper.py", "model/sandbox_user.py",
                   "model/stages/__init__.py", "model/stages/toy.py"]


def test_fix_rewrites_drifted_deps_and_keeps_comments(tmp_path):
    shutil.copytree(ROOT, tmp_path / "p", ignore=shutil.ignore_patterns(".venv", ".git", "artifacts", ".r1flow",
                                                                          ".cache", "*.db", "mlruns"))
    dvc_yaml = tmp_path / "p" / "dvc.yaml"
    text = dvc_yaml.read_text()
    dvc_yaml.write_text(text.replace("      - model/stages/report.py\n", "", 1))  # drop one dep
    assert deps.drift(dvc_yaml) == {"report": {"missing": ["model/stages/report.py"], "extra": []}}
    assert deps.fix(dvc_yaml) == ["report"]
    assert deps.drift(dvc_yaml) == {} and dvc_yaml.read_text() == text  # comments and layout kept


def test_every_value_a_stage_inherits_is_one_of_its_params():
    import dataclasses
    import importlib

    from flows.cli import STAGES
    from flows.pipeline import _config_class
    from infra.config import load_yaml

    stages = load_yaml((ROOT / "dvc.yaml").read_text())["stages"]
    for name, spec in stages.items():
        params = spec.get("do", spec).get("params", [])
        cls = _config_class(importlib.import_module(STAGES[name]))
        for field in dataclasses.fields(cls):
            source = field.metadata.get("inherit")
            if source:
                assert source in params or source.split(".")[0] in params or f"{source}.${{key}}" in params, (
                    f"dvc.yaml stage {name}: its config inherits {source}; list it under params")
