"""Deep convolutional GAN (Radford, Metz & Chintala, 2016).

The minimax game of Goodfellow et al. (2014),

    min_G max_D  E_x[log D(x)] + E_z[log(1 - D(G(z)))],   z ~ N(0, I),

played by the all-convolutional networks of the paper's architecture guidelines
(components/models/families/adversarial.py: strided convolutions, no pooling,
batch norm except at G's output and D's input, ReLU / tanh in G, LeakyReLU(0.2)
in D, weights from N(0, 0.02)), with Adam at lr 2e-4 (params.yaml's
`training.lr`) and beta1 0.5. Images are scaled to [-1, 1] inside the model;
`sample` returns [0, 1]. The loss is any of the shared adversarial losses:
`nonsaturating` (the paper's), `lsgan`, or `wgan_gp` (the critic then uses layer
norm instead of batch norm, as Gulrajani et al. advise; set
`discriminator_steps: 5` as they do).
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

import torch

from pydantic import Field
from components.losses.adversarial import LossName
from components.models.base import register
from components.models.families.adversarial import (AdversarialModel, DCGANDiscriminator, DCGANGenerator,
                                                    to_signed, to_unit)


@register
class DCGAN(AdversarialModel):
    name = "dcgan"
    capabilities = {"sample"}

    @dataclasses.dataclass
    class Params:
        latent_dim: Annotated[int, Field(ge=1)] = 100  # the paper's z: 100 uniform (here standard normal) numbers
        width: Annotated[int, Field(ge=1)] = 128  # feature maps next to the image; doubled at each coarser stage
        extra_layers: Annotated[int, Field(ge=0)] = 0  # stride-1 3x3 layers at 4x4 in both nets (depth for 8x8 images)
        loss: LossName = "nonsaturating"
        beta1: Annotated[float, Field(ge=0, lt=1)] = 0.5
        discriminator_steps: Annotated[int, Field(ge=1)] = 1   # discriminator updates per generator update

    def __init__(self, spec, params):
        super().__init__(spec, params)
        self.build_loss()
        self.generator = DCGANGenerator(params.latent_dim, self.image_shape, params.width, params.extra_layers)
        self.discriminator = DCGANDiscriminator(self.image_shape, params.width, params.extra_layers,
                                                norm="layer" if params.loss == "wgan_gp" else "batch")

    def training_step(self, batch, optimizers):
        real = to_signed(batch.images)
        # Real and generated images go through D in separate batches, as in the paper's code: batch
        # norm then normalizes each by its own statistics.
        for _ in range(self.params.discriminator_steps):
            fake = self.generator(self.noise(len(real)))
            d_real, d_fake = self.discriminator(real), self.discriminator(fake.detach())
            d_loss = self.loss.discriminator(d_real, d_fake) + self.loss.penalty(self.discriminator, real, fake)
            self.optimize(optimizers["discriminator"], d_loss)
        g_loss = self.loss.generator(self.discriminator(fake))
        self.optimize(optimizers["generator"], g_loss)
        d_loss, g_loss = d_loss.item(), g_loss.item()
        return {"loss": d_loss + g_loss, "d_loss": d_loss, "g_loss": g_loss, **self.beliefs(d_real, d_fake)}

    @torch.no_grad()
    def validation_metrics(self, batch):
        real = to_signed(batch.images)
        return self.beliefs(self.discriminator(real), self.discriminator(self.generator(self.noise(len(real)))))

    @torch.no_grad()
    def sample(self, n, condition=None, generator=None):
        self.check_unconditional(condition)
        return to_unit(self.generator(self.noise(n, generator)))
