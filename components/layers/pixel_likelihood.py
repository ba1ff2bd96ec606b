"""Decoder output distributions p(x | z) over the pixels, one factor per pixel.

* `BernoulliPixels` for binary data: one logit per pixel.
* `DiscretizedLogisticPixels` for grayscale data with L intensity levels
  x = k / (L - 1): a logistic (mean, log-scale) per pixel whose mass over each
  level's bin is that level's probability; the outer bins extend to +-inf
  (Salimans et al. 2017, PixelCNN++). Being a distribution over the discrete
  levels, its log-likelihoods are in the same discrete nats as the data.

Every method takes decoder outputs of shape (..., P, D): P parameters for
each of the D pixels, and images flattened to (..., D); log-likelihoods are
summed over the pixels (no averaging, so no hidden weight on the KL term).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class BernoulliPixels:
    num_params = 1

    def log_prob(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        logits = out[..., 0, :]
        return -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(-1)

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(out[..., 0, :])

    def sample(self, out: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        probs = self.mean(out)
        return torch.bernoulli(probs.cpu(), generator=generator).to(probs.device)


class DiscretizedLogisticPixels:
    num_params = 2
    MIN_LOG_SCALE = -7.0  # keeps a bin's mass from underflowing when the scale collapses

    def __init__(self, levels: int):
        if levels < 3:
            raise ValueError(f"a discretized logistic needs grayscale data (levels > 2), got {levels} levels")
        self.levels = levels
        self.half_bin = 0.5 / (levels - 1)

    def _location_scale(self, out: torch.Tensor):
        return out[..., 0, :], out[..., 1, :].clamp(min=self.MIN_LOG_SCALE)

    def log_prob(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        mean, log_scale = self._location_scale(out)
        x = x.expand_as(mean)
        inv_scale = torch.exp(-log_scale)
        upper = inv_scale * (x - mean + self.half_bin)   # logistic CDF argument at the bin's upper edge
        lower = inv_scale * (x - mean - self.half_bin)
        # log(sigmoid(a) - sigmoid(b)) = logsigmoid(a) + logsigmoid(-b) + log(1 - exp(b - a)), stable for a > b
        middle = F.logsigmoid(upper) + F.logsigmoid(-lower) + torch.log(-torch.expm1(lower - upper))
        log_p = torch.where(x < self.half_bin, F.logsigmoid(upper),              # lowest level: (-inf, edge]
                            torch.where(x > 1 - self.half_bin, F.logsigmoid(-lower), middle))  # highest: [edge, inf)
        return log_p.sum(-1)

    def level_probs(self, out: torch.Tensor) -> torch.Tensor:
        """(..., D, L): the probability of every level of every pixel."""
        mean, log_scale = self._location_scale(out)
        edges = torch.linspace(self.half_bin, 1 - self.half_bin, self.levels - 1, device=out.device)
        cdf = torch.sigmoid((edges - mean.unsqueeze(-1)) * torch.exp(-log_scale).unsqueeze(-1))
        ones, zeros = torch.ones_like(cdf[..., :1]), torch.zeros_like(cdf[..., :1])
        return torch.cat([cdf, ones], -1) - torch.cat([zeros, cdf], -1)

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        values = torch.linspace(0, 1, self.levels, device=out.device)
        return self.level_probs(out) @ values

    def sample(self, out: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        mean, log_scale = self._location_scale(out)
        u = torch.rand(mean.shape, generator=generator).to(mean.device).clamp(1e-5, 1 - 1e-5)
        y = mean + torch.exp(log_scale) * (torch.log(u) - torch.log1p(-u))   # inverse logistic CDF
        return (torch.round(y.clamp(0, 1) * (self.levels - 1)) / (self.levels - 1))


def pixel_likelihood(levels: int):
    """Bernoulli for binary data, discretized logistic for data with more levels."""
    return BernoulliPixels() if levels == 2 else DiscretizedLogisticPixels(levels)
