"""What every fully visible autoregressive model over binary pixels shares.

A subclass provides `order` (a buffer: order[d] is the pixel visited d-th) and
`conditional_logits(x)`: for every pixel i, the logit of p(x_i = 1 | pixels
before i in the ordering). The exact log-likelihood, the training step and a
generic ancestral sampler follow from those two.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from components.models.base import GenerativeModel
from components.models.layers import MaskedConv2d


class BinaryAutoregressive(GenerativeModel):
    family = "explicit"
    likelihood = "exact"
    pixels = "binary"
    monitor = "nll"

    def conditional_logits(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def log_prob(self, x):
        x = self.flatten(x)
        return -F.binary_cross_entropy_with_logits(self.conditional_logits(x), x, reduction="none").sum(1)

    @torch.no_grad()
    def sample(self, n, generator=None):
        """Ancestral sampling with one full pass per pixel; models with a cheaper recursion override it."""
        x = torch.zeros(n, self.num_pixels, device=self.order.device)
        for step in self.pixel_steps():
            pixel = int(self.order[step])
            p = torch.sigmoid(self.conditional_logits(x)[:, pixel])
            x[:, pixel] = torch.bernoulli(p.cpu(), generator=generator).to(x.device)
        return self.unflatten(x)


class RasterConvAutoregressive(BinaryAutoregressive):
    """PixelCNN and PixelRNN share their ends: a 7x7 mask-A input convolution (the only
    layer that hides the centre pixel), a model-specific stack of layers carrying 2h
    features, then ReLU, 1x1 mask-B, ReLU, 1x1 mask-B to one logit per pixel (raster order)."""

    def build(self, layers: list[nn.Module], h: int, output_features: int) -> None:
        if self.image_shape[0] != 1:
            raise ValueError(f"{self.name}: single-channel images only (no colour-channel masking yet)")
        self.net = nn.Sequential(
            MaskedConv2d("A", 1, 2 * h, 7), *layers,
            nn.ReLU(), MaskedConv2d("B", 2 * h, output_features, 1),
            nn.ReLU(), MaskedConv2d("B", output_features, 1, 1),
        )
        self.register_buffer("order", torch.arange(self.num_pixels))

    def conditional_logits(self, x):
        return self.net(self.unflatten(x)).reshape(len(x), -1)
