"""Conditional GAN (Mirza & Osindero, 2014).

Generator and discriminator both receive the class label y as extra input
(section 3.2):

    min_G max_D  E_{x,y}[log D(x | y)] + E_{z,y}[log(1 - D(G(z | y) | y))].

As in the paper's MNIST model (section 4.1), both are MLPs and y (one-hot) is
joined to each through its own first layer: the generator maps z and y to
ReLU layers, concatenates them and maps that to a ReLU layer and sigmoid
pixels; the discriminator maps x and y to maxout layers, concatenates them
and maps that to a maxout layer and one logit, with dropout 0.5 on its hidden
layers. Layer sizes are params (the paper: z 100, 200 | 1000 -> 1200 in G;
240 x 5 pieces | 50 x 5 -> 240 x 4 in D). The generator also has batch norm
on its hidden layers (the paper predates it; without it the MLP generator
collapses to a few images on small data).

`sample(n, condition=labels)`: labels are n class indices (a list or int
tensor) or one int for all n; without a condition each sample's label is
drawn uniformly from the classes (with `generator`, so a seeded call repeats).

Evaluation adds the FID of each class's samples against that class's test
images (`fid_class_<k>`, their mean `per_class_fid_mean`, `per_class_fid.png`).
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

import torch
import torch.nn.functional as F
from torch import nn

from pydantic import Field
from components.config import ConfigError
from components.losses.adversarial import LossName
from components.models.families.adversarial import (AdversarialModel, per_class_fid, per_class_fid_figure,
                                                    per_class_fid_metrics)


class Maxout(nn.Module):
    """max over `pieces` affine maps (Goodfellow et al. 2013), as the paper's discriminator uses."""

    def __init__(self, in_features: int, units: int, pieces: int):
        super().__init__()
        self.units, self.pieces = units, pieces
        self.linear = nn.Linear(in_features, units * pieces)

    def forward(self, x):
        return self.linear(x).view(len(x), self.units, self.pieces).max(-1).values


class ConditionalGenerator(nn.Module):
    def __init__(self, latent_dim, classes, pixels, noise_units, label_units, hidden_units):
        super().__init__()
        self.noise = nn.Sequential(nn.Linear(latent_dim, noise_units), nn.BatchNorm1d(noise_units), nn.ReLU())
        self.label = nn.Sequential(nn.Linear(classes, label_units), nn.BatchNorm1d(label_units), nn.ReLU())
        self.joint = nn.Sequential(nn.Linear(noise_units + label_units, hidden_units), nn.BatchNorm1d(hidden_units),
                                   nn.ReLU(), nn.Linear(hidden_units, pixels), nn.Sigmoid())

    def forward(self, z, y_onehot):
        return self.joint(torch.cat([self.noise(z), self.label(y_onehot)], 1))


class ConditionalDiscriminator(nn.Module):
    def __init__(self, pixels, classes, image_units, label_units, hidden_units, pieces, dropout):
        super().__init__()
        self.image = nn.Sequential(Maxout(pixels, image_units, pieces), nn.Dropout(dropout))
        self.label = nn.Sequential(Maxout(classes, label_units, pieces), nn.Dropout(dropout))
        self.joint = nn.Sequential(Maxout(image_units + label_units, hidden_units, max(pieces - 1, 1)),
                                   nn.Dropout(dropout), nn.Linear(hidden_units, 1))

    def forward(self, x, y_onehot):
        return self.joint(torch.cat([self.image(x.flatten(1)), self.label(y_onehot)], 1))


