"""Fully independent Bernoulli baseline: p(x) = prod_i Bernoulli(x_i; p_i).

Fit in closed form: p_i is the (smoothed) fraction of training images with
pixel i on. `pseudocount=0` gives exactly the maximum-likelihood estimate.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

import torch
import torch.nn.functional as F

from pydantic import Field
from components.models.base import register
from components.models.families.explicit import ExplicitModel


@register
class IndependentBernoulli(ExplicitModel):
    name = "bernoulli"
    pixels = "binary"

    @dataclasses.dataclass
    class Params:
        pseudocount: Annotated[float, Field(ge=0)] = 0.5   # Krichevsky-Trofimov smoothing; keeps unseen pixels finite

    def __init__(self, spec, params):
        super().__init__(spec, params)
        self.register_buffer("ones", torch.zeros(self.num_pixels, dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))

    def configure_optimizers(self, lr):
        return {}  # closed form: no gradient steps

    def on_epoch_start(self):
        self.ones.zero_()
        self.count.zero_()

    @torch.no_grad()
    def training_step(self, batch, optimizers):
        x = batch.images
        x = self.flatten(x).double()
        self.ones += self.all_reduce_sum(x.sum(0))
        self.count += self.all_reduce_sum(torch.tensor(float(len(x)), dtype=torch.float64, device=x.device))
        return {"loss": float(-self.log_prob(self.unflatten(x.float())).mean())}

    def logits(self) -> torch.Tensor:
        a = self.params.pseudocount
        return (torch.log(self.ones + a) - torch.log(self.count - self.ones + a)).float()

    def log_prob(self, x):
        x = self.flatten(x)
        return -F.binary_cross_entropy_with_logits(
            self.logits().expand_as(x), x, reduction="none").sum(1)

    def sample(self, n, condition=None, generator=None):
        self.check_unconditional(condition)
        probs = torch.sigmoid(self.logits()).expand(n, -1)
        return self.unflatten(torch.bernoulli(probs, generator=generator))
