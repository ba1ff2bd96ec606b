"""InfoGAN's variational lower bound on the mutual information I(c; G(z, c)) (Chen et al. 2016, eq. 5):

    L_I(G, Q) = E_{c ~ P(c), x ~ G(z, c)}[log Q(c | x)] + H(c)  <=  I(c; G(z, c)),

maximized with respect to both the generator G and the auxiliary distribution Q.
For a uniform K-way categorical code H(c) = log K; for a code uniform on
(-1, 1) the differential entropy is log 2. Q is a softmax over the categorical
code's values and a factored Gaussian N(mean, std^2) over the continuous codes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def categorical_information(logits: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """E[log Q(c | x)] + log K for c the index (B,) drawn uniformly from K = logits.shape[1] values."""
    log_q = F.log_softmax(logits, dim=1).gather(1, codes.long().unsqueeze(1)).squeeze(1)
    return log_q.mean() + math.log(logits.shape[1])


def gaussian_information(mean: torch.Tensor, codes: torch.Tensor, log_std: torch.Tensor | None = None,
                         low: float = -1.0, high: float = 1.0) -> torch.Tensor:
    """sum_j (E[log N(c_j; mean_j, std_j^2)] + log(high - low)) for codes (B, J) uniform on (low, high);
    `log_std` None means std 1."""
    if log_std is None:
        log_std = torch.zeros_like(mean)
    log_q = -0.5 * ((codes - mean) / log_std.exp()).pow(2) - log_std - 0.5 * math.log(2 * math.pi)
    return log_q.sum(1).mean() + mean.shape[1] * math.log(high - low)


def information_lower_bound(categorical_logits: torch.Tensor, categorical_codes: torch.Tensor,
                            continuous_mean: torch.Tensor, continuous_codes: torch.Tensor,
                            continuous_log_std: torch.Tensor | None = None,
                            categorical_weight: float = 1.0, continuous_weight: float = 0.1) -> torch.Tensor:
    """lambda_cat L_I(categorical) + lambda_cont L_I(continuous); the paper's lambdas are 1 and 0.1."""
    bound = categorical_weight * categorical_information(categorical_logits, categorical_codes)
    if continuous_mean.shape[1]:
        bound = bound + continuous_weight * gaussian_information(continuous_mean, continuous_codes,
                                                                 continuous_log_std)
    return bound
