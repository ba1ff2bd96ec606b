"""Progressive growing of GANs (Karras, Aila, Laine & Lehtinen, 2018).

Generator and discriminator start at 4x4 and grow, one resolution doubling
per training phase, to the data's size (a power of two; 28x28 is padded to
32x32 with black, the generator's output cropped back). Each phase is a
`Phase` of the training loop with its own resolution, images shown and batch
size (params `resolutions`, `phase_images`, `phase_batch_sizes`). A new block
is faded in (section 2, figure 2): during the first `fade_fraction` of its
phase's images

    G: x = (1 - alpha) upsample(toRGB_{k-1}(h_{k-1})) + alpha toRGB_k(block_k(h_{k-1}))
    D: h = (1 - alpha) fromRGB_{k-1}(avgpool(x))      + alpha block_k(fromRGB_k(x))

with alpha rising linearly from 0 to 1 with the images shown in the phase,
then the phase goes on at alpha = 1 (stabilization). Real images are shown at
the current resolution, blended between the two resolutions with the same
alpha. `level`, `alpha` and the phase's images are buffers, so saved weights
sample at the resolution they were trained at and a resumed run continues
the fade where it stopped.

Section 4: equalized learning rate (weights drawn from N(0, 1) and scaled at
runtime by He's constant sqrt(2 / fan_in)), pixelwise feature vector
normalization after each generator convolution (and of z), and (section 3)
the minibatch standard deviation as an extra feature map before the
discriminator's last block. Loss: WGAN-GP with the epsilon-drift term
(0.001), one critic step per generator step, Adam (lr 0.001, beta1 0, beta2
0.99, epsilon 1e-8), and an averaged generator for samples (`ema_modules`).

The official code (tkarras/progressive_growing_of_gans, train.py) resets both
optimizers' state (Adam's moments and step count) whenever the level of
detail crosses an integer (`reset_opt_for_new_lod = True`): when a new block
starts fading in, and when its fade-in ends. So does `training_step` here,
at the same two moments (`adam_stage`: 2 level + [alpha = 1]).

The average: the paper's decay 0.999 per minibatch of 16 (`G_smoothing`) is a
half-life of 16 ln 2 / -ln 0.999 = 11,000 images, about 1% of a 1.2M-image
phase. It is the `ema_kimg` training setting, a half-life in thousands of
images (components/training/ema.py, StyleGAN's form of the same average),
with StyleGAN2-ADA's warm-up `ema_rampup`, so that the averaged generator at
the end of a short phase is the trained one, not mostly its random
initialization; `ema_decay` (per step) still works.

Departures: feature maps per resolution are `width` at 4x4 and 8x8, halved at
each finer resolution, down to 8 (the paper: 512 down to 16 at 1024x1024); the
generator's output is linear, as in the paper, and clamped to [-1, 1] for
samples only. Samples of a model trained at a coarser resolution than the data
(a run stopped before its last phase) are that resolution upsampled
(nearest) to the data's size.

The progression (the paper's figures of each resolution): when a phase ends
(`on_phase_end`: before the next phase, and the last one when training ends),
`PHASE_SAMPLES` samples of one fixed noise set are kept of the averaged (EMA)
generator and of the live one, 8-bit, nearest-upsampled from the phase's resolution, in a
buffer saved with the weights as the run's record (`records`: the last epoch's,
whichever epoch selection keeps). Evaluation shows each phase's grid
(`phase_<i>_<r>x<r>.png`, the averaged generator's) and the FIDs `fid_phase_<r>`
(averaged generator) and `fid_phase_<r>_live` against the real test
images downsampled to r x r (average pooling, as the phase's real images are
made) and upsampled the same way, so the evaluation classifier reads both at
the data's size.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Annotated

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from pydantic import Field
from components.errors import ConfigError
from components.losses.adversarial import KARRAS_DRIFT, adversarial_loss
from components.models.base import Phase, Phased, register
from components.models.families.adversarial import AdversarialModel, to_signed, to_unit
from components.pictures import Grid

HE_GAIN = math.sqrt(2.0)
PHASE_SAMPLES = 500   # samples kept per phase (evaluate's default num_samples), 8-bit
PHASE_SEED = 0        # the same noise at every phase: the grids show one set of z growing


class EqualizedConv2d(nn.Module):
    """A convolution whose stored weights are N(0, 1), scaled at every call by gain / sqrt(fan_in)
    (section 4.1): the update size of Adam then matches across layers of any fan-in."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, gain: float = HE_GAIN):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.scale = gain / math.sqrt(in_channels * kernel * kernel)
        self.padding = kernel // 2

    def forward(self, x):
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)


