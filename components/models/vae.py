"""Variational autoencoder (Kingma & Welling, 2014) with MLP encoder and decoder.

The ELBO is reported as its two parts: the reconstruction term
E_q[log p(x|z)] (summed over pixels) and the prior-fitting term KL(q(z|x) || p(z))
(summed over latent dimensions). `log_prob` is the importance-weighted bound
of Burda et al. (2015) with `iwae_samples` samples, which tightens towards
log p(x) as the number of samples grows.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from components.models.base import GenerativeModel


def mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


class VAE(GenerativeModel):
    name = "vae"
    family = "latent"
    likelihood = "iwae"
    pixels = "binary"
    monitor = "neg_elbo"

    @dataclasses.dataclass
    class Params:
        latent_dim: int = 50
        hidden_units: list[int] = dataclasses.field(default_factory=lambda: [200, 200])
        iwae_samples: int = 100      # samples of the importance-weighted log_prob
        iwae_chunk: int = 100        # samples evaluated at once (memory bound)

    def __init__(self, image_shape, params, levels: int = 2):
        super().__init__(image_shape, params, levels)
        hidden = list(params.hidden_units)
        self.encoder = mlp([self.num_pixels, *hidden, 2 * params.latent_dim])
        self.decoder = mlp([params.latent_dim, *reversed(hidden), self.num_pixels])

    def posterior(self, x):
        mean, log_var = self.encoder(self.flatten(x)).chunk(2, dim=-1)
        return mean, log_var

    def elbo_terms(self, x) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-image (reconstruction log-likelihood, KL to the prior), one reparameterized sample."""
        x = self.flatten(x)
        mean, log_var = self.posterior(x)
        z = mean + torch.randn_like(mean) * torch.exp(0.5 * log_var)
        reconstruction = -F.binary_cross_entropy_with_logits(self.decoder(z), x, reduction="none").sum(1)
        kl = 0.5 * (mean.pow(2) + log_var.exp() - 1.0 - log_var).sum(1)
        return reconstruction, kl

    def training_step(self, x, optimizers):
        reconstruction, kl = self.elbo_terms(x)
        loss = -(reconstruction - kl).mean()
        self.optimize(optimizers["model"], loss)
        return {"loss": loss.item(), "reconstruction": reconstruction.mean().item(), "kl": kl.mean().item()}

    @torch.no_grad()
    def validation_metrics(self, x):
        reconstruction, kl = self.elbo_terms(x)
        return {"neg_elbo": float(-(reconstruction - kl).mean()),
                "reconstruction": float(reconstruction.mean()), "kl": float(kl.mean())}

    @torch.no_grad()
    def iwae_log_prob(self, x, k: int, chunk: int | None = None) -> torch.Tensor:
        """log (1/k) sum_j p(x, z_j) / q(z_j | x), z_j ~ q(z|x): a lower bound on log p(x)."""
        x = self.flatten(x)
        mean, log_var = self.posterior(x)
        std = torch.exp(0.5 * log_var)
        log_weights = []
        for start in range(0, k, chunk or self.params.iwae_chunk):
            m = min(chunk or self.params.iwae_chunk, k - start)
            eps = torch.randn(m, *mean.shape, device=x.device)
            z = mean + eps * std                                            # (m, B, L)
            log_q = (-0.5 * eps.pow(2) - 0.5 * log_var - 0.5 * math.log(2 * math.pi)).sum(-1)
            log_prior = (-0.5 * z.pow(2) - 0.5 * math.log(2 * math.pi)).sum(-1)
            logits = self.decoder(z)
            log_lik = -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(-1)
            log_weights.append(log_lik + log_prior - log_q)
        return torch.logsumexp(torch.cat(log_weights), dim=0) - math.log(k)

    def log_prob(self, x):
        return self.iwae_log_prob(x, self.params.iwae_samples)

    @torch.no_grad()
    def encode(self, x):
        return self.posterior(x)[0]

    @torch.no_grad()
    def sample(self, n, generator=None):
        z = torch.randn(n, self.params.latent_dim, generator=generator).to(self.device)
        probs = torch.sigmoid(self.decoder(z))
        return self.unflatten(torch.bernoulli(probs.cpu(), generator=generator).to(probs.device))
