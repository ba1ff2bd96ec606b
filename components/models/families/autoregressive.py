"""What every fully visible autoregressive model shares.

A subclass provides `order` (a buffer: order[d] is the pixel visited d-th) and
`conditionals(x)`: for every pixel i, the parameters of p(x_i | pixels before i
in the ordering), in raster layout. Binary data (2 levels) gets one logit per
pixel (a Bernoulli conditional); data with L > 2 intensity levels gets L logits
per pixel (an L-way softmax, e.g. 256-way for 8-bit images, as in PixelCNN and
PixelRNN). The exact log-likelihood, the training step, ancestral sampling and
completion (components/completion.py) follow from `conditionals` and `draw`;
sampling and completion ask for one pixel at a time through `step_conditionals`,
which a model may answer from a cache of its earlier work.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from components.completion import complete
from components.models.families.explicit import ExplicitModel
from components.layers.masked import MaskedConv2d, step_at


class Autoregressive(ExplicitModel):
    capabilities = {"sample", "log_prob", "complete"}

    @property
    def outputs_per_pixel(self) -> int:
        """1 Bernoulli logit for binary pixels, else one logit per intensity level."""
        return 1 if self.levels == 2 else self.levels

    def conditionals(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D) Bernoulli logits, or (B, D, L) softmax logits, of every pixel given its predecessors."""
        raise NotImplementedError

    def intensity_index(self, x: torch.Tensor) -> torch.Tensor:
        """Pixel values k / (L - 1) in [0, 1] -> level indices k."""
        return torch.round(x * (self.levels - 1)).long()

    def log_prob(self, x):
        x = self.flatten(x)
        logits = self.conditionals(x)
        if self.levels == 2:
            return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(1)
        log_p = torch.log_softmax(logits, dim=-1)
        return log_p.gather(-1, self.intensity_index(x).unsqueeze(-1)).squeeze(-1).sum(1)

    def draw(self, pixel_conditionals: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One pixel value per image in [0, 1], from that pixel's slice of `conditionals`."""
        device = pixel_conditionals.device
        if self.levels == 2:
            return torch.bernoulli(torch.sigmoid(pixel_conditionals).cpu(), generator=generator).to(device)
        k = torch.multinomial(torch.softmax(pixel_conditionals, -1).cpu(), 1, generator=generator).squeeze(1)
        return (k.float() / (self.levels - 1)).to(device)

    def pixel_conditionals(self, x: torch.Tensor, pixel: int) -> torch.Tensor:
        """`conditionals(x)[:, pixel]`; a model whose pixel depends on less than the whole image
        may compute less (sampling and completion call this once per pixel)."""
        return self.conditionals(x)[:, pixel]

    def step_conditionals(self, x: torch.Tensor, step: int, cache: dict) -> torch.Tensor:
        """`conditionals(x)[:, order[step]]` inside a pass over the pixels in order (steps may be
        skipped, not revisited): x holds the final values of the pixels before it, `cache` is a dict
        kept through the pass (fresh for each)."""
        return self.pixel_conditionals(x, int(self.order[step]))

    @torch.no_grad()
    def sample(self, n, condition=None, generator=None):
        """Ancestral sampling, one pixel at a time; models with a cheaper recursion override it."""
        self.check_unconditional(condition)
        x = torch.zeros(n, self.num_pixels, device=self.order.device)
        cache = {}
        for step in self.pixel_steps():
            x[:, int(self.order[step])] = self.draw(self.step_conditionals(x, step, cache), generator)
        return self.unflatten(x)


    def complete(self, images, observed, generator=None):
        return complete(self, images, observed, generator)


class RasterConvAutoregressive(Autoregressive):
    """PixelCNN and PixelRNN share their ends: a 7x7 mask-A input convolution (the only
    layer that hides the centre pixel), a model-specific stack of layers carrying 2h
    features, then ReLU, 1x1 mask-B, ReLU, 1x1 mask-B to each pixel's logit(s) (raster order)."""

    @dataclasses.dataclass
    class Params:
        """The PixelRNN models' parameters (PixelCNN's stack is `residual_blocks`, in pixelcnn.py)."""
        features: Annotated[int, Field(ge=1)] = 32          # h: the stack carries 2h features
        layers: Annotated[int, Field(ge=1)] = 7             # LSTM layers in the stack
        output_features: Annotated[int, Field(ge=1)] = 64   # of the 1x1 mask-B layer between the stack and the logits

    def build(self, layers: list[nn.Module], h: int, output_features: int) -> None:
        if self.image_shape[0] != 1:
            raise ValueError(f"{self.name}: single-channel images only (no colour-channel masking yet)")
        self.net = nn.Sequential(
            MaskedConv2d("A", 1, 2 * h, 7), *layers,
            nn.ReLU(), MaskedConv2d("B", 2 * h, output_features, 1),
            nn.ReLU(), MaskedConv2d("B", output_features, self.outputs_per_pixel, 1),
        )
        self.register_buffer("order", torch.arange(self.num_pixels))

    def conditionals(self, x):
        out = self.net(self.unflatten(x))                                 # (B, outputs, H, W)
        if self.levels == 2:
            return out.reshape(len(x), -1)
        return out.reshape(len(x), self.outputs_per_pixel, -1).transpose(1, 2)   # (B, D, L)

    def pixel_conditionals(self, x, pixel):
        # Raster order: row r's outputs depend on rows <= r only, so the rows below are never
        # computed (half the work of sampling and completion).
        row, column = divmod(pixel, self.image_shape[2])
        out = self.net(self.unflatten(x)[:, :, :row + 1])[:, :, row, column]   # (B, outputs)
        return out.squeeze(1) if self.levels == 2 else out

    def step_conditionals(self, x, step, cache):
        # Every layer at this pixel's position only (components/layers/masked.py). Pixels skipped
        # (completion asks only for missing ones) are computed first: later positions read them.
        if not cache:
            cache.update(like=x, grid=self.image_shape[1:], next=0)
        for skipped in range(cache["next"], step):
            self.position_step(x, skipped, cache)
        cache["next"] = step + 1
        out = self.position_step(x, step, cache)
        return out.squeeze(1) if self.levels == 2 else out

    def position_step(self, x, step, cache):
        """The output layer at pixel `step`; the first layer learns the previous pixel's final value,
        the others their input here as it is computed."""
        width, first = self.image_shape[2], self.net[0]
        if step > 0:
            first.remember(x[:, step - 1, None], *divmod(step - 1, width), cache)
        r, c = divmod(step, width)
        return step_at(self.net[1:], first.step(None, r, c, cache), r, c, cache)
