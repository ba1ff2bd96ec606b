"""Puzzle-GAN (Lee, Park, Kim, Hwang & Kim, ECCV 2018, "Unsupervised Holistic Image Generation from
Key Local Patches"): the whole image, and where its parts belong, from a few of its patches.

Given K key patches {x_1, ..., x_K} of an image x (no positions), a shared part encoder E maps each
to a code; the codes and a noise vector z go to a decoder that outputs the whole image x_hat and a
mask M_hat of where the patches lie: (x_hat, M_hat) = G(E(x_1), ..., E(x_K), z). With M the true
mask (1 on the windows the patches were cut from), the generator minimizes

    L_G = lambda_adv L_adv + lambda_spatial L_spatial + lambda_appearance L_appearance,
    L_spatial    = BCE(M_hat, M),                       (the mask against the patches' true windows)
    L_appearance = ||M * (x_hat - x)||_1 / ||M||_1,     (the patches restored in the generated image)

and a discriminator judges (image, mask) pairs, real (x, M) against generated (x_hat, M_hat), with
any of the shared adversarial losses (components/losses/adversarial.py; least squares here).

Key patches. The paper takes the patches from an object-proposal method. Its stand-in here is a
stated objectness score: the gradient energy of a window, the sum over its pixels and channels of
the squared Sobel responses (S_x * x)^2 + (S_y * x)^2. The K windows of highest energy are taken
greedily, each one not overlapping those taken before (ties: the first in raster order), so the
selection is deterministic. On 8x8 digits: 3 patches of 3x3; on 32x32 photos: 8x8 (`patch_size`
0 = max(3, side // 4)). Given observed pixels (`complete`), only windows of observed pixels compete,
scored by the Sobel responses that read observed pixels only, so nothing hidden leaks in.

Networks: the encoder is two 3x3 convolutions (the second of stride 2) and a linear code; the
decoder and the discriminator are the DCGAN stacks of the adversarial family (image channels plus
one mask channel, tanh; the mask is read as (tanh + 1) / 2 = sigmoid(2a)).

`complete(images, observed=None)` cuts the key patches from `images` itself (from windows of
observed pixels only, where `observed` is given) and returns the generated whole images (pixels
where `observed` is True are kept from `images`);
`generate_from_patches(patches)` takes the K patches directly.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from pydantic import Field
from components.config import ConfigError
from components.losses.adversarial import LossName, adversarial_loss
from components.models.base import GenerativeModel
from components.models.families.adversarial import DCGANDiscriminator, DCGANGenerator, to_signed, to_unit

SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


class KeyPatches(NamedTuple):
    patches: torch.Tensor     # (B, K, C, s, s)
    positions: torch.Tensor   # (B, K, 2): top-left (row, column) of each window
    mask: torch.Tensor        # (B, 1, H, W): 1 on the windows


def gradient_energy(images: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H, W): sum over channels of the squared Sobel responses (edges replicated)."""
    b, c, h, w = images.shape
    x = F.pad(images.reshape(b * c, 1, h, w).float(), (1, 1, 1, 1), mode="replicate")
    kernels = torch.stack([SOBEL_X, SOBEL_X.T])[:, None].to(x)
    responses = F.conv2d(x, kernels)
    return responses.pow(2).sum(1).reshape(b, c, h, w).sum(1)


def select_windows(scores: torch.Tensor, k: int, size: int) -> torch.Tensor:
    """Greedy non-overlapping windows: `scores` (B, H-s+1, W-s+1) of each window's top-left corner ->
    (B, k, 2) corners, highest first; a window overlapping one already taken is never taken."""
    scores = scores.clone().double()
    b, rows, cols = scores.shape
    r = torch.arange(rows, device=scores.device)[None, :, None]
    c = torch.arange(cols, device=scores.device)[None, None, :]
    corners = []
    for _ in range(k):
        best = scores.flatten(1).argmax(1)
        y, x = best // cols, best % cols
        if torch.isinf(scores.flatten(1)[torch.arange(b), best]).any():
            raise ValueError(f"puzzle_gan: {k} non-overlapping {size}x{size} windows do not fit the image "
                             f"(its observed pixels)")
        corners.append(torch.stack([y, x], 1))
        overlaps = ((r - y[:, None, None]).abs() < size) & ((c - x[:, None, None]).abs() < size)
        scores = scores.masked_fill(overlaps, float("-inf"))
    return torch.stack(corners, 1)


