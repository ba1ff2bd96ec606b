"""Log-likelihood figures in the units papers report."""

from __future__ import annotations

import math

import torch


def bits_per_dim(nll_nats: float, num_pixels: int) -> float:
    return nll_nats / (num_pixels * math.log(2))


@torch.no_grad()
def per_image_log_prob(log_prob_fn, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """log p(x) (nats) of every image under `log_prob_fn`, a batch at a time."""
    return torch.cat([log_prob_fn(images[start:start + batch_size]).cpu()
                      for start in range(0, len(images), batch_size)])


def mean_nll(log_prob_fn, images: torch.Tensor, batch_size: int = 256) -> float:
    """Mean negative log-likelihood (nats per image) of `images` under `log_prob_fn`."""
    return float(-per_image_log_prob(log_prob_fn, images, batch_size).double().mean())
