"""PixelCNN (van den Oord, Kalchbrenner & Kavukcuoglu, 2016, "Pixel Recurrent Neural Networks").

A 7x7 mask-A convolution (the only layer that hides the centre pixel), then
residual blocks of 1x1 -> 3x3 mask-B -> 1x1 convolutions (paper, figure 5),
then two 1x1 mask-B output layers giving each pixel's Bernoulli logit (binary
data) or its 256-way softmax logits (8-bit data; L-way for L levels). Every
conditional sees only pixels above, or left in the same row: the
log-likelihood is exact; sampling is pixel by pixel in raster order, each
pixel computing every layer at its own position only, from cached activations
above and to the left (components/layers/masked.py).
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

import torch
from torch import nn

from pydantic import Field
from components.layers.masked import MaskedConv2d, PositionStep, step_at
from components.models.families.autoregressive import RasterConvAutoregressive
from components.models.base import register


class ResidualBlock(nn.Module, PositionStep):
    def __init__(self, h: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReLU(), nn.Conv2d(2 * h, h, 1),
            nn.ReLU(), MaskedConv2d("B", h, h, 3),
            nn.ReLU(), nn.Conv2d(h, 2 * h, 1),
        )

    def forward(self, x):
        return x + self.body(x)

    def step(self, x_at, r, c, cache):
        return x_at + step_at(self.body, x_at, r, c, cache)


@register
class PixelCNN(RasterConvAutoregressive):
    name = "pixelcnn"

    @dataclasses.dataclass
    class Params:
        features: Annotated[int, Field(ge=1)] = 32          # h: residual blocks carry 2h channels
        residual_blocks: Annotated[int, Field(ge=0)] = 7
        output_features: Annotated[int, Field(ge=1)] = 64

    def __init__(self, spec, params):
        super().__init__(spec, params)
        self.build([ResidualBlock(params.features) for _ in range(params.residual_blocks)],
                   params.features, params.output_features)
