"""Variational autoencoder (Kingma & Welling, 2014), MLP or convolutional.

q(z|x) is a diagonal Gaussian from the encoder, p(z) = N(0, I), and p(x|z)
is Bernoulli for binary data or a discretized logistic for grayscale data
(see `pixel_likelihood`). The ELBO is reported as its two parts: the
reconstruction term E_q[log p(x|z)] (summed over pixels) and the
prior-fitting term KL(q(z|x) || p(z)) (summed over latent dimensions, in
closed form), so `beta` is the only weight on the KL term. Training
maximizes reconstruction - w * KL with w rising linearly from 0 to `beta`
over `kl_warmup_epochs` (Sønderby et al. 2016; beta > 1: Higgins et al.
2017), or, with `train_samples` k > 1, the importance-weighted bound itself
(IWAE, Burda et al. 2015). `log_prob` is the importance-weighted bound with
`iwae_samples` samples, evaluated in chunks so that k = 5000 fits in memory;
it tightens towards log p(x) as k grows.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Annotated, Literal

import torch

from pydantic import Field
from components.models.families.autoencoder import Autoencoder, check_architecture
from components.models.base import register


@register
class VAE(Autoencoder):
    name = "vae"
    likelihood = "iwae"
    capabilities = {"sample", "log_prob", "encode", "decode"}

    @dataclasses.dataclass
    class Params:
        latent_dim: Annotated[int, Field(ge=1)] = 50
        architecture: Literal["mlp", "conv"] = "mlp"
        hidden_units: list[Annotated[int, Field(ge=1)]] = dataclasses.field(default_factory=lambda: [200, 200])
        # conv only
        conv_channels: list[Annotated[int, Field(ge=1)]] = dataclasses.field(default_factory=lambda: [32, 64])
        beta: Annotated[float, Field(ge=0)] = 1.0            # weight of the KL term; 1 = the ELBO
        kl_warmup_epochs: Annotated[int, Field(ge=0)] = 0    # KL weight rises linearly from 0 to beta over these epochs
        train_samples: Annotated[int, Field(ge=1)] = 1       # k of the training objective: 1 = ELBO, k > 1 = IWAE bound
        iwae_samples: Annotated[int, Field(ge=1)] = 100      # samples of the importance-weighted log_prob
        iwae_chunk: Annotated[int, Field(ge=1)] = 100        # samples evaluated at once (memory bound)

        def __post_init__(self):   # rules across parameters: the schema runs them (components.config.rules)
            check_architecture(self)
            if self.train_samples > 1 and (self.beta != 1 or self.kl_warmup_epochs):
                raise ValueError("beta and kl_warmup_epochs weight the ELBO's KL term; "
                                 "the IWAE objective (train_samples > 1) has none")

    def __init__(self, spec, params):
        super().__init__(spec, params)
        self.build_networks(2 * params.latent_dim)
        # Selection watches the bound being trained (the ELBO is the k = 1 case).
        self.selection = ("neg_elbo" if params.train_samples == 1 else f"neg_iwae{params.train_samples}", "min")
        self.register_buffer("epochs_started", torch.zeros((), dtype=torch.long))  # checkpointed with the weights

    def posterior(self, x):
        mean, log_var = self.encoder(self.encoder_input(x)).chunk(2, dim=-1)
        return mean, log_var

    def elbo_terms(self, x) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-image (reconstruction log-likelihood, KL to the prior), one reparameterized sample."""
        mean, log_var = self.posterior(x)
        z = mean + torch.randn_like(mean) * torch.exp(0.5 * log_var)
        reconstruction = self.reconstruction_log_prob(z, x)
        kl = 0.5 * (mean.pow(2) + log_var.exp() - 1.0 - log_var).sum(1)
        return reconstruction, kl

    def log_importance_weights(self, x, k: int, posterior=None) -> torch.Tensor:
        """(k, B) log p(x, z_j) - log q(z_j | x) for reparameterized z_j ~ q(z | x)."""
        mean, log_var = posterior or self.posterior(x)
        eps = torch.randn(k, *mean.shape, device=mean.device)
        z = mean + eps * torch.exp(0.5 * log_var)                            # (k, B, L)
        log_q = (-0.5 * eps.pow(2) - 0.5 * log_var - 0.5 * math.log(2 * math.pi)).sum(-1)
        log_prior = (-0.5 * z.pow(2) - 0.5 * math.log(2 * math.pi)).sum(-1)
        return self.reconstruction_log_prob(z, x) + log_prior - log_q

    def on_epoch_start(self):
        self.epochs_started += 1

    def kl_weight(self) -> float:
        """beta times the warm-up's progress: 0 in the first epoch, beta from epoch kl_warmup_epochs + 1."""
        warmup, finished = self.params.kl_warmup_epochs, max(0, int(self.epochs_started) - 1)
        progress = 1.0 if warmup == 0 else min(1.0, finished / warmup)
        return self.params.beta * progress

    def training_step(self, batch, optimizers):
        x = batch.images
        k = self.params.train_samples
        if k > 1:
            bound = torch.logsumexp(self.log_importance_weights(x, k), dim=0) - math.log(k)
            loss = -bound.mean()
            self.optimize(optimizers["model"], loss)
            return {"loss": loss.item()}
        reconstruction, kl = self.elbo_terms(x)
        weight = self.kl_weight()
        loss = -(reconstruction - weight * kl).mean()
        self.optimize(optimizers["model"], loss)
        return {"loss": loss.item(), "reconstruction": reconstruction.mean().item(), "kl": kl.mean().item(),
                "kl_weight": weight}

    @torch.no_grad()
    def validation_metrics(self, batch):
        x = batch.images
        reconstruction, kl = self.elbo_terms(x)
        metrics = {"neg_elbo": float(-(reconstruction - kl).mean()),
                   "reconstruction": float(reconstruction.mean()), "kl": float(kl.mean())}
        if self.params.train_samples > 1:
            metrics[self.selection[0]] = float(-self.iwae_log_prob(x, self.params.train_samples).mean())
        return metrics

    @torch.no_grad()
    def iwae_log_prob(self, x, k: int, chunk: int | None = None) -> torch.Tensor:
        """log (1/k) sum_j p(x, z_j) / q(z_j | x), z_j ~ q(z|x): a lower bound on log p(x)."""
        chunk, posterior = chunk or self.params.iwae_chunk, self.posterior(x)
        log_weights = [self.log_importance_weights(x, min(chunk, k - start), posterior)
                       for start in range(0, k, chunk)]
        return torch.logsumexp(torch.cat(log_weights), dim=0) - math.log(k)

    def log_prob(self, x):
        return self.iwae_log_prob(x, self.params.iwae_samples)

    def evaluation_log_prob(self, x, settings):
        """The importance-weighted bound with `evaluate.iwae_samples` samples."""
        return self.iwae_log_prob(x, settings["iwae_samples"])

    @torch.no_grad()
    def evaluation_metrics(self, test, settings):
        """The ELBO split into its reconstruction and KL terms (one posterior sample per image)."""
        terms = [self.elbo_terms(part) for part in test.images.split(256)]
        reconstruction = torch.cat([r for r, _ in terms]).mean().item()
        kl = torch.cat([k for _, k in terms]).mean().item()
        return {"test_elbo": reconstruction - kl, "test_reconstruction": reconstruction, "test_kl": kl}

    @torch.no_grad()
    def encode(self, x):
        return self.posterior(x)[0]

    def prior_sample(self, n, generator=None):
        return torch.randn(n, self.params.latent_dim, generator=generator)