class EqualizedLinear(nn.Module):
    def __init__(self, in_features: int, out_features: int, gain: float = HE_GAIN):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.scale = gain / math.sqrt(in_features)

    def forward(self, x):
        return F.linear(x, self.weight * self.scale, self.bias)


class PixelNorm(nn.Module):
    """b = a / sqrt(mean over channels of a^2 + 1e-8), at every pixel (section 4.2)."""

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(1, keepdim=True) + 1e-8)


class MinibatchStddev(nn.Module):
    """One more feature map: the standard deviation of each feature at each pixel over the minibatch,
    averaged over features and pixels, replicated over the map (section 3)."""

    def forward(self, x):
        std = torch.sqrt(x.var(0, unbiased=False) + 1e-8).mean()
        return torch.cat([x, std.expand(len(x), 1, *x.shape[2:])], 1)


def leaky(x):
    return F.leaky_relu(x, 0.2)


def channels_at(level: int, width: int) -> int:
    return max(8, width // 2 ** max(0, level - 1))


class GeneratorBlock(nn.Module):
    """Upsample (nearest) x2, then two 3x3 convolutions, each with leaky ReLU and pixel norm."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv1, self.conv2 = EqualizedConv2d(in_channels, out_channels, 3), EqualizedConv2d(out_channels, out_channels, 3)
        self.norm = PixelNorm()

    def forward(self, x):
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.norm(leaky(self.conv2(self.norm(leaky(self.conv1(x))))))


class ProGenerator(nn.Module):
    def __init__(self, latent_dim: int, channels: int, levels: int, width: int):
        super().__init__()
        self.norm = PixelNorm()
        c0 = channels_at(0, width)
        # The 4x4 block: z -> 4x4 (a dense layer, the paper's 4x4 convolution of a 1x1 input), then 3x3.
        self.project = EqualizedLinear(latent_dim, c0 * 16, gain=HE_GAIN / 4)
        self.first = EqualizedConv2d(c0, c0, 3)
        self.blocks = nn.ModuleList(GeneratorBlock(channels_at(k - 1, width), channels_at(k, width))
                                    for k in range(1, levels))
        self.to_rgb = nn.ModuleList(EqualizedConv2d(channels_at(k, width), channels, 1, gain=1.0)
                                    for k in range(levels))

    def forward(self, z: torch.Tensor, level: int, alpha: float) -> torch.Tensor:
        """Images at 4 * 2^level pixels a side, in the [-1, 1] working range (linear output)."""
        h = self.norm(leaky(self.project(self.norm(z)).view(len(z), -1, 4, 4)))
        h = self.norm(leaky(self.first(h)))
        for k in range(1, level + 1):
            previous, h = h, self.blocks[k - 1](h)
        new = self.to_rgb[level](h)
        if level == 0 or alpha >= 1:
            return new
        old = F.interpolate(self.to_rgb[level - 1](previous), scale_factor=2, mode="nearest")
        return torch.lerp(old, new, alpha)


class DiscriminatorBlock(nn.Module):
    """Two 3x3 convolutions with leaky ReLU, then average pooling /2."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv1, self.conv2 = EqualizedConv2d(in_channels, in_channels, 3), EqualizedConv2d(in_channels, out_channels, 3)

    def forward(self, x):
        return F.avg_pool2d(leaky(self.conv2(leaky(self.conv1(x)))), 2)


class ProDiscriminator(nn.Module):
    def __init__(self, channels: int, levels: int, width: int):
        super().__init__()
        self.from_rgb = nn.ModuleList(EqualizedConv2d(channels, channels_at(k, width), 1) for k in range(levels))
        self.blocks = nn.ModuleList(DiscriminatorBlock(channels_at(k, width), channels_at(k - 1, width))
                                    for k in range(1, levels))
        c0 = channels_at(0, width)
        self.stddev = MinibatchStddev()
        self.last_conv = EqualizedConv2d(c0 + 1, c0, 3)
        self.last_dense = EqualizedLinear(c0 * 16, c0)
        self.out = EqualizedLinear(c0, 1, gain=1.0)

    def forward(self, x: torch.Tensor, level: int, alpha: float) -> torch.Tensor:
        """Critic values (B, 1) of images at 4 * 2^level pixels a side."""
        h = leaky(self.from_rgb[level](x))
        if level > 0:
            h = self.blocks[level - 1](h)
            if alpha < 1:
                h = torch.lerp(leaky(self.from_rgb[level - 1](F.avg_pool2d(x, 2))), h, alpha)
            for k in range(level - 1, 0, -1):
                h = self.blocks[k - 1](h)
        h = leaky(self.last_conv(self.stddev(h)))
        return self.out(leaky(self.last_dense(h.flatten(1))))


@register
class ProGAN(Phased, AdversarialModel):
    name = "progan"
    capabilities = {"sample"}
    ema_modules = ("generator",)
    records = ("phase_recorded", "phase_samples", "phase_recorded_live", "phase_samples_live")

    @dataclasses.dataclass
    class Params:
        latent_dim: Annotated[int, Field(ge=1)] = 512
        width: Annotated[int, Field(ge=1)] = 512                        # feature maps at 4x4 and 8x8
        # one phase per resolution
        resolutions: list[Annotated[int, Field(ge=4)]] = dataclasses.field(default_factory=lambda: [4, 8])
        phase_images: list[Annotated[int, Field(ge=1)]] = dataclasses.field(
            default_factory=lambda: [600_000, 1_200_000])
        phase_batch_sizes: list[Annotated[int, Field(ge=1)]] = dataclasses.field(default_factory=lambda: [16, 16])
        fade_fraction: Annotated[float, Field(gt=0, le=1)] = 0.5  # of a phase's images spent fading its block in
        beta1: Annotated[float, Field(ge=0, lt=1)] = 0.0                      # Adam (0, 0.99) as in the paper
        beta2: Annotated[float, Field(ge=0, lt=1)] = 0.99
        penalty_weight: Annotated[float, Field(ge=0)] = 10.0
        drift: Annotated[float, Field(ge=0)] = KARRAS_DRIFT

    def __init__(self, spec, params):
        super().__init__(spec, params)
        c, height, width = self.image_shape
        self.size = max(4, 2 ** math.ceil(math.log2(max(height, width))))
        levels = int(math.log2(self.size // 4)) + 1
        p = params
        expected = [4 * 2 ** k for k in range(levels)]
        if list(p.resolutions) != expected:
            raise ConfigError(f"model 'progan': resolutions must grow from 4 by doubling to the data's "
                              f"{self.size}x{self.size} (images {height}x{width}): {expected}, got {list(p.resolutions)}")
        if not (len(p.phase_images) == len(p.phase_batch_sizes) == levels):
            raise ConfigError(f"model 'progan': phase_images and phase_batch_sizes need one entry per resolution "
                              f"({levels})")
        self.loss = adversarial_loss("wgan_gp", penalty_weight=p.penalty_weight, drift=p.drift)
        self.generator = ProGenerator(p.latent_dim, c, levels, p.width)
        self.discriminator = ProDiscriminator(c, levels, p.width)
        self.register_buffer("level", torch.tensor(-1))          # the resolution being trained: 4 * 2^level
        self.register_buffer("alpha", torch.tensor(1.0))         # the newest block's weight
        self.register_buffer("phase_images_seen", torch.tensor(0))
        self.register_buffer("fade_images", torch.tensor(1))
        self.register_buffer("phase_recorded", torch.zeros(levels, dtype=torch.bool))
        self.register_buffer("phase_samples", torch.zeros(levels, PHASE_SAMPLES, c, self.size, self.size,
                                                          dtype=torch.uint8))
        self.register_buffer("phase_recorded_live", torch.zeros_like(self.phase_recorded))
        self.register_buffer("phase_samples_live", torch.zeros_like(self.phase_samples))
        self.register_buffer("adam_stage", torch.tensor(-1))    # 2 level + [alpha = 1] the optimizers' state is of

    def configure_optimizers(self, lr):
        betas = (self.params.beta1, self.params.beta2)
        return {"discriminator": torch.optim.Adam(self.discriminator.parameters(), lr=lr, betas=betas, eps=1e-8),
                "generator": torch.optim.Adam(self.generator.parameters(), lr=lr, betas=betas, eps=1e-8)}

    def phases(self):
        p = self.params
        return [Phase(f"{r}x{r}", images=i, batch_size=b, resolution=r)
                for r, i, b in zip(p.resolutions, p.phase_images, p.phase_batch_sizes)]

    def on_phase_start(self, phase):
        level = int(math.log2(phase.resolution // 4))
        self.fade_images.fill_(max(1, round(self.params.fade_fraction * phase.images)))
        if int(self.level) != level:   # a new phase; the same level is a resumed run: keep its progress
            self.level.fill_(level)
            self.phase_images_seen.zero_()
            self.alpha.fill_(0.0 if level > 0 else 1.0)

    @torch.no_grad()
    def on_phase_end(self, phase, averaged=True):
        level, alpha = self.current
        z = torch.randn(PHASE_SAMPLES, self.params.latent_dim, generator=torch.Generator().manual_seed(PHASE_SEED))
        x = self.generator(z.to(self.device), level, alpha).clamp(-1, 1)
        x = to_unit(F.interpolate(x, size=(self.size, self.size), mode="nearest"))
        samples, recorded = ((self.phase_samples, self.phase_recorded) if averaged
                             else (self.phase_samples_live, self.phase_recorded_live))
        samples[level] = (x * 255).round().to(torch.uint8)
        recorded[level] = True

    def reset_optimizers_for_new_layers(self, optimizers, level: int, alpha: float) -> None:
        """Empty Adam's state when a block starts fading in and when its fade-in ends (see above)."""
        stage = 2 * level + int(alpha >= 1)
        if stage != int(self.adam_stage):
            for optimizer in optimizers.values():
                optimizer.state.clear()
            self.adam_stage.fill_(stage)

    def selectable(self) -> bool:
        """Only the grown network (the data's resolution, alpha 1) competes in selection: an earlier
        phase's generator is a coarser model upsampled, however good its FID."""
        return int(self.level) == len(self.params.resolutions) - 1 and float(self.alpha) >= 1

    def advance(self, shown: int) -> None:
        """Count `shown` images towards the phase and move alpha along the fade-in."""
        self.phase_images_seen += shown
        if int(self.level) > 0:
            self.alpha.fill_(min(1.0, int(self.phase_images_seen) / int(self.fade_images)))

    @property
    def current(self) -> tuple[int, float]:
        return max(0, int(self.level)), float(self.alpha)

    def working(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] -> [-1, 1] at the working size, padded with black."""
        x = to_signed(images)
        dh, dw = self.size - x.shape[2], self.size - x.shape[3]
        if dh or dw:
            x = F.pad(x, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2), value=-1.0)
        return x

    def real_at(self, x: torch.Tensor, level: int, alpha: float) -> torch.Tensor:
        """Real images at the current resolution, blended across the fade as the generator's are."""
        x = F.adaptive_avg_pool2d(x, 4 * 2 ** level) if x.shape[-1] != 4 * 2 ** level else x
        if level > 0 and alpha < 1:
            x = torch.lerp(F.interpolate(F.avg_pool2d(x, 2), scale_factor=2, mode="nearest"), x, alpha)
        return x

    def training_step(self, batch, optimizers):
        level, alpha = self.current
        self.reset_optimizers_for_new_layers(optimizers, level, alpha)
        real = self.real_at(self.working(batch.images), level, alpha)
        critic = lambda x: self.discriminator(x, level, alpha)  # noqa: E731
        fake = self.generator(self.noise(len(real)), level, alpha)
        d_real, d_fake = critic(real), critic(fake.detach())
        d_loss = self.loss.discriminator(d_real, d_fake) + self.loss.penalty(critic, real, fake)
        self.optimize(optimizers["discriminator"], d_loss)
        g_loss = self.loss.generator(critic(self.generator(self.noise(len(real)), level, alpha)))
        self.optimize(optimizers["generator"], g_loss)
        world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        self.advance(len(real) * world)
        return {"loss": d_loss.item() + g_loss.item(), "d_loss": d_loss.item(), "g_loss": g_loss.item(),
                "d_real": d_real.mean().item(), "d_fake": d_fake.mean().item(), "alpha": alpha,
                "resolution": 4 * 2 ** level}

    @torch.no_grad()
    def validation_metrics(self, batch):
        level, alpha = self.current
        real = self.real_at(self.working(batch.images), level, alpha)
        fake = self.generator(self.noise(len(real)), level, alpha)
        return {"d_real": self.discriminator(real, level, alpha).mean().item(),
                "d_fake": self.discriminator(fake, level, alpha).mean().item()}

    def at_data_size(self, x: torch.Tensor) -> torch.Tensor:
        """Working-range images at any resolution -> the data's size in [0, 1]: upsampled (nearest), cropped."""
        x = F.interpolate(x, size=(self.size, self.size), mode="nearest")
        _, height, width = self.image_shape
        top, left = (self.size - height) // 2, (self.size - width) // 2
        return to_unit(x[:, :, top:top + height, left:left + width])

    @torch.no_grad()
    def sample(self, n, condition=None, generator=None):
        self.check_unconditional(condition)
        level, alpha = self.current
        return self.at_data_size(self.generator(self.noise(n, generator), level, alpha).clamp(-1, 1))

    # --- evaluation: the progression -----------------------------------------------
    @torch.no_grad()
    def phase_results(self, live: bool = False) -> dict[int, torch.Tensor | str]:
        """Resolution -> the samples kept as that phase ended (of the averaged generator, or the live one),
        at the data's size, or why there are none."""
        kept, recorded = ((self.phase_samples_live, self.phase_recorded_live) if live
                          else (self.phase_samples, self.phase_recorded))
        return {r: self.at_data_size(kept[k].float() / 127.5 - 1) if bool(recorded[k])
                else "not recorded: training ended before this phase"
                for k, r in enumerate(self.params.resolutions)}

    def real_at_resolution(self, images: torch.Tensor, r: int) -> torch.Tensor:
        """Real images in [0, 1] averaged down to r x r, shown at the data's size as samples are."""
        return self.at_data_size(F.adaptive_avg_pool2d(self.working(images.to(self.device)), r))

    def evaluation_metrics(self, test, settings):
        judge = settings.get("judge")
        metrics = {}
        for suffix, results in (("", self.phase_results()), ("_live", self.phase_results(live=True))):
            for r, samples in results.items():
                key = f"fid_phase_{r}{suffix}"
                if isinstance(samples, str) or judge is None:
                    metrics[key] = samples if isinstance(samples, str) else "not measured: no classifier"
                else:
                    metrics[key] = judge.fid(samples.cpu(), self.real_at_resolution(test.images, r).cpu())
        return metrics

    def evaluation_figures(self, test, settings):
        return {f"phase_{i + 1}_{r}x{r}.png": Grid(samples[:100].cpu().numpy(), columns=10)
                for i, (r, samples) in enumerate(self.phase_results().items())
                if not isinstance(samples, str)}
