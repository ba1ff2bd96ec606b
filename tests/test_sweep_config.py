"""A model's `sweep` entry and the `precision` setting: checked before Ray starts, with clear errors."""

import math

import pytest
import torch

from components.errors import ConfigError
from components.data.batch import Batch, DataSpec
from components.models import build_model
from components.training import autocast
from pipelines import sweep


def nade(overrides: dict):
    return build_model("nade", DataSpec.single((1, 3, 3)), {"hidden_units": 4, **overrides})


def test_a_valid_sweep_splits_model_parameters_from_training_settings():
    plan = sweep.plan("nade", {"trials": 3, "concurrent": 2, "grace_epochs": 2, "space": {
        "hidden_units": {"choice": [4, 8]}, "training.lr": {"loguniform": [1e-4, 1e-2]}}}, nade)
    assert plan.space == {"params": {"hidden_units": {"choice": [4, 8]}},
                          "settings": {"lr": {"loguniform": [1e-4, 1e-2]}}}
    assert (plan.trials, plan.concurrent, plan.grace_epochs) == (3, 2, 2)


@pytest.mark.parametrize("spec, message", [
    ({"trials": 2, "budget": 5, "space": {"hidden_units": {"choice": [4]}}}, "unknown key(s) budget; valid:"),
    ({"space": {"hidden_units": {"grid": [4, 8]}}}, "space.hidden_units: expected one of {choice: ..."),
    ({"space": {"training.lr": {"uniform": [0.1, 0.01]}}}, "uniform takes [low, high] with low < high"),
    ({"space": {"training.epochs": {"choice": [1, 2]}}}, "training.epochs cannot be searched"),
    ({"space": {"layers": {"choice": [1, 2]}}}, "unknown parameter(s) layers"),
    ({"space": {"hidden_units": {"choice": [4, "many"]}}}, "'hidden_units': expected int, got str 'many'"),
    ({"trials": 0, "space": {"hidden_units": {"choice": [4]}}}, "trials: expected a positive integer"),
    ({"space": {}}, "`space` names nothing to search"),
])
def test_a_bad_sweep_entry_is_named(spec, message):
    with pytest.raises(ConfigError) as error:
        sweep.plan("nade", spec, nade)
    assert message in str(error.value)


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
