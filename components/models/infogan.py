"""InfoGAN (Chen et al., 2016).

The generator's input is noise z and latent codes c; the codes are made to
explain the images by maximizing a lower bound on the mutual information
I(c; G(z, c)) beside the GAN game (eq. 6):

    min_{G,Q} max_D  V(D, G) - lambda L_I(G, Q),
    L_I(G, Q) = E_{c ~ P(c), x ~ G(z, c)}[log Q(c | x)] + H(c)        (eq. 5),

with Q an auxiliary head on the discriminator's trunk (one extra layer, then
the codes' parameters), so the bound costs almost nothing. Codes, as in the
paper's MNIST experiment: one `categorical`-way categorical code (10) and
`continuous` codes uniform on (-1, 1) (2), lambda 1 for the categorical and 0.1
for the continuous ones (`lambda_categorical`, `lambda_continuous`). Q is a
softmax over the categorical values and a factored Gaussian over the
continuous codes with fixed unit std (`learn_std: false`, as the paper's code
for MNIST) or a learned per-image std (`learn_std: true`). The networks are
the DCGAN stacks (components/models/families/adversarial.py); the bound is
components/losses/information.py.

L_I is maximized by both players' updates: the discriminator's optimizer
(trunk, D head and Q) minimizes L_D - lambda L_I on the generated batch, the
generator's minimizes L_G - lambda L_I.
The authors' MNIST run (openai/InfoGAN) trains them with Adam, beta1 0.5, at
different rates: 1e-3 for the generator, 2e-4 for the discriminator and Q
(params.yaml's `training.optimizers`).

The generator's weights may be averaged over the steps (`ema_modules`, with
`training.ema_decay` or `ema_kimg`): validation, selection, evaluation and the
saved model then use the average. The paper and the authors' code sample the live
generator; at the generator's 1e-3 its weights move far at each step, and on
the digits' short runs the average's samples are better digits (lower FID) that
follow their code as well or better, so the default entry uses it (measured in
params.yaml's entry). Only
the generator is averaged: Q and the discriminator read the live generator's
images during training, and `encode` is the live Q.

Evaluation (`evaluation_metrics`): `categorical_code_accuracy` classifies G's samples for each
categorical value with the evaluation classifier and matches values to classes one-to-one;
`q_accuracy_on_real` is Q's own reading of the real test images, matched the same way.

`encode(x)` returns Q's estimate of the codes, (n, categorical + continuous):
first the categorical code's probabilities over its values (argmax = the
inferred value), then the continuous codes' means.
`sample(n)` draws z and c from their priors; `sample_with_codes` takes c.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

import torch
import torch.nn.functional as F
from torch import nn

from pydantic import Field
from components.losses.adversarial import LossName
from components.losses.information import information_lower_bound
from components.models.base import register
from components.models.families.adversarial import (AdversarialModel, DCGANDiscriminator, DCGANGenerator,
                                                    dcgan_init, to_signed, to_unit)
from components.pictures import Grid


@register
class InfoGAN(AdversarialModel):
    name = "infogan"
    capabilities = {"sample", "encode"}
    ema_modules = ("generator",)

    @dataclasses.dataclass
    class Params:
        latent_dim: Annotated[int, Field(ge=1)] = 62             # noise z (the paper's MNIST: 62)
        categorical: Annotated[int, Field(ge=1)] = 10            # values of the categorical code
        continuous: Annotated[int, Field(ge=0)] = 2              # continuous codes, each U(-1, 1)
        lambda_categorical: Annotated[float, Field(ge=0)] = 1.0
        lambda_continuous: Annotated[float, Field(ge=0)] = 0.1
        learn_std: bool = False          # Q's std of the continuous codes: 1, or predicted per image
        q_units: Annotated[int, Field(ge=1)] = 128               # Q's hidden layer on the trunk's features
        width: Annotated[int, Field(ge=1)] = 64
        extra_layers: Annotated[int, Field(ge=0)] = 0
        loss: LossName = "nonsaturating"
        beta1: Annotated[float, Field(ge=0, lt=1)] = 0.5

    def __init__(self, spec, params):
        super().__init__(spec, params)
        self.build_loss()
        p = params
        self.code_size = p.categorical + p.continuous
        self.generator = DCGANGenerator(p.latent_dim + self.code_size, self.image_shape, p.width, p.extra_layers)
        self.discriminator = DCGANDiscriminator(self.image_shape, p.width, p.extra_layers,
                                                norm="layer" if p.loss == "wgan_gp" else "batch")
        outputs = p.categorical + p.continuous * (2 if p.learn_std else 1)
        self.q = nn.Sequential(nn.Flatten(), nn.Linear(self.discriminator.features, p.q_units),
                               nn.BatchNorm1d(p.q_units), nn.LeakyReLU(0.2, True), nn.Linear(p.q_units, outputs))
        dcgan_init(self.q)

    def discriminator_parameters(self):
        return [*self.discriminator.parameters(), *self.q.parameters()]

    # --- codes ------------------------------------------------------------
    def draw_codes(self, n: int, generator: torch.Generator | None = None):
        """c ~ P(c): categorical indices (n,) uniform over the values, continuous (n, J) uniform on (-1, 1)."""
        categorical = torch.randint(self.params.categorical, (n,), generator=generator)
        continuous = torch.rand(n, self.params.continuous, generator=generator) * 2 - 1
        return categorical.to(self.device), continuous.to(self.device)

    def generate(self, categorical, continuous, generator=None, z=None) -> torch.Tensor:
        """G(z, c) in [-1, 1]; z drawn from N(0, I) unless given."""
        z = self.noise(len(categorical), generator) if z is None else z.to(self.device)
        c = torch.cat([F.one_hot(categorical.long(), self.params.categorical).float(), continuous], 1)
        return self.generator(torch.cat([z, c], 1))

    def q_parameters(self, features):
        """Q(c | x) from the trunk's features: categorical logits, continuous means, log stds (or None)."""
        out = self.q(features)
        k, j = self.params.categorical, self.params.continuous
        return out[:, :k], out[:, k:k + j], (out[:, k + j:] if self.params.learn_std else None)

    def information(self, features, categorical, continuous) -> torch.Tensor:
        """lambda-weighted L_I of the codes behind the images whose trunk features are given."""
        logits, mean, log_std = self.q_parameters(features)
        return information_lower_bound(logits, categorical, mean, continuous, log_std,
                                       self.params.lambda_categorical, self.params.lambda_continuous)

    # --- training -----------------------------------------------------------
    def training_step(self, batch, optimizers):
        real = to_signed(batch.images)
        categorical, continuous = self.draw_codes(len(real))
        fake = self.generate(categorical, continuous)
        D = self.discriminator
        d_real = D.head(D.features_of(real))
        fake_features = D.features_of(fake.detach())
        d_fake = D.head(fake_features)
        info_d = self.information(fake_features, categorical, continuous)
        d_loss = self.loss.discriminator(d_real, d_fake) + self.loss.penalty(D, real, fake) - info_d
        self.optimize(optimizers["discriminator"], d_loss)
        features = D.features_of(fake)
        info_g = self.information(features, categorical, continuous)
        g_loss = self.loss.generator(D.head(features)) - info_g
        self.optimize(optimizers["generator"], g_loss)
        # d_loss and g_loss include -lambda L_I; mutual_information is lambda L_I itself (at most
        # lambda_cat log K + lambda_cont J (log 2 - log sqrt(2 pi e)) with Q's std fixed to 1).
        d_loss, g_loss, info = d_loss.item(), g_loss.item(), info_g.item()
        return {"loss": d_loss + g_loss, "d_loss": d_loss, "g_loss": g_loss, "mutual_information": info,
                **self.beliefs(d_real, d_fake)}

    @torch.no_grad()
    def validation_metrics(self, batch):
        real = to_signed(batch.images)
        categorical, continuous = self.draw_codes(len(real))
        features = self.discriminator.features_of(self.generate(categorical, continuous))
        return {**self.beliefs(self.discriminator(real), self.discriminator.head(features)),
                "mutual_information": self.information(features, categorical, continuous).item()}

    # --- capabilities -------------------------------------------------------
    @torch.no_grad()
    def sample(self, n, condition=None, generator=None):
        self.check_unconditional(condition)
        return to_unit(self.generate(*self.draw_codes(n, generator), generator))

    @torch.no_grad()
    def sample_with_codes(self, categorical, continuous, generator=None, z=None) -> torch.Tensor:
        """Images in [0, 1] for the given codes: categorical (n,) indices, continuous (n, J) values;
        noise z (n, latent_dim) drawn unless given."""
        categorical = torch.as_tensor(categorical, device=self.device)
        continuous = torch.as_tensor(continuous, dtype=torch.float32, device=self.device)
        return to_unit(self.generate(categorical, continuous, generator, z))

    @torch.no_grad()
    def encode(self, x):
        logits, mean, _ = self.q_parameters(self.discriminator.features_of(to_signed(x.to(self.device))))
        return torch.cat([logits.softmax(1), mean], 1)

    # --- evaluation -------------------------------------------------------------
    @torch.no_grad()
    def code_samples(self, per_value: int, generator: torch.Generator | None = None):
        """`per_value` samples for each categorical value in turn (z and the continuous codes from their
        priors), and the value each was drawn with."""
        categorical = torch.arange(self.params.categorical).repeat_interleave(per_value)
        _, continuous = self.draw_codes(len(categorical), generator)
        return self.sample_with_codes(categorical, continuous, generator), categorical

    def evaluation_metrics(self, test, settings):
        """`categorical_code_accuracy`: does G's image follow its categorical code? `num_samples` /
        categorical samples per code value, classified by the evaluation classifier (a network G was
        not trained against), code values matched to classes one-to-one (Hungarian), as the paper's 5%
        error is a matched accuracy. `q_accuracy_on_real`: Q's argmax on the real test images, matched
        to their labels the same way; Q was trained with G on G's images, so it says how well Q reads
        real digits, not whether G obeys the code."""
        # Imported here: the served model (pyfunc) loads this module with torch, numpy and pandas only.
        from components.metrics.clustering import unsupervised_accuracy

        judge, k = settings.get("judge"), self.params.categorical
        metrics = {"categorical_code_accuracy": "not measured: no evaluation classifier"}
        if judge is not None:
            per_value = max(2, int(settings.get("num_samples", 500)) // k)
            samples, values = self.code_samples(per_value, torch.Generator().manual_seed(int(settings.get("seed", 0))))
            metrics["categorical_code_accuracy"] = judge.matched_accuracy(samples.cpu(), values.numpy())
        if test.labels is None:
            metrics["q_accuracy_on_real"] = "not measured: the data has no labels"
        else:
            inferred = torch.cat([self.encode(test.images[i:i + 256])[:, :k].argmax(1).cpu()
                                  for i in range(0, len(test), 256)])
            metrics["q_accuracy_on_real"] = unsupervised_accuracy(inferred.numpy(), test.labels.numpy())
        return metrics

    def evaluation_figures(self, test, settings, columns: int = 9):
        """One latent traversal per continuous code: rows = the categorical code's values, columns = that
        code from -2 to 2 (beyond its training range (-1, 1), as the paper's figure 2), other codes 0,
        one noise vector throughout."""
        k = self.params.categorical
        seed = int(settings.get("seed", 0))
        figures = {}
        for j in range(self.params.continuous):
            continuous = torch.zeros(k * columns, self.params.continuous)
            continuous[:, j] = torch.linspace(-2, 2, columns).repeat(k)
            categorical = torch.arange(k).repeat_interleave(columns)
            z = torch.randn(1, self.params.latent_dim, generator=torch.Generator().manual_seed(seed))
            images = self.sample_with_codes(categorical, continuous, z=z.expand(k * columns, -1))
            figures[f"traversal_continuous_{j}.png"] = Grid(images.cpu().numpy(), columns=columns)
        return figures
