"""Completion (inpainting) with any fully visible autoregressive model (one with `order`,
`step_conditionals` and `draw`, as `Autoregressive` and RNADE have).

Pixels are visited in the model's ordering; an observed pixel keeps its value,
a missing one is drawn from the model's conditional given everything before
it. This is exact conditional sampling when the observed pixels come first
in the ordering (e.g. the upper half under raster order), and the standard
ancestral approximation otherwise.
"""

from __future__ import annotations

import torch


@torch.no_grad()
def complete(model, images: torch.Tensor, observed: torch.Tensor,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """`images` (N, C, H, W) with `observed` (same shape, bool): returns images with the rest sampled."""
    x = model.flatten(images.clone().float())
    known = model.flatten(observed.expand_as(images)).bool()
    cache = {}   # a model's cached work for the pass (see Autoregressive.step_conditionals)
    for step in model.pixel_steps("completing"):
        pixel = int(model.order[step])
        missing = ~known[:, pixel]
        if missing.any():
            draw = model.draw(model.step_conditionals(x, step, cache), generator)
            x[:, pixel] = torch.where(missing, draw, x[:, pixel])
    return model.unflatten(x)


def lower_half_hidden(image_shape) -> torch.Tensor:
    """Mask (1, C, H, W): True on the upper half (observed), False on the lower half (to complete)."""
    c, h, w = image_shape
    mask = torch.zeros(1, c, h, w, dtype=torch.bool)
    mask[:, :, : h // 2] = True
    return mask
