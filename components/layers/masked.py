"""Building blocks shared by the autoregressive convolutional models."""

from __future__ import annotations

import torch
from torch import nn


class MaskedConv2d(nn.Conv2d):
    """A convolution that sees only pixels before the centre in raster order (van den Oord et al. 2016).

    Mask 'A' also hides the centre pixel (the first layer: a pixel must not see
    itself); mask 'B' shows it (later layers: the centre feature already depends
    only on earlier pixels). Single-channel images: no colour-channel masking.
    """

    def __init__(self, mask_type: str, in_channels: int, out_channels: int, kernel_size: int):
        if mask_type not in ("A", "B"):
            raise ValueError(f"mask type must be 'A' or 'B', not {mask_type!r}")
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        mask = torch.ones_like(self.weight)
        centre = kernel_size // 2
        mask[:, :, centre, centre + (mask_type == "B"):] = 0   # the centre row, from the centre (A) or after it (B)
        mask[:, :, centre + 1:] = 0                            # every row below
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.weight * self.mask, self.bias)
