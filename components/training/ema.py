"""An exponential moving average of some of a model's parameters (e.g. a GAN's generator).

After every step, shadow = decay * shadow + (1 - decay) * parameter. Validation,
selection and the saved weights use the shadow values; the optimizers keep
training the live ones. Buffers (e.g. batch-norm statistics) are the live ones.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from components.config import ConfigError


class EMA:
    def __init__(self, model: nn.Module, modules: tuple[str, ...], decay: float):
        if not 0 < decay < 1:
            raise ConfigError(f"training.ema_decay: expected a number in (0, 1), got {decay!r}")
        self.decay = float(decay)
        self.names = [f"{m}.{n}" for m in modules for n, _ in model.get_submodule(m).named_parameters()]
        params = dict(model.named_parameters())
        self.shadow = {n: params[n].detach().clone() for n in self.names}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        params = dict(model.named_parameters())
        for name in self.names:
            self.shadow[name].mul_(self.decay).add_(params[name].detach(), alpha=1 - self.decay)

    @contextlib.contextmanager
    def applied(self, model: nn.Module):
        """The model with the averaged parameters in place of its own, restored on exit."""
        params = dict(model.named_parameters())
        live = {n: params[n].detach().clone() for n in self.names}
        with torch.no_grad():
            for name in self.names:
                params[name].copy_(self.shadow[name])
        try:
            yield model
        finally:
            with torch.no_grad():
                for name in self.names:
                    params[name].copy_(live[name])

    def weights(self, state_dict: dict) -> dict:
        """`state_dict` with the averaged values of the averaged parameters."""
        return {**state_dict, **{n: t.detach().cpu().clone() for n, t in self.shadow.items()}}

    def state_dict(self) -> dict:
        return {"decay": self.decay, "shadow": {n: t.detach().clone() for n, t in self.shadow.items()}}

    def load_state_dict(self, state: dict) -> None:
        for name, value in state["shadow"].items():
            self.shadow[name].copy_(value)
