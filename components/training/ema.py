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


class EMA:
    """Set by `decay` or by `kimg` (and, optionally, `rampup`): one of the two, as fit.Settings
    (`ema_decay`, `ema_kimg`, `ema_rampup`) allows them."""

    def __init__(self, model: nn.Module, modules: tuple[str, ...], decay: float | None = None,
                 kimg: float | None = None, rampup: float | None = None):
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
