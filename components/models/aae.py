"""Adversarial autoencoder (Makhzani et al., 2015).

A deterministic autoencoder whose codes are made to follow a chosen prior
p(z) by a discriminator on the latent space instead of a KL term, so the prior
can be any distribution one can sample (`prior` in params):

* `gaussian`: N(0, I);
* `mixture`: 10 Gaussians (std 0.5) with means on a circle of radius 4 in the
  first two latent dimensions, N(0, 1) in the others (the paper's Figure 4);
* `uniform`: U(-sqrt 3, sqrt 3) per dimension (unit variance, like the Gaussian).

Each minibatch runs the paper's two phases in turn: the reconstruction phase
updates encoder and decoder to lower -log p(x | z = enc(x)); the
regularization phase first updates the discriminator to tell prior samples
(positive) from codes (negative), then updates the encoder (the generator)
to fool it. Samples are decoded prior draws. The AAE has no likelihood (the
paper's Parzen-window estimate is not a bound).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Annotated, Literal

import torch
from torch import nn

from pydantic import Field
from components.losses.adversarial import NonSaturating
from components.models.families.autoencoder import Autoencoder, check_architecture, mlp
from components.models.base import register

MIXTURE_COMPONENTS, MIXTURE_RADIUS, MIXTURE_STD = 10, 4.0, 0.5


def rbf_mmd2(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Unbiased squared MMD (Gretton et al. 2012) with Gaussian kernels at several bandwidths:
    about 0 when x and y come from one distribution."""
    both = torch.cat([x, y])
    d2 = torch.cdist(both, both).pow(2)
    kernel = sum(torch.exp(-d2 / (2 * x.shape[1] * s ** 2)) for s in (0.25, 0.5, 1.0, 2.0, 4.0))
    n, m = len(x), len(y)
    kxx, kyy, kxy = kernel[:n, :n], kernel[n:, n:], kernel[:n, n:]
    return ((kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1)) + (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
            - 2 * kxy.mean())


@register
class AAE(Autoencoder):
    name = "aae"
    likelihood = None
    selection = ("fid", "min")  # no likelihood: sample quality (see components/training/selection.py)

    @dataclasses.dataclass
    class Params:
        latent_dim: Annotated[int, Field(ge=1)] = 8
        prior: Literal["gaussian", "mixture", "uniform"] = "gaussian"
        architecture: Literal["mlp", "conv"] = "mlp"
        hidden_units: list[Annotated[int, Field(ge=1)]] = dataclasses.field(default_factory=lambda: [512, 512])
        # conv only
        conv_channels: list[Annotated[int, Field(ge=1)]] = dataclasses.field(default_factory=lambda: [32, 64])
        discriminator_units: list[Annotated[int, Field(ge=1)]] = dataclasses.field(default_factory=lambda: [512, 512])
        beta1: Annotated[float, Field(ge=0, lt=1)] = 0.5  # Adam's first-moment decay for the two adversarial updates

        def __post_init__(self):   # a rule across parameters: the schema runs it (components.config.rules)
            check_architecture(self)

    def __init__(self, spec, params):
        super().__init__(spec, params)
        self.build_networks(params.latent_dim)
        self.discriminator = mlp([params.latent_dim, *params.discriminator_units, 1], nn.ReLU)
        self.loss = NonSaturating()   # D's logit: prior sample (real) against code (fake)
        angles = 2 * math.pi * torch.arange(MIXTURE_COMPONENTS) / MIXTURE_COMPONENTS
        means = torch.zeros(MIXTURE_COMPONENTS, params.latent_dim)
        means[:, 0], means[:, 1 % params.latent_dim] = MIXTURE_RADIUS * angles.cos(), MIXTURE_RADIUS * angles.sin()
        self.register_buffer("mixture_means", means)

    def configure_optimizers(self, lr):
        betas = (self.params.beta1, 0.999)
        return {"autoencoder": torch.optim.Adam([*self.encoder.parameters(), *self.decoder.parameters()], lr=lr),
                "discriminator": torch.optim.Adam(self.discriminator.parameters(), lr=lr, betas=betas),
                "generator": torch.optim.Adam(self.encoder.parameters(), lr=lr, betas=betas)}

    def prior_sample(self, n, generator=None):
        d = self.params.latent_dim
        if self.params.prior == "uniform":
            return (2 * torch.rand(n, d, generator=generator) - 1) * math.sqrt(3)
        z = torch.randn(n, d, generator=generator)
        if self.params.prior == "mixture":
            component = torch.randint(MIXTURE_COMPONENTS, (n,), generator=generator)
            means = self.mixture_means.cpu()[component]
            std = torch.ones(d)
            std[:2] = MIXTURE_STD
            z = means + z * std
        return z

    def code(self, x):
        return self.encoder(self.encoder_input(x))

    def training_step(self, batch, optimizers):
        x = batch.images
        # Reconstruction phase: encoder and decoder.
        reconstruction = self.reconstruction_log_prob(self.code(x), x).mean()
        self.optimize(optimizers["autoencoder"], -reconstruction)
        # Regularization phase: the discriminator, then the encoder as its generator.
        real = self.prior_sample(len(x)).to(x.device)
        codes = self.code(x)
        d_real, d_fake = self.discriminator(real), self.discriminator(codes.detach())
        d_loss = self.loss.discriminator(d_real, d_fake)
        self.optimize(optimizers["discriminator"], d_loss)
        g_loss = self.loss.generator(self.discriminator(codes))
        self.optimize(optimizers["generator"], g_loss)
        return {"loss": -reconstruction.item(), "reconstruction": reconstruction.item(),
                "d_loss": d_loss.item(), "g_loss": g_loss.item(),
                "d_real": torch.sigmoid(d_real).mean().item(), "d_fake": torch.sigmoid(d_fake).mean().item()}

    @torch.no_grad()
    def validation_metrics(self, batch):
        x = batch.images
        codes = self.code(x)
        prior = self.prior_sample(len(x), torch.Generator().manual_seed(len(x))).to(codes.device)
        metrics = {"reconstruction": float(self.reconstruction_log_prob(codes, x).mean()),
                   "d_fake": float(torch.sigmoid(self.discriminator(codes)).mean())}
        if len(x) > 1:  # how far the codes are from the prior: the regularization phase lowers it
            metrics["prior_mmd"] = float(rbf_mmd2(codes, prior))
        return metrics

    @torch.no_grad()
    def encode(self, x):
        return self.code(x)
