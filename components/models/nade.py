"""NADE (Larochelle & Murray, 2011): a fully visible autoregressive model
whose conditionals share one hidden layer through tied weights.

    a_1 = c,   a_{d+1} = a_d + W[:, o_d] x_{o_d}          (running sum: O(HD) per image)
    p(x_{o_d} = 1 | x_{o_<d}) = sigmoid(b_{o_d} + V[o_d] . sigmoid(a_d))

`o` is the pixel ordering (raster, or a fixed random permutation saved with
the model). The log-likelihood is exact; sampling is ancestral. Training goes
through `tied_log_prob` (components/layers/nade.py): the likelihood and its
gradient in one pass over cache-sized blocks of pixels, never holding the
(batch, pixels, hidden) activations.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from torch import nn

from pydantic import Field
from components.layers.nade import tied_log_prob
from components.models.families.autoregressive import Autoregressive
from components.models.base import register


def bernoulli_log_prob(logits: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log p(x | logit) and its gradient wrt the logit (x - sigmoid(logit)), for `tied_log_prob`."""
    logits = logits.squeeze(-1)
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none"), (x - torch.sigmoid(logits))[..., None]


@register
class NADE(Autoregressive):
    name = "nade"
    pixels = "binary"    # RNADE (rnade.py) is NADE for intensities
    BLOCK = 16           # pixels per step of the running sum in `conditionals`

    @dataclasses.dataclass
    class Params:
        hidden_units: Annotated[int, Field(ge=1)] = 500
        ordering: Literal["raster", "random"] = "raster"
        ordering_seed: Annotated[int, Field(ge=0)] = 0

    def __init__(self, spec, params):
        super().__init__(spec, params)
        D, H = self.num_pixels, params.hidden_units
        if params.ordering == "random":
            order = torch.randperm(D, generator=torch.Generator().manual_seed(params.ordering_seed))
        else:
            order = torch.arange(D)
        self.register_buffer("order", order)          # order[d] = pixel index visited d-th
        # Parameters are stored in visiting order: column d of W belongs to pixel order[d].
        self.W = nn.Parameter(torch.randn(H, D) / D ** 0.5)
        self.c = nn.Parameter(torch.zeros(H))
        self.V = nn.Parameter(torch.randn(D, H) / H ** 0.5)
        self.b = nn.Parameter(torch.zeros(D))

    def conditionals(self, x: torch.Tensor) -> torch.Tensor:
        """Logit of p(x_i = 1 | pixels before i in the ordering), for every pixel i (raster layout)."""
        xo = self.flatten(x)[:, self.order]                       # (B, D) in visiting order
        a = self.c.expand(len(xo), -1)                            # a_d at the start of the block
        hidden = []
        # The running sum, a block of pixels per step: inside a block the prefix sums are one masked
        # matmul, so the Python loop has D/16 steps, not D.
        for start in range(0, self.num_pixels, self.BLOCK):
            x_block, W_block = xo[:, start:start + self.BLOCK], self.W[:, start:start + self.BLOCK]
            strictly_before = torch.ones(x_block.shape[1], x_block.shape[1], device=xo.device).tril(-1)
            a_block = a[:, None, :] + (x_block[:, None, :] * strictly_before) @ W_block.T   # (B, block, H)
            hidden.append(torch.sigmoid(a_block))                 # h_d sees pixels o_1 .. o_{d-1} only
            a = a + x_block @ W_block.T
        # One batched contraction for all outputs (measured 2.4x faster than a cumsum over (B, H, D)).
        logits_in_order = torch.einsum("bdh,dh->bd", torch.cat(hidden, dim=1), self.V) + self.b
        logits = torch.empty_like(logits_in_order)
        logits[:, self.order] = logits_in_order
        return logits

    def log_prob(self, x):
        xo = self.flatten(x)[:, self.order]
        return tied_log_prob(xo, self.W, self.c, self.V[:, None], self.b[:, None], None, bernoulli_log_prob)

    @torch.no_grad()
    def sample(self, n, condition=None, generator=None):
        self.check_unconditional(condition)
        a = self.c.expand(n, -1).clone()
        out = torch.zeros(n, self.num_pixels, device=self.W.device)
        for d in self.pixel_steps():
            p = torch.sigmoid(torch.sigmoid(a) @ self.V[d] + self.b[d])
            x_d = torch.bernoulli(p, generator=generator)
            out[:, self.order[d]] = x_d
            a += x_d[:, None] * self.W[:, d]
        return self.unflatten(out)
