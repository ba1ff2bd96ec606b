"""Conditional GAN (Mirza & Osindero, 2014).

Generator and discriminator both receive the class label y as extra input
(section 3.2):

    min_G max_D  E_{x,y}[log D(x | y)] + E_{z,y}[log(1 - D(G(z | y) | y))].

As in the paper's MNIST model (section 4.1), both are MLPs and y (one-hot) is
joined to each through its own first layer: the generator maps z and y to
ReLU layers, concatenates them and maps that to a ReLU layer and sigmoid
pixels; the discriminator maps x and y to maxout layers, concatenates them
and maps that to a maxout layer and one logit. Dropout 0.5 on the hidden
layers of both (the paper: "applied to both the generator and
discriminator"). Layer sizes are params (the paper: z 100, 200 | 1000 -> 1200
in G; 240 x 5 pieces | 50 x 5 -> 240 x 4 in D). The generator also has batch
norm on its hidden layers (the paper predates it; without it the MLP
generator collapses to a few images on small data).

Training (section 4.1): SGD with momentum, rising linearly from 0.5 to 0.7
over `momentum_saturate` updates (the paper gives no point; the default is
about the default run's length), learning rate 0.1 decayed by 1.00004 per
update (params.yaml's `schedule`). On the digits the step size decides whether
the condition holds within ~2,000 updates: with DCGAN's Adam 2e-4 the
discriminator scored a real digit with a wrong label almost as high as with
its own (mean D 0.60 vs 0.72) and 15-39% of samples showed their digit; the
paper's SGD gave 95% (Adam at 1e-3: 97%). `optimizer: adam` (this class's
default, for callers that pass an Adam rate) uses Adam with `beta1`.

Selection (components/training/selection.py): `intra_fid`, the mean over
classes of the FID of samples asked for k against the validation images of k,
which a model ignoring its condition cannot do well on.

`sample(n, condition=labels)`: labels are n class indices (a list or int
tensor) or one int for all n; without a condition each sample's label is
drawn uniformly from the classes (with `generator`, so a seeded call repeats).

Evaluation adds the FID of each class's samples against that class's test
images (`fid_class_<k>`, their mean `per_class_fid_mean`, `per_class_fid.png`).
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from torch import nn

from pydantic import Field
from components.errors import ConfigError
from components.losses.adversarial import LossName
from components.models.base import register
from components.models.families.adversarial import (AdversarialModel, MomentumSGD, per_class_fid,
                                                    per_class_fid_figure, per_class_fid_metrics)


class Maxout(nn.Module):
    """max over `pieces` affine maps (Goodfellow et al. 2013), as the paper's discriminator uses."""

    def __init__(self, in_features: int, units: int, pieces: int):
        super().__init__()
        self.units, self.pieces = units, pieces
        self.linear = nn.Linear(in_features, units * pieces)

    def forward(self, x):
        return self.linear(x).view(len(x), self.units, self.pieces).max(-1).values


class ConditionalGenerator(nn.Module):
    def __init__(self, latent_dim, classes, pixels, noise_units, label_units, hidden_units, dropout):
        super().__init__()
        def hidden(n_in, n_out):
            return [nn.Linear(n_in, n_out), nn.BatchNorm1d(n_out), nn.ReLU(), nn.Dropout(dropout)]
        self.noise = nn.Sequential(*hidden(latent_dim, noise_units))
        self.label = nn.Sequential(*hidden(classes, label_units))
        self.joint = nn.Sequential(*hidden(noise_units + label_units, hidden_units), nn.Linear(hidden_units, pixels),
                                   nn.Sigmoid())

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


@register
class ConditionalGAN(MomentumSGD, AdversarialModel):
    name = "cgan"
    capabilities = {"sample", "conditional_sample"}
    condition = "labels"
    selection = ("intra_fid", "min")

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
        dropout: Annotated[float, Field(ge=0, lt=1)] = 0.5             # D's hidden layers
        generator_dropout: Annotated[float, Field(ge=0, lt=1)] = 0.5   # G's hidden layers
        loss: LossName = "nonsaturating"
        optimizer: Literal["sgd", "adam"] = "adam"   # params.yaml's entry: sgd, the paper's
        momentum: Annotated[float, Field(ge=0, lt=1)] = 0.5            # sgd: initial momentum
        final_momentum: Annotated[float, Field(ge=0, lt=1)] = 0.7
        momentum_saturate: Annotated[int, Field(ge=1)] = 2000          # sgd: updates until final_momentum
        beta1: Annotated[float, Field(ge=0, lt=1)] = 0.5               # adam

    def __init__(self, spec, params):
        super().__init__(spec, params)
        if spec.num_classes < 2:
            raise ConfigError(f"model 'cgan' conditions on class labels, but data source {spec.source!r} "
                              f"names {spec.num_classes} classes")
        self.classes = spec.num_classes
        self.build_loss()
        p = params
        self.generator = ConditionalGenerator(p.latent_dim, self.classes, self.num_pixels, p.noise_units,
                                              p.label_units, p.hidden_units, p.generator_dropout)
        self.discriminator = ConditionalDiscriminator(self.num_pixels, self.classes, p.discriminator_image_units,
                                                      p.discriminator_label_units, p.discriminator_hidden_units,
                                                      p.maxout_pieces, p.dropout)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))   # a buffer: survives a resume

    def momentum_progress(self) -> float:
        return float(self.steps) / self.params.momentum_saturate

    def one_hot(self, labels: torch.Tensor) -> torch.Tensor:
        return F.one_hot(labels.long(), self.classes).float()

    def generate(self, labels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.unflatten(self.generator(self.noise(len(labels), generator), self.one_hot(labels)))

    def training_step(self, batch, optimizers):
        self.ramp_momentum(optimizers)
        self.steps += 1
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
