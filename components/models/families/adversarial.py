"""What the adversarial models share: a generator and a discriminator trained by
alternating Adam updates on one of the shared adversarial losses
(components/losses/adversarial.py), images in [-1, 1] inside the networks, and
the DCGAN convolutional stacks (Radford et al. 2016) that DCGAN, InfoGAN,
GAN-CLS and Puzzle-GAN are built from.

DCGAN stacks: strided convolutions in the discriminator and fractionally
strided (transposed) convolutions in the generator, no pooling; batch norm in
both, except the generator's output layer and the discriminator's input layer;
ReLU in the generator with a tanh output, LeakyReLU(0.2) in the discriminator;
weights from N(0, 0.02). The generator projects its input to a 4x4 map of
`width * 2^(k-1)` channels and doubles the resolution k times, halving the
channels each time, so k follows the image size: 8x8 -> 1 stage, 32x32 -> 3,
64x64 -> 4 (the paper's 1024-512-256-128 with width 128). Sizes that are not a
power of two are generated at the next one (28 -> 32) and cropped at the
centre; the discriminator pads its input back with -1 (black), so real and
generated images reach it with the same border.

Class-conditional evaluation (cgan, gan_cls): `per_class_fid` draws
`evaluate.num_samples / classes` samples asked for each class (a label, or a
caption naming it) and measures each class's FID against the real test images
of that class, with the evaluation classifier evaluate hands the hooks
(`settings["judge"]`, components/metrics/sample_quality.py).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from components.losses.adversarial import adversarial_loss
from components.models.base import GenerativeModel
from components.pictures import Bars


class AdversarialModel(GenerativeModel):
    """A generator and a discriminator, each trained by its own optimizer, and `self.loss`, the game
    between them. A subclass builds them as `self.generator` and `self.discriminator`; where a player is
    several networks (CycleGAN's G and F, Puzzle-GAN's part encoder and decoder) it names its
    parameters in `generator_parameters` / `discriminator_parameters`."""
    family = "adversarial"
    # No likelihood to select by: the kept weights are those of the epoch with the best FID of samples
    # against the validation split (components/training/selection.py), not the last epoch's. A model
    # that translates or completes rather than samples has no FID of its own: it sets None (last epoch).
    selection = ("fid", "min")

    def generator_parameters(self):
        return self.generator.parameters()

    def discriminator_parameters(self):
        """What the discriminator's optimizer updates (InfoGAN adds its Q head)."""
        return self.discriminator.parameters()

    def configure_optimizers(self, lr):
        betas = (self.params.beta1, 0.999)
        return {"discriminator": torch.optim.Adam(self.discriminator_parameters(), lr=lr, betas=betas),
                "generator": torch.optim.Adam(self.generator_parameters(), lr=lr, betas=betas)}

    def build_loss(self):
        self.loss = adversarial_loss(self.params.loss)

    def noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(n, self.params.latent_dim, generator=generator).to(self.device)

    def signed(self, images: torch.Tensor) -> torch.Tensor:
        """A caller's images in [0, 1] (any device, any number type) as the networks read them."""
        return to_signed(images.to(self.device).float())

    def beliefs(self, d_real: torch.Tensor, d_fake: torch.Tensor) -> dict[str, float]:
        """D's mean verdict on real and generated images: probabilities where the loss defines them."""
        p_real, p_fake = self.loss.probability_real(d_real), self.loss.probability_real(d_fake)
        if p_real is None:
            p_real, p_fake = d_real, d_fake
        return {"d_real": p_real.mean().item(), "d_fake": p_fake.mean().item()}


class MomentumSGD:
    """Goodfellow et al.'s and Mirza & Osindero's MNIST optimizer, with `params.optimizer` "sgd": plain
    SGD per player, momentum rising linearly from `params.momentum` to `params.final_momentum` as
    `momentum_progress()` goes from 0 to 1 (pylearn2's MomentumAdjustor, which both papers' runs use);
    "adam": the family's Adam. Mixed in before `AdversarialModel`."""

    def momentum_progress(self) -> float:
        """How far the ramp has got: 0 at the start, 1 (or more) once at `final_momentum`."""
        raise NotImplementedError

    def momentum(self) -> float:
        p = self.params
        return p.momentum + (p.final_momentum - p.momentum) * min(1.0, max(0.0, self.momentum_progress()))

    def configure_optimizers(self, lr):
        if self.params.optimizer == "adam":
            return super().configure_optimizers(lr)
        return {name: torch.optim.SGD(getattr(self, name).parameters(), lr=lr, momentum=self.momentum())
                for name in ("discriminator", "generator")}

    def ramp_momentum(self, optimizers: dict[str, torch.optim.Optimizer]) -> None:
        """Set this step's momentum (called at the start of each training step)."""
        if self.params.optimizer == "sgd":
            for optimizer in optimizers.values():
                for group in optimizer.param_groups:
                    group["momentum"] = self.momentum()


def to_signed(x: torch.Tensor) -> torch.Tensor:
    """Pixels in [0, 1] to the tanh range [-1, 1] the DCGAN networks work in."""
    return x * 2 - 1


def to_unit(x: torch.Tensor) -> torch.Tensor:
    return ((x + 1) / 2).clamp(0, 1)


def working_size(height: int, width: int) -> int:
    """The power-of-two square (at least 8x8) the stacks work at."""
    return max(8, 2 ** math.ceil(math.log2(max(height, width))))


