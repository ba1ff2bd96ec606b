"""Generative adversarial network (Goodfellow et al., 2014): a generator G and a
discriminator D, both MLPs, play the minimax game (eq. 1)

    min_G max_D  V(D, G) = E_x[log D(x)] + E_{z ~ p_z}[log(1 - D(G(z)))],   here p_z = N(0, I),

by alternating updates (`discriminator_steps` of D, then one of G), G
maximizing log D(G(z)) instead of minimizing log(1 - D(G(z))) (section 3: the
same fixed point, strong gradients early on), i.e. the shared `nonsaturating`
loss (components/losses/adversarial.py). Pixels in [0, 1]: G ends in a sigmoid.

Training as the authors' MNIST run (goodfeli/adversarial, mnist.yaml): SGD for
both networks, learning rate 0.1 decayed by 1.000004 per update (params.yaml's
`schedule`), momentum rising linearly from 0.5 to 0.7 over the first
`momentum_saturate` epochs (250). On the digits this gives an FID of 86 after
100 epochs where Adam (2e-4, beta1 0.5) gave 212. `optimizer: adam` (this
class's default, for callers that pass an Adam rate) uses Adam with `beta1`.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Literal

import torch
from torch import nn

from pydantic import Field
from components.losses.adversarial import NonSaturating
from components.models.base import register
from components.models.families.adversarial import AdversarialModel, MomentumSGD


@register
class GAN(MomentumSGD, AdversarialModel):
    name = "gan"
    capabilities = {"sample"}
    ema_modules = ("generator",)

    @dataclasses.dataclass
    class Params:
        latent_dim: Annotated[int, Field(ge=1)] = 64
        hidden_units: Annotated[int, Field(ge=1)] = 256
        optimizer: Literal["sgd", "adam"] = "adam"    # params.yaml's entry: sgd (the authors')
        momentum: Annotated[float, Field(ge=0, lt=1)] = 0.5            # sgd: initial momentum
        final_momentum: Annotated[float, Field(ge=0, lt=1)] = 0.7
        momentum_saturate: Annotated[int, Field(ge=1)] = 250           # sgd: epochs until final_momentum
        beta1: Annotated[float, Field(ge=0, lt=1)] = 0.5             # adam: first-moment decay (Radford et al.)
        discriminator_steps: Annotated[int, Field(ge=1)] = 1   # discriminator updates per generator update

    def __init__(self, spec, params):
        super().__init__(spec, params)
        H, D = params.hidden_units, self.num_pixels
        # Batch normalization keeps the hidden units' spread (and so the dependence on z)
        # from shrinking layer by layer; without it the generator starts, and stays, collapsed.
        self.generator = nn.Sequential(
            nn.Linear(params.latent_dim, H), nn.BatchNorm1d(H), nn.LeakyReLU(0.2),
            nn.Linear(H, 2 * H), nn.BatchNorm1d(2 * H), nn.LeakyReLU(0.2),
            nn.Linear(2 * H, D), nn.Sigmoid(),
        )
        self.loss = NonSaturating()
        self.discriminator = nn.Sequential(
            nn.Linear(D, 2 * H), nn.LeakyReLU(0.2), nn.Dropout(0.3),
            nn.Linear(2 * H, H), nn.LeakyReLU(0.2), nn.Dropout(0.3),
            nn.Linear(H, 1),
        )
        self.register_buffer("epochs_started", torch.zeros((), dtype=torch.long))   # a buffer: survives a resume

    def momentum_progress(self) -> float:
        """The authors' MomentumAdjustor counts epochs: epoch 1 trains at `momentum`."""
        return (float(self.epochs_started) - 1) / self.params.momentum_saturate

    def on_epoch_start(self):
        self.epochs_started += 1

    def generate(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.generator(self.noise(n, generator))

    def training_step(self, batch, optimizers):
        self.ramp_momentum(optimizers)
        real = self.flatten(batch.images)
        for _ in range(self.params.discriminator_steps):
            fake = self.generate(len(real)).detach()
            d_real, d_fake = self.discriminator(real), self.discriminator(fake)
            d_loss = self.loss.discriminator(d_real, d_fake)
            self.optimize(optimizers["discriminator"], d_loss)
        g_loss = self.loss.generator(self.discriminator(self.generate(len(real))))
        self.optimize(optimizers["generator"], g_loss)
        d_loss, g_loss = d_loss.item(), g_loss.item()
        return {"loss": d_loss + g_loss, "d_loss": d_loss, "g_loss": g_loss, **self.beliefs(d_real, d_fake)}

    @torch.no_grad()
    def validation_metrics(self, batch):
        real = self.flatten(batch.images)
        return self.beliefs(self.discriminator(real), self.discriminator(self.generate(len(real))))

    @torch.no_grad()
    def sample(self, n, condition=None, generator=None):
        self.check_unconditional(condition)
        return self.unflatten(self.generate(n, generator))