def key_patches(images: torch.Tensor, k: int, size: int, observed: torch.Tensor | None = None) -> KeyPatches:
    """The `k` non-overlapping `size`x`size` windows of highest gradient energy, cut from `images`;
    with `observed` (bool, broadcast to `images`), only windows whose every pixel is observed."""
    b, c, h, w = images.shape
    energy = gradient_energy(images)[:, None]
    if observed is not None:   # a Sobel response that reads a hidden pixel counts nothing
        seen = observed.to(images.device).expand_as(images).all(1, keepdim=True).float()
        energy = energy * (F.avg_pool2d(F.pad(seen, (1, 1, 1, 1), mode="replicate"), 3, stride=1) == 1)
    scores = F.avg_pool2d(energy, size, stride=1)[:, 0] * size * size
    if observed is not None:
        inside = F.avg_pool2d(seen, size, stride=1)[:, 0] == 1
        scores = scores.masked_fill(~inside, float("-inf"))
    corners = select_windows(scores, k, size)
    offsets = torch.arange(size, device=images.device)
    rows = corners[..., 0, None] + offsets                        # (B, K, s)
    cols = corners[..., 1, None] + offsets
    batch = torch.arange(b, device=images.device)[:, None, None, None]
    patches = images[batch, :, rows[..., :, None], cols[..., None, :]]   # (B, K, s, s, C)
    ys = torch.arange(h, device=images.device)[None, None, :, None]
    xs = torch.arange(w, device=images.device)[None, None, None, :]
    y0, x0 = corners[..., 0, None, None], corners[..., 1, None, None]
    inside = (ys >= y0) & (ys < y0 + size) & (xs >= x0) & (xs < x0 + size)   # (B, K, H, W)
    return KeyPatches(patches.permute(0, 1, 4, 2, 3), corners, inside.any(1, keepdim=True).float())


def spatial_loss(predicted_mask: torch.Tensor, true_mask: torch.Tensor) -> torch.Tensor:
    """BCE(M_hat, M), mean over pixels."""
    return F.binary_cross_entropy(predicted_mask, true_mask)


def appearance_loss(generated: torch.Tensor, images: torch.Tensor, true_mask: torch.Tensor) -> torch.Tensor:
    """||M * (x_hat - x)||_1 / ||M||_1 per channel: the mean absolute error on the patches' windows."""
    m = true_mask.expand_as(images)
    return ((generated - images).abs() * m).sum() / m.sum().clamp_min(1)


class PartEncoder(nn.Module):
    """(N, C, s, s) -> (N, code_dim), shared by the K patches."""

    def __init__(self, channels: int, size: int, width: int, code_dim: int):
        super().__init__()
        half = (size + 1) // 2
        self.net = nn.Sequential(nn.Conv2d(channels, width, 3, 1, 1), nn.LeakyReLU(0.2, True),
                                 nn.Conv2d(width, 2 * width, 3, 2, 1), nn.LeakyReLU(0.2, True),
                                 nn.Flatten(), nn.Linear(2 * width * half * half, code_dim))

    def forward(self, x):
        return self.net(x)


