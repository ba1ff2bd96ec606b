"""Instance-normalized residual generators and PatchGAN discriminators (the image-to-image networks).

Johnson et al. (2016)'s transformation network as CycleGAN (Zhu et al. 2017,
appendix 7.2) and StarGAN (Choi et al. 2018, appendix) use it: a 7x7
convolution, stride-2 downsampling, residual blocks of two 3x3 convolutions,
stride-2 upsampling back, a 7x7 convolution to the image with tanh; instance
normalization (Ulyanov et al. 2016) and ReLU throughout. The papers work at
128-256 pixels with two downsamplings and 6-9 blocks; here the number of
downsamplings follows the image (at most two, never below a 4x4 map: 8x8 gets
one), since instance norm over a 2x2 map normalizes four numbers.

The PatchGAN discriminator (Isola et al. 2017) classifies overlapping patches:
4x4 convolutions, stride 2 while the map is larger than 4x4, then one stride-1
layer and a stride-1 output convolution, so every output value judges one
receptive field rather than the whole image. Sized down for 8x8 and 32x32
images the same way.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def downsamplings(side: int, most: int = 2) -> int:
    """Stride-2 stages that keep the smallest map at least 4x4 (8 -> 1, 32 -> 2)."""
    return max(0, min(most, int(math.log2(max(side, 4) // 4))))


def instance_norm(channels: int) -> nn.Module:
    # Per image and channel, with a learned scale and shift; no running statistics, so training and
    # evaluation normalize alike.
    return nn.InstanceNorm2d(channels, affine=True, track_running_stats=False)


class ResidualBlock(nn.Module):
    """x + IN(conv(ReLU(IN(conv(x))))), reflection-padded 3x3 convolutions."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), instance_norm(channels), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), instance_norm(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """(B, in_channels, H, W) -> (B, out_channels, H, W) in [-1, 1]: c7s1-w, d2w, ..., R x blocks, ..., u w,
    c7s1-out (the papers' notation)."""

    def __init__(self, in_channels: int, out_channels: int, side: int, width: int = 64, blocks: int = 6,
                 reflect_input: bool = True):
        super().__init__()
        pad = min(3, side - 1)   # reflection padding must be smaller than the map
        # Zero padding for an input with constant label channels (StarGAN): a constant channel convolved
        # over a reflected (constant) border is a constant per feature map, which the instance norm
        # right after subtracts, so the label would have no effect; zeros around it make it visible.
        layers = [nn.ReflectionPad2d(pad) if reflect_input else nn.ZeroPad2d(pad),
                  nn.Conv2d(in_channels, width, 2 * pad + 1), instance_norm(width), nn.ReLU(True)]
        channels = width
        for _ in range(downsamplings(side)):
            layers += [nn.Conv2d(channels, channels * 2, 3, 2, 1), instance_norm(channels * 2), nn.ReLU(True)]
            channels *= 2
        layers += [ResidualBlock(channels) for _ in range(blocks)]
        for _ in range(downsamplings(side)):
            layers += [nn.ConvTranspose2d(channels, channels // 2, 3, 2, 1, output_padding=1),
                       instance_norm(channels // 2), nn.ReLU(True)]
            channels //= 2
        layers += [nn.ReflectionPad2d(pad), nn.Conv2d(channels, out_channels, 2 * pad + 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class PatchDiscriminator(nn.Module):
    """(B, C, H, W) -> trunk features; `forward` gives one value per patch, (B, 1, h, w).

    `norm`: instance norm after every layer but the first (CycleGAN), or none (StarGAN's critic,
    whose gradient penalty wants each image's value independent of the others)."""

    def __init__(self, in_channels: int, side: int, width: int = 64, norm: bool = True, slope: float = 0.2):
        super().__init__()
        layers = [nn.Conv2d(in_channels, width, 4, 2, 1), nn.LeakyReLU(slope, True)]
        channels, size = width, side // 2
        while size > 4:
            layers += [nn.Conv2d(channels, channels * 2, 4, 2, 1)]
            layers += [instance_norm(channels * 2)] if norm else []
            layers += [nn.LeakyReLU(slope, True)]
            channels, size = channels * 2, size // 2
        self.trunk = nn.Sequential(*layers)
        self.channels, self.size = channels, size   # the trunk's output map: (channels, size, size)
        stride1 = [nn.Conv2d(channels, channels * 2, 4, 1, 1)] + ([instance_norm(channels * 2)] if norm else [])
        self.patch = nn.Sequential(*stride1, nn.LeakyReLU(slope, True), nn.Conv2d(channels * 2, 1, 4, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.patch(self.trunk(x))
