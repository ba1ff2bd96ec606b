"""An exponential moving average of some of a model's parameters (e.g. a GAN's generator).

After every step, shadow = beta * shadow + (1 - beta) * parameter. Validation,
selection and the saved weights use the shadow values; the optimizers keep
training the live ones. Buffers (e.g. batch-norm statistics) are the live ones.

beta is either a fixed decay per step (`ema_decay`, e.g. ProGAN's 0.999), or
set by a half-life in images, as StyleGAN's `G_smoothing_kimg` and
StyleGAN2-ADA's `ema_kimg` (training_loop.py):

    ema_nimg = ema_kimg * 1000
    ema_nimg = min(ema_nimg, cur_nimg * ema_rampup)       (the warm-up, if any)
    beta     = 0.5 ** (batch_size / ema_nimg)

so the initial weights' share of the average halves with every half-life of
images shown, whatever the batch size; with the warm-up, the half-life is at
most `ema_rampup` of the images shown so far, and a short run's average is
not dominated by the random initial weights.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from components.errors import ConfigError


class EMA:
    def __init__(self, model: nn.Module, modules: tuple[str, ...], decay: float | None = None,
                 kimg: float | None = None, rampup: float | None = None):
        if (decay is None) == (kimg is None):
            raise ConfigError("training: set one of ema_decay (per step) and ema_kimg (a half-life in "
                              f"thousands of images), got ema_decay={decay!r}, ema_kimg={kimg!r}")
        if decay is not None and not 0 < decay < 1:
            raise ConfigError(f"training.ema_decay: expected a number in (0, 1), got {decay!r}")
        if kimg is not None and not kimg > 0:
            raise ConfigError(f"training.ema_kimg: expected a number > 0, got {kimg!r}")
        if rampup is not None and (kimg is None or not rampup > 0):
            raise ConfigError(f"training.ema_rampup: a number > 0 that caps ema_kimg's half-life, got {rampup!r}"
                              + ("" if kimg is not None else " without ema_kimg"))
        self.decay = None if decay is None else float(decay)
        self.kimg, self.rampup = kimg, rampup
        self.names = [f"{m}.{n}" for m in modules for n, _ in model.get_submodule(m).named_parameters()]
        params = dict(model.named_parameters())
        self.shadow = {n: params[n].detach().clone() for n in self.names}

    def beta(self, shown: int, seen: int) -> float:
        """The decay of a step that showed `shown` images (all workers), `seen` images shown so far
        including them."""
        if self.kimg is None:
            return self.decay
        nimg = self.kimg * 1000
        if self.rampup is not None:
            nimg = min(nimg, seen * self.rampup)
        return 0.5 ** (shown / max(nimg, 1e-8))

    @torch.no_grad()
    def update(self, model: nn.Module, shown: int = 1, seen: int = 1) -> None:
        beta = self.beta(shown, seen)
        params = dict(model.named_parameters())
        for name in self.names:
            self.shadow[name].mul_(beta).add_(params[name].detach(), alpha=1 - beta)

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
        return {"decay": self.decay, "kimg": self.kimg, "rampup": self.rampup,
                "shadow": {n: t.detach().clone() for n, t in self.shadow.items()}}

    def load_state_dict(self, state: dict) -> None:
        for name, value in state["shadow"].items():
            self.shadow[name].copy_(value)