class PuzzleGAN(GenerativeModel):
    name = "puzzle_gan"
    family = "adversarial"
    capabilities = {"complete"}
    completes_from = "key_patches"
    promotion_metric = "patch_l1"   # the patches restored where they belong: placement and appearance at once

    @dataclasses.dataclass
    class Params:
        patches: Annotated[int, Field(ge=1)] = 3              # K, the paper's default
        patch_size: Annotated[int, Field(ge=0)] = 0           # side of a key patch; 0 = max(3, image side // 4)
        code_dim: Annotated[int, Field(ge=1)] = 64            # per patch
        noise_dim: Annotated[int, Field(ge=0)] = 8
        width: Annotated[int, Field(ge=1)] = 32               # encoder, decoder and discriminator widths
        extra_layers: Annotated[int, Field(ge=0)] = 1  # stride-1 layers at 4x4 in decoder and discriminator (8x8 depth)
        lambda_adv: Annotated[float, Field(ge=0)] = 1.0
        lambda_spatial: Annotated[float, Field(ge=0)] = 1.0
        lambda_appearance: Annotated[float, Field(ge=0)] = 10.0
        loss: LossName = "lsgan"
        beta1: Annotated[float, Field(ge=0, lt=1)] = 0.5

    def __init__(self, spec, params):
        super().__init__(spec, params)
        c, h, w = self.image_shape
        self.patch_size = params.patch_size or max(3, min(h, w) // 4)
        if params.patches < 1 or self.patch_size > min(h, w):
            raise ConfigError(f"model 'puzzle_gan': {params.patches} patches of {self.patch_size}x{self.patch_size} "
                              f"do not fit {h}x{w} images")
        self.encoder = PartEncoder(c, self.patch_size, params.width, params.code_dim)
        self.decoder = DCGANGenerator(params.patches * params.code_dim + params.noise_dim, (c + 1, h, w),
                                      params.width, params.extra_layers)
        self.discriminator = DCGANDiscriminator((c + 1, h, w), params.width, params.extra_layers,
                                                norm="layer" if params.loss == "wgan_gp" else "batch")
        self.loss = adversarial_loss(params.loss)

    def configure_optimizers(self, lr):
        betas = (self.params.beta1, 0.999)
        return {"generator": torch.optim.Adam([*self.encoder.parameters(), *self.decoder.parameters()],
                                              lr=lr, betas=betas),
                "discriminator": torch.optim.Adam(self.discriminator.parameters(), lr=lr, betas=betas)}

    def key_patches(self, images: torch.Tensor, observed: torch.Tensor | None = None) -> KeyPatches:
        return key_patches(images, self.params.patches, self.patch_size, observed)

    def generate(self, patches: torch.Tensor, generator: torch.Generator | None = None):
        """(B, K, C, s, s) in [0, 1] -> signed image (B, C, H, W) and mask (B, 1, H, W) in [0, 1]."""
        b, k = patches.shape[:2]
        if k != self.params.patches:
            raise ValueError(f"puzzle_gan was trained on {self.params.patches} patches per image, got {k}")
        codes = self.encoder(to_signed(patches.flatten(0, 1))).reshape(b, -1)
        z = torch.randn(b, self.params.noise_dim, generator=generator).to(codes)
        out = self.decoder(torch.cat([codes, z], 1))
        return out[:, :-1], to_unit(out[:, -1:])

    def training_step(self, batch, optimizers):
        x = batch.images
        key = self.key_patches(x)
        real = torch.cat([to_signed(x), to_signed(key.mask)], 1)
        generated, mask = self.generate(key.patches)
        fake = torch.cat([generated, to_signed(mask)], 1)
        d_loss = (self.loss.discriminator(self.discriminator(real), self.discriminator(fake.detach()))
                  + self.loss.penalty(self.discriminator, real, fake))
        self.optimize(optimizers["discriminator"], d_loss)
        spatial = spatial_loss(mask.clamp(1e-6, 1 - 1e-6), key.mask)
        appearance = appearance_loss(to_unit(generated), x, key.mask)
        adversarial = self.loss.generator(self.discriminator(fake))
        p = self.params
        g_loss = p.lambda_adv * adversarial + p.lambda_spatial * spatial + p.lambda_appearance * appearance
        self.optimize(optimizers["generator"], g_loss)
        return {"loss": d_loss.item() + g_loss.item(), "d_loss": d_loss.item(), "g_loss": g_loss.item(),
                "spatial_loss": spatial.item(), "appearance_loss": appearance.item()}

    @torch.no_grad()
    def validation_metrics(self, batch):
        return self.scores(batch.images.to(self.device), torch.Generator().manual_seed(0))

    @torch.no_grad()
    def scores(self, images, generator=None) -> dict[str, float]:
        key = self.key_patches(images)
        generated, mask = self.generate(key.patches, generator)
        predicted = mask > 0.5
        truth = key.mask > 0.5
        iou = ((predicted & truth).sum((1, 2, 3)).float() / (predicted | truth).sum((1, 2, 3)).clamp_min(1))
        return {"mask_iou": iou.mean().item(), "patch_l1": appearance_loss(to_unit(generated), images, key.mask).item()}

    @torch.no_grad()
    def generate_from_patches(self, patches, generator: torch.Generator | None = None):
        """K patches per image, a (B, K, C, s, s) tensor or a list of K (B, C, s, s) tensors, in [0, 1]
        -> (whole images (B, C, H, W), masks (B, 1, H, W)), both in [0, 1]."""
        if isinstance(patches, (list, tuple)):
            patches = torch.stack(list(patches), 1)
        generated, mask = self.generate(patches.to(self.device).float(), generator)
        return to_unit(generated), mask

    @torch.no_grad()
    def complete(self, images, observed=None, generator=None):
        images = images.to(self.device).float()
        if observed is not None:
            observed = observed.to(self.device)
        generated, _ = self.generate_from_patches(self.key_patches(images, observed).patches, generator)
        return generated if observed is None else torch.where(observed, images, generated)

    @torch.no_grad()
    def evaluation_metrics(self, test, settings):
        """Mask IoU and patch L1 on the test images, beside the IoU of a mask that is 1 everywhere (the
        patches' share of the image): what a model that learned nothing about positions scores."""
        seed = int(settings.get("seed", 0))
        images = test.images.to(self.device)
        return {**self.scores(images, torch.Generator().manual_seed(seed)),
                "mask_iou_of_all_ones": self.key_patches(images).mask.mean().item()}

    @torch.no_grad()
    def evaluation_figures(self, test, settings):
        """Rows of: the K input patches, the generated image, its mask, the original (the completion
        figure: what the model is given, cut from the whole image, and what it makes of it)."""
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        images = test.images[:8].to(self.device)
        key = self.key_patches(images)
        generated, mask = self.generate_from_patches(key.patches, torch.Generator().manual_seed(0))
        k = self.params.patches
        titles = [f"patch {i + 1}" for i in range(k)] + ["generated", "mask", "original"]
        figure, axes = plt.subplots(len(images), k + 3, figsize=(1.2 * (k + 3), 1.2 * len(images)), squeeze=False)
        for row in range(len(images)):
            pictures = [*key.patches[row], generated[row], mask[row], images[row]]
            for col, picture in enumerate(pictures):
                array = picture.cpu().permute(1, 2, 0).numpy()
                axes[row, col].imshow(array[..., 0] if array.shape[2] == 1 else array, cmap="gray", vmin=0, vmax=1)
                axes[row, col].set_xticks([]), axes[row, col].set_yticks([])
                if row == 0:
                    axes[row, col].set_title(titles[col], fontsize=7)
        figure.tight_layout()
        return {"completions.png": figure}
