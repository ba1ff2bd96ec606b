"""Puzzle-GAN (Donghoon Lee, Sangdoo Yun, Sungjoon Choi, Hwiyeon Yoo, Ming-Hsuan Yang & Songhwai Oh,
ECCV 2018, arXiv 1703.10730, "Unsupervised Holistic Image Generation from Key Local Patches"): the
whole image, and where its parts belong, from a few of its patches. Settings and losses as the
authors' code has them (github.com/hellbell/KeyPatchGan: models/model.py, main.py, options.py).

Given K key patches {x_1, ..., x_K} of an image x (no positions), a shared part encoder E maps each
to a code; the codes are summed, so the order of the patches does not matter, and with a noise
vector z ~ U(-1, 1) a decoder outputs the whole image x_hat and a mask M_hat of where the patches
lie: (x_hat, M_hat) = G(E(x_1) + ... + E(x_K), z). With M the true mask (1 on the windows the
patches were cut from), images in [-1, 1] and M_hat in [0, 1], the generator minimizes

    L_G = L_adv + lambda_S L_S + lambda_A L_A,
    L_S = ||M_hat - M||_1,                    (spatial: the mask against the patches' true windows)
    L_A = ||M_hat * x_hat - M * x||_1,        (appearance: the patches restored where the mask is,
                                               so it trains the predicted mask as well as the image)

each L1 a sum over pixels, averaged over the batch. The discriminator judges images only: real x
against generated x_hat and, as in the authors' code, against mismatched composites made of a real
image with another image's pixels pasted in its key windows (M * x' + (1 - M) * x and
M * x + (1 - M) * x'), so that patches that do not fit their surroundings read as fake; the three
kinds of fake share one mean. Loss: the shared adversarial losses (components/losses/adversarial.py;
the authors' BCE is `nonsaturating`), the generator stepping once every `discriminator_steps`
discriminator steps (the authors: 2). The authors' weights fall log-linearly over the epochs, from
1e-2 to 1e-4 on L1 summed over a batch of 64 (main.py: np.logspace(-2, -4, epochs)): per image,
lambda from 0.64 to 0.0064 (`lambda_spatial`, `lambda_appearance`: first and last value, over
`lambda_epochs`). Adam lr 2e-4, betas (0.5, 0.999) for both players.

Key patches. The paper takes the patches from an object-proposal method. Its stand-in here is a
stated objectness score: the gradient energy of a window, the sum over its pixels and channels of
the squared Sobel responses (S_x * x)^2 + (S_y * x)^2. The K windows of highest energy are taken
greedily, each one not overlapping those taken before (ties: the first in raster order), so the
selection is deterministic. On 8x8 digits: 3 patches of 3x3; on 32x32 photos: 8x8 (`patch_size`
0 = max(3, side // 4)). Given observed pixels (`complete`), only windows of observed pixels compete,
scored by the Sobel responses that read observed pixels only, so nothing hidden leaks in.

Networks (departure: the authors' U-Net, whose separate mask network feeds the image network, is one
decoder here): the encoder is two 3x3 convolutions (the second of stride 2) and a linear code; the
decoder is the DCGAN generator of the adversarial family (image channels plus one mask channel,
tanh; the mask read as (tanh + 1) / 2 = sigmoid(2a), the authors' sigmoid), the discriminator its
DCGAN discriminator on the image channels.

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
from components.errors import ConfigError
from components.losses.adversarial import LossName
from components.models.base import register
from components.models.families.adversarial import (AdversarialModel, DCGANDiscriminator, DCGANGenerator,
                                                    to_signed, to_unit)
from components.pictures import Table

SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


# [first epoch's, last epoch's] value of a loss weight
Weights = Annotated[list[Annotated[float, Field(ge=0)]], Field(min_length=2, max_length=2)]


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
    """L_S = ||M_hat - M||_1: summed over pixels, averaged over the batch."""
    return (predicted_mask - true_mask).abs().flatten(1).sum(1).mean()


def appearance_loss(generated: torch.Tensor, predicted_mask: torch.Tensor, images: torch.Tensor,
                    true_mask: torch.Tensor) -> torch.Tensor:
    """L_A = ||M_hat * x_hat - M * x||_1 (images in [-1, 1]): summed over pixels and channels, averaged
    over the batch."""
    return (predicted_mask * generated - true_mask * images).abs().flatten(1).sum(1).mean()


def patch_l1(generated: torch.Tensor, images: torch.Tensor, true_mask: torch.Tensor) -> torch.Tensor:
    """The evaluation's figure: the mean absolute error (images in [0, 1]) on the true windows, per
    channel, ||M * (x_hat - x)||_1 / ||M||_1: whether the patches came back where they belong."""
    m = true_mask.expand_as(images)
    return ((generated - images).abs() * m).sum() / m.sum().clamp_min(1)


def mismatched(images: torch.Tensor, true_mask: torch.Tensor) -> torch.Tensor:
    """The authors' extra fakes: each image's key windows filled from the next image of the batch, and the
    rest of it so filled around its own key windows (M x' + (1 - M) x, M x + (1 - M) x')."""
    other = images.roll(1, 0)
    return torch.cat([torch.lerp(images, other, true_mask), torch.lerp(other, images, true_mask)])


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


@register
class PuzzleGAN(AdversarialModel):
    name = "puzzle_gan"
    capabilities = {"complete"}
    selection = None   # no samples to measure FID of: the last epoch's weights are kept
    completes_from = "key_patches"
    promotion_metric = "patch_l1"   # the patches restored where they belong: placement and appearance at once

    @dataclasses.dataclass
    class Params:
        patches: Annotated[int, Field(ge=1)] = 3              # K, the paper's default
        patch_size: Annotated[int, Field(ge=0)] = 0           # side of a key patch; 0 = max(3, image side // 4)
        code_dim: Annotated[int, Field(ge=1)] = 64            # per patch (summed over the patches)
        noise_dim: Annotated[int, Field(ge=0)] = 8
        width: Annotated[int, Field(ge=1)] = 32               # encoder, decoder and discriminator widths
        extra_layers: Annotated[int, Field(ge=0)] = 1  # stride-1 layers at 4x4 in decoder and discriminator (8x8 depth)
        # lambda_S and lambda_A at the first epoch and from epoch `lambda_epochs` on, log-linear between
        lambda_spatial: Weights = dataclasses.field(default_factory=lambda: [0.64, 0.0064])
        lambda_appearance: Weights = dataclasses.field(default_factory=lambda: [0.64, 0.0064])
        lambda_epochs: Annotated[int, Field(ge=1)] = 25        # the authors' 25 epochs
        mismatched_fakes: bool = True                          # the composites as fakes for the discriminator
        discriminator_steps: Annotated[int, Field(ge=1)] = 2    # per generator step
        loss: LossName = "nonsaturating"
        beta1: Annotated[float, Field(ge=0, lt=1)] = 0.5

    def __init__(self, spec, params):
        super().__init__(spec, params)
        c, h, w = self.image_shape
        self.patch_size = params.patch_size or max(3, min(h, w) // 4)
        if self.patch_size > min(h, w):
            raise ConfigError(f"model 'puzzle_gan': patches of {self.patch_size}x{self.patch_size} do not fit "
                              f"{h}x{w} images")
        self.encoder = PartEncoder(c, self.patch_size, params.width, params.code_dim)
        self.decoder = DCGANGenerator(params.code_dim + params.noise_dim, (c + 1, h, w), params.width,
                                      params.extra_layers)
        self.discriminator = DCGANDiscriminator((c, h, w), params.width, params.extra_layers,
                                                norm="layer" if params.loss == "wgan_gp" else "batch")
        self.build_loss()
        self.register_buffer("epochs_started", torch.tensor(0))
        self.register_buffer("steps", torch.tensor(0))
        self.generator_losses: dict[str, float] = {}   # the last generator step's, reported until the next

    def generator_parameters(self):
        return [*self.encoder.parameters(), *self.decoder.parameters()]

    def on_epoch_start(self):
        self.epochs_started += 1

    def weights(self) -> tuple[float, float]:
        """(lambda_S, lambda_A) of the current epoch: log-linear from the first values to the last."""
        t = min(1.0, (max(1, int(self.epochs_started)) - 1) / max(1, self.params.lambda_epochs - 1))
        return tuple(first * (last / first) ** t if first > 0 and last > 0 else first + (last - first) * t
                     for first, last in (self.params.lambda_spatial, self.params.lambda_appearance))

    def key_patches(self, images: torch.Tensor, observed: torch.Tensor | None = None) -> KeyPatches:
        return key_patches(images, self.params.patches, self.patch_size, observed)

    def generate(self, patches: torch.Tensor, generator: torch.Generator | None = None):
        """(B, K, C, s, s) in [0, 1] -> signed image (B, C, H, W) and mask (B, 1, H, W) in [0, 1]."""
        b, k = patches.shape[:2]
        if k != self.params.patches:
            raise ValueError(f"puzzle_gan was trained on {self.params.patches} patches per image, got {k}")
        codes = self.encoder(to_signed(patches.flatten(0, 1))).reshape(b, k, -1).sum(1)
        z = (torch.rand(b, self.params.noise_dim, generator=generator) * 2 - 1).to(codes)
        out = self.decoder(torch.cat([codes, z], 1))
        return out[:, :-1], to_unit(out[:, -1:])

    def training_step(self, batch, optimizers):
        x, D = to_signed(batch.images), self.discriminator
        key = self.key_patches(batch.images)
        self.steps += 1
        generator_step = int(self.steps) % self.params.discriminator_steps == 0
        with torch.set_grad_enabled(generator_step):
            generated, mask = self.generate(key.patches)
        fakes = generated.detach()
        if self.params.mismatched_fakes and len(x) > 1:
            fakes = torch.cat([fakes, mismatched(x, key.mask)])
        d_loss = self.loss.discriminator(D(x), D(fakes)) + self.loss.penalty(D, x, generated.detach())
        self.optimize(optimizers["discriminator"], d_loss)
        if generator_step:
            lambda_spatial, lambda_appearance = self.weights()
            spatial = spatial_loss(mask, key.mask)
            appearance = appearance_loss(generated, mask, x, key.mask)
            g_loss = self.loss.generator(D(generated)) + lambda_spatial * spatial + lambda_appearance * appearance
            self.optimize(optimizers["generator"], g_loss)
            self.generator_losses = {"g_loss": g_loss.item(), "spatial_loss": spatial.item(),
                                     "appearance_loss": appearance.item()}
        return {"d_loss": d_loss.item(), **self.generator_losses}

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
        return {"mask_iou": iou.mean().item(), "patch_l1": patch_l1(to_unit(generated), images, key.mask).item()}

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
        images = test.images[:8].to(self.device)
        key = self.key_patches(images)
        generated, mask = self.generate_from_patches(key.patches, torch.Generator().manual_seed(0))
        rows = [[*key.patches[i], generated[i], mask[i], images[i]] for i in range(len(images))]
        titles = [f"patch {i + 1}" for i in range(self.params.patches)] + ["generated", "mask", "original"]
        return {"completions.png": Table([[p.cpu().numpy() for p in row] for row in rows], titles)}
