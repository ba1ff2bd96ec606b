"""PixelCNN (van den Oord, Kalchbrenner & Kavukcuoglu, 2016, "Pixel Recurrent Neural Networks").

A 7x7 mask-A convolution (the only layer that hides the centre pixel), then
residual blocks of 1x1 -> 3x3 mask-B -> 1x1 convolutions (paper, figure 5),
then two 1x1 mask-B output layers giving each pixel's Bernoulli logit. Every
conditional sees only pixels above, or left in the same row: the
log-likelihood is exact; sampling is pixel by pixel in raster order.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from components.models.base import GenerativeModel
from components.models.layers import MaskedConv2d


class ResidualBlock(nn.Module):
    def __init__(self, h: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReLU(), nn.Conv2d(2 * h, h, 1),
            nn.ReLU(), MaskedConv2d("B", h, h, 3),
            nn.ReLU(), nn.Conv2d(h, 2 * h, 1),
        )

    def forward(self, x):
        return x + self.body(x)


class PixelCNN(GenerativeModel):
    name = "pixelcnn"
    family = "explicit"
    likelihood = "exact"
    needs_binary = True
    monitor = "nll"

    @dataclasses.dataclass
    class Params:
        features: int = 32          # h: residual blocks carry 2h channels
        residual_blocks: int = 7
        output_features: int = 64

    def __init__(self, image_shape, params):
        super().__init__(image_shape, params)
        if image_shape[0] != 1:
            raise ValueError("pixelcnn: single-channel images only (no colour-channel masking yet)")
        h = params.features
        self.net = nn.Sequential(
            MaskedConv2d("A", 1, 2 * h, 7),
            *[ResidualBlock(h) for _ in range(params.residual_blocks)],
            nn.ReLU(), MaskedConv2d("B", 2 * h, params.output_features, 1),
            nn.ReLU(), MaskedConv2d("B", params.output_features, 1, 1),
        )
        self.register_buffer("order", torch.arange(self.num_pixels))  # raster order

    def conditional_logits(self, x):
        return self.net(self.unflatten(x)).reshape(len(x), -1)

    def log_prob(self, x):
        x = self.flatten(x)
        return -F.binary_cross_entropy_with_logits(self.conditional_logits(x), x, reduction="none").sum(1)

    def training_step(self, x, optimizers):
        loss = -self.log_prob(x).mean()
        self.optimize(optimizers["model"], loss)
        return {"loss": loss.item()}

    @torch.no_grad()
    def sample(self, n, generator=None):
        x = torch.zeros(n, self.num_pixels, device=self.order.device)
        for i in self.pixel_steps():
            p = torch.sigmoid(self.conditional_logits(x)[:, i])
            x[:, i] = torch.bernoulli(p.cpu(), generator=generator).to(x.device)
        return self.unflatten(x)
