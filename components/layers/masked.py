"""Building blocks shared by the autoregressive convolutional models, and their position-by-position
evaluation for cached sampling.

Every activation at position (r, c) of a raster-ordered stack depends only on
pixels before (r, c), so it is final as soon as it is computed. Sampling can
therefore compute, for each new pixel, the activations at that one position
in every layer, reading the earlier positions each layer needs from a cache
(Ramachandran et al. 2017, "Fast generation for convolutional autoregressive
models"), instead of rerunning the network over the image. `step_at` walks a
module at one position; `cache` is a dict made fresh for each pass over the
pixels, with `cache["like"]` a (B, ...) tensor giving batch, dtype and device
and `cache["grid"]` = (height, width).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def zeros(cache: dict, *shape: int) -> torch.Tensor:
    like = cache["like"]
    return like.new_zeros(len(like), *shape)


def once(cache: dict, key, make):
    """`cache[key]`, made by `make()` the first time (e.g. a masked weight, fixed during the pass)."""
    if key not in cache:
        cache[key] = make()
    return cache[key]


class PositionStep:
    """A layer that can compute its output at one position from cached earlier positions
    (`step`), for cached autoregressive sampling; `step_at` evaluates any stack of them."""

    def step(self, x_at: torch.Tensor, r: int, c: int, cache: dict) -> torch.Tensor:
        raise NotImplementedError


def step_at(module: nn.Module, x_at: torch.Tensor, r: int, c: int, cache: dict) -> torch.Tensor:
    """`module`'s output at position (r, c), (B, C_out), given its input there, (B, C_in)."""
    if isinstance(module, PositionStep):
        return module.step(x_at, r, c, cache)
    if isinstance(module, nn.Sequential):
        for layer in module:
            x_at = step_at(layer, x_at, r, c, cache)
        return x_at
    if isinstance(module, nn.ReLU):
        return F.relu(x_at)
    if isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1):
        return F.linear(x_at, module.weight[:, :, 0, 0], module.bias)
    raise TypeError(f"no position-by-position evaluation for {type(module).__name__}")


class MaskedConv2d(nn.Conv2d, PositionStep):
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

    def remember(self, x_at: torch.Tensor, r: int, c: int, cache: dict) -> None:
        """Store the input at (r, c) for later positions' windows (zero-padded like `forward`)."""
        p = self.padding[0]
        if self not in cache:
            height, width = cache["grid"]
            # Rows above the window only: the mask hides every row below the centre.
            cache[self] = zeros(cache, self.in_channels, height + p, width + 2 * p)
        cache[self][:, :, r + p, c + p] = x_at

    def step(self, x_at: torch.Tensor | None, r: int, c: int, cache: dict) -> torch.Tensor:
        """Output at (r, c); `x_at` None when the input there is already remembered (or hidden: mask A)."""
        p = self.padding[0]
        weight = once(cache, (self, "weight"), lambda: (self.weight * self.mask)[:, :, :p + 1].flatten(1))
        if p == 0:
            return F.linear(x_at, weight, self.bias)
        if x_at is not None or self not in cache:
            self.remember(x_at if x_at is not None else 0.0, r, c, cache)
        window = cache[self][:, :, r:r + p + 1, c:c + 2 * p + 1]       # rows r-p..r, columns c-p..c+p
        return F.linear(window.reshape(len(window), -1), weight, self.bias)
