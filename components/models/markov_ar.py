"""Markov AR(k) pixel model: a fully visible autoregressive model in which each
pixel depends only on the k pixels just before it in the ordering.

    p(x) = prod_d p(x_{o_d} | x_{o_{d-k}}, ..., x_{o_{d-1}}),
    binary:     p(x_{o_d} = 1 | ...) = sigmoid(b_d + sum_j w_{d,j} x_{o_{d-j}})
    L levels:   p(x_{o_d} = v | ...) = softmax_v(b_dv + sum_j w_{d,v,j} x_{o_{d-j}})

One logistic (or multinomial logistic) regression per pixel on the previous
k intensities: D(k+1) parameters for binary data, between the fully independent
model's D and the fully dependent table's 2^D - 1. k=1 is the first-order
Markov chain over the ordering. Exact likelihood; ancestral sampling.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from torch import nn

from pydantic import Field
from components.models.families.autoregressive import Autoregressive
from components.models.base import register


@register
class MarkovAR(Autoregressive):
    name = "markov_ar"

    @dataclasses.dataclass
    class Params:
        order_k: Annotated[int, Field(ge=1)] = 1  # how many previous pixels each one sees
        ordering: Literal["raster", "random"] = "raster"
        ordering_seed: Annotated[int, Field(ge=0)] = 0

    def __init__(self, spec, params):
        super().__init__(spec, params)
        D, k = self.num_pixels, params.order_k
        if k < 1:
            raise ValueError("markov_ar: order_k must be at least 1")
        order = (torch.randperm(D, generator=torch.Generator().manual_seed(params.ordering_seed))
                 if params.ordering == "random" else torch.arange(D))
        self.register_buffer("order", order)
        outputs = self.outputs_per_pixel
        self.weight = nn.Parameter(torch.zeros(D, outputs, k))  # weight[d, :, j-1] multiplies x_{o_{d-j}}
        self.bias = nn.Parameter(torch.zeros(D, outputs))
        # Pixels near the start have fewer than k predecessors: those weights are masked out.
        mask = (torch.arange(D)[:, None] - torch.arange(1, k + 1)[None] >= 0).float()
        self.register_buffer("mask", mask[:, None, :])

    @staticmethod
    def parameter_counts(num_pixels: int, k: int, levels: int = 2) -> dict[str, int | str]:
        """This model's parameters beside the fully independent and fully dependent models' counts."""
        outputs = 1 if levels == 2 else levels
        return {"markov_ar": num_pixels * outputs * (k + 1), "fully_independent": num_pixels * (levels - 1),
                "fully_dependent": f"{levels}^{num_pixels} - 1"}

    def evaluation_metrics(self, test, settings):
        counts = self.parameter_counts(self.num_pixels, self.params.order_k, self.levels)
        return {f"parameters_{k}": v for k, v in counts.items() if k != self.name}

    def previous(self, xo: torch.Tensor) -> torch.Tensor:
        """(B, D, k): for visiting step d, the values x_{o_{d-1}}, ..., x_{o_{d-k}} (zero before the start)."""
        k = self.params.order_k
        return F.pad(xo, (k, 0)).unfold(1, k, 1)[:, : xo.shape[1]].flip(2)

    def dense_weight(self) -> torch.Tensor:
        """(D, D) matrix M with M[d, d - j] = weight of x_{o_{d-j}} in pixel d's logit (binary data):
        one matrix product then serves any k, up to k = D - 1, the fully visible logistic model."""
        D, k = self.num_pixels, self.params.order_k
        columns = torch.arange(D, device=self.weight.device)[:, None] - torch.arange(1, k + 1, device=self.weight.device)
        # Masked entries (columns < 0) add zero at column 0.
        return torch.zeros(D, D, device=self.weight.device).scatter_add(
            1, columns.clamp(min=0), (self.weight * self.mask)[:, 0])

    def conditionals(self, x):
        xo = self.flatten(x)[:, self.order]
        if self.levels == 2:
            logits_in_order = (xo @ self.dense_weight().T)[..., None] + self.bias
        else:
            logits_in_order = torch.einsum("bdk,dlk->bdl", self.previous(xo), self.weight * self.mask) + self.bias
        logits = torch.empty_like(logits_in_order)
        logits[:, self.order] = logits_in_order
        return logits.squeeze(-1) if self.levels == 2 else logits

    @torch.no_grad()
    def sample(self, n, condition=None, generator=None):
        self.check_unconditional(condition)
        k, D = self.params.order_k, self.num_pixels
        xo = torch.zeros(n, D + k, device=self.bias.device)  # k leading zeros: the empty history
        weight = self.weight * self.mask
        for d in self.pixel_steps():
            history = xo[:, d:d + k].flip(1)                     # x_{o_{d-1}}, ..., x_{o_{d-k}}
            logits = history @ weight[d].T + self.bias[d]        # (n, outputs)
            xo[:, d + k] = self.draw(logits.squeeze(-1) if self.levels == 2 else logits, generator)
        out = torch.empty(n, D, device=xo.device)
        out[:, self.order] = xo[:, k:]
        return self.unflatten(out)