def stages(height: int, width: int) -> int:
    return int(math.log2(working_size(height, width) // 4))


def normalization(kind: str, channels: int) -> nn.Module:
    # Layer norm (one group) for a WGAN-GP critic: its penalty is per sample, and batch norm
    # would make each sample's critic value depend on the rest of the batch (Gulrajani et al. 4).
    return nn.BatchNorm2d(channels) if kind == "batch" else nn.GroupNorm(1, channels)


def dcgan_init(module: nn.Module) -> None:
    """Radford et al.: weights from N(0, 0.02); normalization scales from N(1, 0.02), shifts 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d, nn.GroupNorm)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class DCGANGenerator(nn.Module):
    """(B, in_features) -> (B, C, H, W) in [-1, 1]."""

    def __init__(self, in_features: int, image_shape, width: int, extra_layers: int = 0):
        super().__init__()
        c, self.height, self.width = image_shape
        channels = width * 2 ** (stages(self.height, self.width) - 1)
        layers = [nn.ConvTranspose2d(in_features, channels, 4, 1, 0, bias=False), nn.BatchNorm2d(channels),
                  nn.ReLU(True)]
        for _ in range(extra_layers):  # stride-1 layers at 4x4: depth for small images, at little cost
            layers += [nn.Conv2d(channels, channels, 3, 1, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(True)]
        for _ in range(stages(self.height, self.width) - 1):
            layers += [nn.ConvTranspose2d(channels, channels // 2, 4, 2, 1, bias=False),
                       nn.BatchNorm2d(channels // 2), nn.ReLU(True)]
            channels //= 2
        layers += [nn.ConvTranspose2d(channels, c, 4, 2, 1), nn.Tanh()]   # output layer: no batch norm
        self.net = nn.Sequential(*layers)
        dcgan_init(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.net(z[:, :, None, None])
        top, left = (x.shape[2] - self.height) // 2, (x.shape[3] - self.width) // 2
        return x[:, :, top:top + self.height, left:left + self.width]


class DCGANDiscriminator(nn.Module):
    """(B, C, H, W) in [-1, 1] -> features (B, channels, 4, 4) from `trunk`, and `outputs` values per
    image from `head` (one logit or critic value: a 4x4 convolution over the last map, i.e. the paper's
    flattened last layer fed to one unit)."""

    def __init__(self, image_shape, width: int, extra_layers: int = 0, norm: str = "batch", outputs: int = 1):
        super().__init__()
        c, height, w = image_shape
        self.size = working_size(height, w)
        layers = [nn.Conv2d(c, width, 4, 2, 1), nn.LeakyReLU(0.2, True)]  # input layer: no normalization
        channels = width
        for _ in range(stages(height, w) - 1):
            layers += [nn.Conv2d(channels, channels * 2, 4, 2, 1, bias=False), normalization(norm, channels * 2),
                       nn.LeakyReLU(0.2, True)]
            channels *= 2
        for _ in range(extra_layers):
            layers += [nn.Conv2d(channels, channels, 3, 1, 1, bias=False), normalization(norm, channels),
                       nn.LeakyReLU(0.2, True)]
        self.trunk = nn.Sequential(*layers)
        self.features = channels * 16
        self.head = nn.Conv2d(channels, outputs, 4, 1, 0)
        dcgan_init(self)

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        dh, dw = self.size - x.shape[2], self.size - x.shape[3]
        if dh == dw == 0:
            return x
        return F.pad(x, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2), value=-1.0)

    def features_of(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(self.pad(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features_of(x)).flatten(1)


# What a class-conditional model draws for its per-class evaluation: (per_class, generator) ->
# (samples (per_class * classes, C, H, W) in [0, 1], the class each was asked for).
ClassDraw = Callable[[int, torch.Generator], tuple[torch.Tensor, torch.Tensor]]


def per_class_fid(model, draw: ClassDraw, settings: dict) -> tuple[np.ndarray, np.ndarray | None] | str:
    """FID per class of `draw`'s samples against the real test images of that class, and the same
    for as many real training images per class (the floor; None without them); the reason when it
    cannot be measured (no evaluation classifier, no labels)."""
    from components.metrics.sample_quality import SampleJudge   # the served model loads no scipy

    judge: SampleJudge | None = settings.get("judge")
    if judge is None or judge.real_labels is None:
        return "not measured: no evaluation classifier or no test labels"
    per_class = max(2, int(settings.get("num_samples", 500)) // model.spec.num_classes)
    samples, asked = draw(per_class, torch.Generator().manual_seed(int(settings.get("seed", 0))))
    return judge.per_class_fid(samples.cpu(), asked.cpu().numpy()), judge.per_class_floor(per_class)


def per_class_fid_metrics(measured) -> dict:
    """`fid_class_<k>`, their mean `per_class_fid_mean` and the floor's `real_data_per_class_fid_mean`."""
    from components.metrics.sample_quality import per_class_fid_metrics as metrics

    if isinstance(measured, str):
        return {"per_class_fid": measured}
    values, floor = measured
    shown = metrics(values)
    if floor is not None and np.isfinite(floor).any():
        shown["real_data_per_class_fid_mean"] = float(np.nanmean(floor))
    return shown


def per_class_fid_figure(model, measured) -> dict:
    if isinstance(measured, str):
        return {}
    values, floor = measured
    return {"per_class_fid.png": Bars(values, model.spec.class_names, f"{model.name}: FID per class "
                                      "(samples asked for k vs test images of k)", "FID", reference=floor,
                                      names=(model.name, "training images (as many per class)"))}
