"""RNADE (Uria, Murray & Larochelle, 2013): NADE for real-valued pixels.

Each conditional is a mixture of K Gaussians whose weights, means and widths
come from NADE's shared hidden layer (tied weights, running sum, with the
per-pixel activation rescaling rho_d of the paper):

    h_d = sigmoid(rho_d * (c + sum_{j<d} W[:, o_j] y_{o_j}))
    p(y_{o_d} | y_{o_<d}) = sum_k alpha_dk N(y_{o_d}; mu_dk, sigma_dk^2)

Pixels with L intensity levels are dequantized, y = (k + u) / L with
u ~ U(0, 1), so the density is exact for y; `log_prob` of discrete images is
log p(y) - D log L, one draw of the standard variational lower bound on the
discrete log-likelihood (Theis et al. 2016), reported in bits/dim.

Samples and completions are mapped back to the data's intensity scale
(y = (k + 1/2) / L  <->  x = k / (L - 1), the same affine map both ways).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Annotated, Literal

import torch
from torch import nn

from pydantic import Field
from components.completion import complete
from components.layers.nade import tied_log_prob
from components.models.base import register
from components.models.families.explicit import ExplicitModel


def mixture_log_density(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """log p(y) under each pixel's mixture; out (..., 3K) = (weight logits, means, log widths) before clamping."""
    logits, mu, log_sigma = out.chunk(3, dim=-1)
    log_sigma = log_sigma.clamp(-7.0, 3.0)
    log_normal = -0.5 * ((y[..., None] - mu) / log_sigma.exp()) ** 2 - log_sigma - 0.5 * math.log(2 * math.pi)
    return torch.logsumexp(torch.log_softmax(logits, -1) + log_normal, dim=-1)


def mixture_log_prob(out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`mixture_log_density` and its gradient wrt out, for `tied_log_prob` (autograd on one block)."""
    with torch.enable_grad():
        out = out.detach().requires_grad_()
        log_p = mixture_log_density(out, y)
        (grad,) = torch.autograd.grad(log_p.sum(), out)
    return log_p.detach(), grad


@register
class RNADE(ExplicitModel):
    name = "rnade"
    likelihood = "dequantized_bound"
    pixels = "grayscale"
    capabilities = {"sample", "log_prob", "complete"}

    @dataclasses.dataclass
    class Params:
        hidden_units: Annotated[int, Field(ge=1)] = 100
        components: Annotated[int, Field(ge=1)] = 10
        ordering: Literal["raster", "random"] = "raster"
        ordering_seed: Annotated[int, Field(ge=0)] = 0

    def __init__(self, spec, params):
        super().__init__(spec, params)
        D, H, K = self.num_pixels, params.hidden_units, params.components
        order = (torch.randperm(D, generator=torch.Generator().manual_seed(params.ordering_seed))
                 if params.ordering == "random" else torch.arange(D))
        self.register_buffer("order", order)
        self.W = nn.Parameter(torch.randn(H, D) / D ** 0.5)
        self.c = nn.Parameter(torch.zeros(H))
        self.rho = nn.Parameter(torch.ones(D))
        self.V = nn.Parameter(torch.randn(D, 3 * K, H) / H ** 0.5)   # weights, means, log-widths
        self.b = nn.Parameter(torch.cat([torch.zeros(D, K), torch.linspace(0, 1, K).expand(D, K),
                                         torch.full((D, K), math.log(0.2))], dim=1))

    def dequantize(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        k = torch.round(self.flatten(x) * (self.levels - 1))
        u = torch.rand(k.shape, generator=generator).to(k.device)
        return (k + u) / self.levels

    def to_density_scale(self, x: torch.Tensor) -> torch.Tensor:
        """Intensities k / (L - 1) -> bin centres (k + 1/2) / L (affine, so sampled values map too)."""
        return x * (self.levels - 1) / self.levels + 0.5 / self.levels

    def to_intensity_scale(self, y: torch.Tensor) -> torch.Tensor:
        return ((y - 0.5 / self.levels) * self.levels / (self.levels - 1)).clamp(0.0, 1.0)

    def mixture(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(log weights, means, log widths), each (B, D, K), in visiting order, for dequantized y."""
        yo = y[:, self.order]
        a = self.c.expand(len(yo), -1)
        hidden = []
        for d in range(self.num_pixels):
            hidden.append(torch.sigmoid(self.rho[d] * a))
            a = a + yo[:, d:d + 1] * self.W[:, d]
        out = torch.einsum("bdh,dkh->bdk", torch.stack(hidden, dim=1), self.V) + self.b
        logits, means, log_widths = out.chunk(3, dim=-1)
        return torch.log_softmax(logits, -1), means, log_widths.clamp(-7.0, 3.0)

    def density_log_prob(self, y: torch.Tensor) -> torch.Tensor:
        """Exact log-density of dequantized images y (B, D), in nats (one pass over blocks of pixels,
        as NADE's: components/layers/nade.py)."""
        return tied_log_prob(y[:, self.order], self.W, self.c, self.V, self.b, self.rho, mixture_log_prob)

    def log_prob(self, x):
        return self.density_log_prob(self.dequantize(x)) - self.num_pixels * math.log(self.levels)

    def conditionals(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D, 3K): each pixel's mixture (log weights, means, log widths) given its predecessors."""
        visiting = torch.cat(self.mixture(self.to_density_scale(self.flatten(x))), dim=-1)
        out = torch.empty_like(visiting)
        out[:, self.order] = visiting
        return out

    def step_conditionals(self, x: torch.Tensor, step: int, cache: dict) -> torch.Tensor:
        """The mixture of the pixel visited at `step` (completion's interface, as in autoregressive.py)."""
        return self.conditionals(x)[:, self.order[step]]

    def complete(self, images, observed, generator=None):
        return complete(self, images, observed, generator)

    @staticmethod
    def draw_from_mixture(mixture: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One value y per image from a pixel's mixture (log weights, means, log widths), on the density scale."""
        log_w, mu, log_sigma = mixture.chunk(3, dim=-1)
        k = torch.multinomial(log_w.exp().cpu(), 1, generator=generator).to(mu.device)
        noise = torch.randn(len(mu), 1, generator=generator).to(mu.device)
        return (mu.gather(1, k) + log_sigma.gather(1, k).exp() * noise).squeeze(1)

    def draw(self, pixel_conditionals: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One value per image from a pixel's mixture, on the intensity scale (for completion)."""
        return self.to_intensity_scale(self.draw_from_mixture(pixel_conditionals, generator))

    @torch.no_grad()
    def sample(self, n, condition=None, generator=None):
        self.check_unconditional(condition)
        a = self.c.expand(n, -1).clone()
        out = torch.zeros(n, self.num_pixels, device=self.W.device)
        K = self.params.components
        for d in self.pixel_steps():   # the running sum, as in NADE: O(HD) per sample
            logits, mu, log_sigma = (torch.sigmoid(self.rho[d] * a) @ self.V[d].T + self.b[d]).split(K, dim=1)
            mixture = torch.cat([torch.log_softmax(logits, -1), mu, log_sigma.clamp(-7.0, 3.0)], dim=1)
            y = self.draw_from_mixture(mixture, generator)
            out[:, self.order[d]] = self.to_intensity_scale(y)
            a = a + y[:, None] * self.W[:, d]
        return self.unflatten(out)
