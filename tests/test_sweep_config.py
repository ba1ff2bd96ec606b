"""A model's `sweep` entry and the `precision` setting: checked before Ray starts, with clear errors."""

import math
from pathlib import Path

import pytest
import torch

from components.data.batch import Batch, DataSpec
from components.models import build_model
from components.training import autocast
from pipelines import sweep


def nade(overrides: dict):
    return build_model("nade", DataSpec.single((1, 3, 3)), {"hidden_units": 4, **overrides})


def test_a_valid_sweep_splits_model_parameters_from_training_settings():
    plan = sweep.plan({"trials": 3, "concurrent": 2, "grace_epochs": 2, "space": {
        "hidden_units": {"choice": [4, 8]}, "training.lr": {"loguniform": [1e-4, 1e-2]}}})
    assert plan.space == {"params": {"hidden_units": {"choice": [4, 8]}},
                          "settings": {"lr": {"loguniform": [1e-4, 1e-2]}}}
    assert (plan.trials, plan.concurrent, plan.grace_epochs) == (3, 2, 2)


def test_a_sweep_left_at_its_defaults_gets_the_schemas_defaults():
    plan = sweep.plan({"space": {"training.seed": {"choice": [0, 1]}}})
    assert (plan.trials, plan.concurrent, plan.grace_epochs) == (4, None, 1)
    assert plan.space == {"params": {}, "settings": {"seed": {"choice": [0, 1]}}}


@pytest.mark.parametrize("spec, key, message", [
    ({"trials": 2, "budget": 5, "space": {"hidden_units": {"choice": [4]}}}, "budget", "unknown key; valid keys:"),
    ({"space": {"hidden_units": {"grid": [4, 8]}}}, "space.hidden_units.grid", "unknown key"),
    ({"space": {"training.lr": {"uniform": [0.1, 0.01]}}}, "space.training.lr.uniform = [0.1, 0.01]",
     "must be [low, high] with low < high"),
    ({"space": {"training.epochs": {"choice": [1, 2]}}}, "space.training.epochs", "nothing to search; searchable:"),
    ({"space": {"layers": {"choice": [1, 2]}}}, "space.layers", "nothing to search; searchable: hidden_units"),
    ({"space": {"hidden_units": {"choice": [4, "many"]}}}, "space.hidden_units.choice[1] = 'many'",
     "must be an integer >= 1 (hidden_units)"),
    ({"trials": 0, "space": {"hidden_units": {"choice": [4]}}}, "trials = 0", "must be an integer >= 1"),
    ({"space": {}}, "space = {}", "names nothing to search"),
])
def test_a_bad_sweep_entry_is_named_once_by_the_schema(spec, key, message):
    """The schema checks a sweep before a stage starts (sweep.plan trusts it): one line naming the key."""
    from components.config import load_params
    from components.schema import problems

    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    params["models"]["nade"]["sweep"] = spec
    lines = problems(params, sections=("models",), entries=["nade"])
    assert len(lines) == 1 and lines[0].startswith(f"params.yaml: models.nade.sweep.{key}: {message}"), lines


def test_bf16_mixed_precision_trains_on_cpu():
    model = nade({})
    optimizers = model.configure_optimizers(1e-2)
    x = torch.bernoulli(torch.full((16, 1, 3, 3), 0.5))
    before = [p.detach().clone() for p in model.parameters()]
    with autocast(torch.device("cpu"), "bf16"):
        loss = model.training_step(Batch(x), optimizers)["loss"]
    assert math.isfinite(loss)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # weights stay fp32
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
