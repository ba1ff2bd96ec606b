"""Every stage of dvc.yaml depends on the code it runs and a train/evaluate stage on no other model's
module: a forgotten dependency would leave a stale output, and a dependency on the whole models
folder would retrain every model whenever one model file is added.

The code a stage runs is what its command's module loads (`python -m pipelines.x` imports), read
from `sys.modules` in a fresh interpreter; the stages and their deps are DVC's own resolution of
dvc.yaml against params.yaml."""

import json
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "components/models"


@cache
def loaded_code(module: str) -> frozenset[str]:
    """The repository's .py files (relative paths) loaded by importing `module`."""
    script = ("import json, pathlib, sys, importlib; importlib.import_module(sys.argv[1]); root = pathlib.Path.cwd(); "
              "print(json.dumps(sorted(str(pathlib.Path(m.__file__).resolve().relative_to(root)) "
              "for m in list(sys.modules.values()) if getattr(m, '__file__', None) "
              "and pathlib.Path(m.__file__).resolve().is_relative_to(root))))")
    result = subprocess.run([sys.executable, "-c", script, module], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    files = json.loads(result.stdout.strip().splitlines()[-1])
    # An empty package marker runs nothing; the day it holds code, the stages must depend on it.
    return frozenset(f for f in files if f.startswith(("components/", "pipelines/")) and (REPO / f).stat().st_size)


def stages() -> list[tuple[str, str, str | None, list[str]]]:
    """(stage, module its command runs, its model's registry name or None, dependency paths)."""
    from dvc.repo import Repo

    models = yaml.safe_load((REPO / "params.yaml").read_text())["models"]
    found = []
    with Repo(str(REPO)) as repo:
        for stage in repo.index.stages:
            words = stage.cmd.split()
            assert words[:2] == ["python", "-m"], f"{stage.addressing}: run a module: python -m pipelines.<stage>"
            key = stage.addressing.split("@")[1] if "@" in stage.addressing else None
            found.append((stage.addressing, words[2], key and models[key]["model"], [d.def_path for d in stage.deps]))
    return found


STAGES = stages()


def covered(path: str, deps: list[str]) -> bool:
    return any(path == dep or path.startswith(dep.rstrip("/") + "/") for dep in deps)


def other_models_module(path: str, model: str | None) -> bool:
    """A model's own module (components/models/<name>.py) of a model other than the stage's."""
    return (Path(path).parent == Path("components/models") and Path(path).suffix == ".py"
            and Path(path).stem not in ("__init__", "base", model))


@pytest.mark.parametrize("stage, module, model, deps", STAGES, ids=[s[0] for s in STAGES])
def test_a_stage_depends_on_all_the_code_it_loads_but_no_other_models_module(stage, module, model, deps):
    missing = sorted(f for f in loaded_code(module) if not covered(f, deps) and not other_models_module(f, model))
    assert not missing, f"{stage}: add to its deps in dvc.yaml: {', '.join(missing)}"
    others = [d for d in deps if d.startswith("components/models/") and other_models_module(d, model)]
    assert not others, f"{stage} depends on other models' modules {others}"
    # A folder holding the model modules would rerun the stage whenever any model file changes.
    assert not {"components", "components/models"} & {d.rstrip("/") for d in deps}, stage
    if model:
        assert f"components/models/{model}.py" in deps and (MODELS / f"{model}.py").is_file(), (
            f"{stage}: model {model!r} lives in components/models/{model}.py, a dependency of its stage")


def test_every_model_is_a_module_named_after_it():
    from components.models import REGISTRY

    # Models the tests define for themselves (tests/*.py) are not pipeline models.
    for name, cls in REGISTRY.items():
        if cls.__module__.startswith("components."):
            assert cls.__module__ == f"components.models.{name}", f"model {name!r} is defined in {cls.__module__}"
    assert {"nade", "row_lstm", "diagonal_bilstm", "dcgan"} <= set(REGISTRY)