class ConditionalGAN(AdversarialModel):
    name = "cgan"
    capabilities = {"sample", "conditional_sample"}
    requires = {"labels"}
    condition = "labels"

    @dataclasses.dataclass
    class Params:
        latent_dim: Annotated[int, Field(ge=1)] = 100
        noise_units: Annotated[int, Field(ge=1)] = 200                 # G: z -> ReLU
        label_units: Annotated[int, Field(ge=1)] = 1000                # G: y -> ReLU
        hidden_units: Annotated[int, Field(ge=1)] = 1200               # G: both -> ReLU -> pixels
        discriminator_image_units: Annotated[int, Field(ge=1)] = 240   # D: x -> maxout
        discriminator_label_units: Annotated[int, Field(ge=1)] = 50    # D: y -> maxout
        discriminator_hidden_units: Annotated[int, Field(ge=1)] = 240  # D: both -> maxout (one piece fewer) -> logit
        maxout_pieces: Annotated[int, Field(ge=2)] = 5
        dropout: Annotated[float, Field(ge=0, lt=1)] = 0.5
        loss: LossName = "nonsaturating"
        beta1: Annotated[float, Field(ge=0, lt=1)] = 0.5

    def __init__(self, spec, params):
        super().__init__(spec, params)
        if spec.num_classes < 2:
            raise ConfigError(f"model 'cgan' conditions on class labels, but data source {spec.source!r} "
                              f"names {spec.num_classes} classes")
        self.classes = spec.num_classes
        self.build_loss()
        p = params
        self.generator = ConditionalGenerator(p.latent_dim, self.classes, self.num_pixels, p.noise_units,
                                              p.label_units, p.hidden_units)
        self.discriminator = ConditionalDiscriminator(self.num_pixels, self.classes, p.discriminator_image_units,
                                                      p.discriminator_label_units, p.discriminator_hidden_units,
                                                      p.maxout_pieces, p.dropout)

    def one_hot(self, labels: torch.Tensor) -> torch.Tensor:
        return F.one_hot(labels.long(), self.classes).float()

    def generate(self, labels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.unflatten(self.generator(self.noise(len(labels), generator), self.one_hot(labels)))

    def training_step(self, batch, optimizers):
        real, y = batch.images, self.one_hot(batch.labels)
        critic = lambda x: self.discriminator(x, y)  # noqa: E731  (D given this batch's labels)
        # Generated images get the labels of the real batch: the label marginal matches the data's.
        fake = self.generate(batch.labels)
        d_real, d_fake = critic(real), critic(fake.detach())
        d_loss = self.loss.discriminator(d_real, d_fake) + self.loss.penalty(critic, real, fake)
        self.optimize(optimizers["discriminator"], d_loss)
        g_loss = self.loss.generator(critic(fake))
        self.optimize(optimizers["generator"], g_loss)
        d_loss, g_loss = d_loss.item(), g_loss.item()
        return {"loss": d_loss + g_loss, "d_loss": d_loss, "g_loss": g_loss, **self.beliefs(d_real, d_fake)}

    @torch.no_grad()
    def validation_metrics(self, batch):
        y = self.one_hot(batch.labels)
        return self.beliefs(self.discriminator(batch.images, y),
                            self.discriminator(self.generate(batch.labels), y))

    def labels_for(self, n: int, condition, generator: torch.Generator | None = None) -> torch.Tensor:
        """The n class indices `sample` is asked for (see the module docstring)."""
        if condition is None:
            return torch.randint(self.classes, (n,), generator=generator).to(self.device)
        labels = torch.as_tensor(condition, device=self.device)
        if labels.is_floating_point() or labels.dim() > 1:
            raise ValueError(f"cgan: a condition is a class index or n of them, got {condition!r}")
        labels = labels.long().expand(n) if labels.dim() == 0 else labels.long()
        if len(labels) != n:
            raise ValueError(f"cgan: asked for {n} samples with {len(labels)} labels")
        if len(labels) and (labels.min() < 0 or labels.max() >= self.classes):
            raise ValueError(f"cgan: labels must lie in 0..{self.classes - 1} ({', '.join(self.spec.class_names)})")
        return labels

    @torch.no_grad()
    def sample(self, n, condition=None, generator=None):
        return self.generate(self.labels_for(n, condition, generator), generator)

    def class_samples(self, per_class: int, generator: torch.Generator):
        """`per_class` samples asked for each class in turn, and the classes asked for."""
        asked = torch.arange(self.classes, device=self.device).repeat_interleave(per_class)
        return self.sample(len(asked), condition=asked, generator=generator), asked

    def evaluation_metrics(self, test, settings):
        return per_class_fid_metrics(per_class_fid(self, self.class_samples, settings))

    def evaluation_figures(self, test, settings):
        return per_class_fid_figure(self, per_class_fid(self, self.class_samples, settings))
