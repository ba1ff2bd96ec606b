"""Optimizers as params.yaml configures them, and learning-rate schedules stepped per epoch.

A model's `configure_optimizers(lr)` names its optimizers; the `optimizers`
setting overrides learning rate and Adam betas per name, e.g.
`{generator: {lr: 2e-4, betas: [0.5, 0.999]}}`. A schedule is a pure function
of the epoch, so a resumed run gets the same rates without any saved state.
"""

from __future__ import annotations

import math

import torch

from components.errors import ConfigError

SCHEDULES = ("constant", "linear_decay", "step", "cosine")
OPTIMIZER_KEYS = ("lr", "betas")


def configure_optimizers(model, lr: float, overrides: dict | None = None) -> dict[str, torch.optim.Optimizer]:
    """The model's optimizers with the per-name `overrides` applied; each group remembers its base rate."""
    optimizers = model.configure_optimizers(lr)
    overrides = overrides or {}
    unknown = set(overrides) - set(optimizers)
    if unknown:
        raise ConfigError(f"training.optimizers: {model.name} has no optimizer(s) {', '.join(sorted(unknown))}; "
                          f"its optimizers: {', '.join(optimizers) or 'none (it is fitted in closed form)'}")
    for name, values in overrides.items():
        bad = set(values or {}) - set(OPTIMIZER_KEYS)
        if bad:
            raise ConfigError(f"training.optimizers.{name}: unknown key(s) {', '.join(sorted(bad))}; "
                              f"valid: {', '.join(OPTIMIZER_KEYS)}")
        for group in optimizers[name].param_groups:
            if "lr" in values:
                group["lr"] = float(values["lr"])
            if "betas" in values:
                if "betas" not in group or len(values["betas"]) != 2:
                    raise ConfigError(f"training.optimizers.{name}.betas: expected [beta1, beta2] for an Adam-"
                                      f"style optimizer, got {values['betas']!r}")
                group["betas"] = tuple(float(b) for b in values["betas"])
    for optimizer in optimizers.values():
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
    return optimizers


def check_schedule(schedule: dict) -> None:
    kind = (schedule or {}).get("kind", "constant")
    if kind not in SCHEDULES:
        raise ConfigError(f"training.schedule.kind: {kind!r} is not one of {', '.join(SCHEDULES)}")
    fraction = schedule.get("decay_fraction", 0.5)
    if kind == "linear_decay" and not 0 <= fraction <= 1:
        raise ConfigError(f"training.schedule.decay_fraction: expected a number in [0, 1], got {fraction!r}")
    if kind == "step" and int(schedule.get("step_epochs", 10)) < 1:
        raise ConfigError("training.schedule.step_epochs: expected a positive integer")


def lr_factor(schedule: dict, epoch: int, epochs: int) -> float:
    """The multiple of each optimizer's base rate used during `epoch` (1-based) of `epochs`.

    linear_decay: constant, then linear towards 0 over the last `decay_fraction` of the epochs
      (CycleGAN's rule: 1 - max(0, epoch - constant_epochs) / (decay_epochs + 1));
    step: times `gamma` every `step_epochs` epochs; cosine: from 1 down to `min_factor`."""
    schedule = schedule or {}
    kind = schedule.get("kind", "constant")
    if kind == "constant":
        return 1.0
    if kind == "linear_decay":
        decay = round(epochs * float(schedule.get("decay_fraction", 0.5)))
        return 1.0 - max(0, epoch - (epochs - decay)) / (decay + 1)
    if kind == "step":
        return float(schedule.get("gamma", 0.1)) ** ((epoch - 1) // int(schedule.get("step_epochs", 10)))
    if kind == "cosine":
        low = float(schedule.get("min_factor", 0.0))
        return low + (1 - low) * 0.5 * (1 + math.cos(math.pi * (epoch - 1) / max(1, epochs)))
    raise ConfigError(f"training.schedule.kind: {kind!r} is not one of {', '.join(SCHEDULES)}")


def set_rates(optimizers: dict[str, torch.optim.Optimizer], factor: float) -> dict[str, float]:
    """Every group's rate to base * factor; returns each optimizer's (first group's) rate, for the record."""
    for optimizer in optimizers.values():
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"] * factor
    return {name: o.param_groups[0]["lr"] for name, o in optimizers.items() if o.param_groups}
