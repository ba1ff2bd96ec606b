"""Optimizers as params.yaml configures them, and learning-rate schedules stepped per epoch.

A model's `configure_optimizers(lr)` names its optimizers; the `optimizers`
setting overrides learning rate and Adam betas per name, e.g.
`{generator: {lr: 2e-4, betas: [0.5, 0.999]}}`. A schedule is a pure function
of the epoch, so a resumed run gets the same rates without any saved state.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Annotated, Literal

import torch
from pydantic import Field

from components.config import PositiveFloat, PositiveInt
from components.errors import ConfigError

SCHEDULES = ("constant", "linear_decay", "step", "cosine")


@dataclasses.dataclass
class Schedule:
    """`train.schedule`: the kind and its settings (each read by its kind only)."""
    kind: Literal[SCHEDULES] = "constant"
    decay_fraction: Annotated[float, Field(ge=0, le=1)] = 0.5   # linear_decay
    step_epochs: PositiveInt = 10                               # step
    gamma: PositiveFloat = 0.1                                  # step
    min_factor: Annotated[float, Field(ge=0, le=1)] = 0.0       # cosine


@dataclasses.dataclass
class Optimizer:
    """One entry of `train.optimizers`: what it overrides of the model's optimizer of that name."""
    lr: PositiveFloat | None = None
    betas: Annotated[list[Annotated[float, Field(ge=0, lt=1)]], Field(min_length=2, max_length=2)] | None = None


def configure_optimizers(model, lr: float, overrides: dict[str, Optimizer] | None = None
                         ) -> dict[str, torch.optim.Optimizer]:
    """The model's optimizers with the per-name `overrides` applied; each group remembers its base rate."""
    optimizers = model.configure_optimizers(lr)
    overrides = overrides or {}
    unknown = set(overrides) - set(optimizers)
    if unknown:
        raise ConfigError(f"training.optimizers: {model.name} has no optimizer(s) {', '.join(sorted(unknown))}; "
                          f"its optimizers: {', '.join(optimizers) or 'none (it is fitted in closed form)'}")
    for name, values in overrides.items():
        for group in optimizers[name].param_groups:
            if values.lr is not None:
                group["lr"] = values.lr
            if values.betas is not None:
                if "betas" not in group:
                    raise ConfigError(f"training.optimizers.{name}.betas: {model.name}'s {name} optimizer "
                                      f"is not Adam-style: it takes no betas")
                group["betas"] = tuple(values.betas)
    for optimizer in optimizers.values():
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
    return optimizers


def lr_factor(schedule: Schedule, epoch: int, epochs: int) -> float:
    """The multiple of each optimizer's base rate used during `epoch` (1-based) of `epochs`.

    linear_decay: constant, then linear towards 0 over the last `decay_fraction` of the epochs
      (CycleGAN's rule: 1 - max(0, epoch - constant_epochs) / (decay_epochs + 1));
    step: times `gamma` every `step_epochs` epochs; cosine: from 1 down to `min_factor`."""
    if schedule.kind == "linear_decay":
        decay = round(epochs * schedule.decay_fraction)
        return 1.0 - max(0, epoch - (epochs - decay)) / (decay + 1)
    if schedule.kind == "step":
        return schedule.gamma ** ((epoch - 1) // schedule.step_epochs)
    if schedule.kind == "cosine":
        low = schedule.min_factor
        return low + (1 - low) * 0.5 * (1 + math.cos(math.pi * (epoch - 1) / max(1, epochs)))
    return 1.0   # constant


def set_rates(optimizers: dict[str, torch.optim.Optimizer], factor: float) -> dict[str, float]:
    """Every group's rate to base * factor; returns each optimizer's (first group's) rate, for the record."""
    for optimizer in optimizers.values():
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"] * factor
    return {name: o.param_groups[0]["lr"] for name, o in optimizers.items() if o.param_groups}
