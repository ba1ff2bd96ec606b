"""CycleGAN (Zhu, Park, Isola & Efros, 2017): unpaired translation between two domains X and Y.

Two generators G: X -> Y and F: Y -> X and two discriminators D_Y (real y vs G(x)) and
D_X (real x vs F(y)), trained on the full objective (eq. 3)

    L(G, F, D_X, D_Y) = L_GAN(G, D_Y, X, Y) + L_GAN(F, D_X, Y, X) + lambda L_cyc(G, F),
    L_cyc(G, F) = E_x[||F(G(x)) - x||_1] + E_y[||G(F(y)) - y||_1]                       (eq. 2)

with lambda = 10, plus the identity loss of section 5.2,
L_identity = E_y[||G(y) - y||_1] + E_x[||F(x) - x||_1], weighted 0.5 lambda = 5. L_GAN is
least squares (section 4): G minimizes E_x[(D_Y(G(x)) - 1)^2]; D_Y minimizes
E_y[(D_Y(y) - 1)^2] + E_x[D_Y(G(x))^2], divided by 2. The shared `lsgan` loss has both halves
(components/losses/adversarial.py), so the generators' adversarial terms are doubled here to keep
the paper's balance against lambda. The L1 norms are means over pixels, as in the authors' code.

The discriminators see a history of generated images (Shrivastava et al. 2017): a pool of 50;
until it is full every generated image is stored and shown; then each one, with probability
1/2, is shown and left out, or swapped for a random stored image which is shown instead. The
pool is kept in buffers, so it is part of `state_dict()` and a resumed run sees the same pool.

Networks (components/layers/norm_blocks.py): residual generators with instance norm and PatchGAN
discriminators, sized down for 8x8 and 32x32 images. Adam lr 2e-4, betas (0.5, 0.999); the paper
keeps the rate for 100 epochs and decays it linearly to zero over the next 100, i.e. in
params.yaml `training: {lr: 0.0002, schedule: {kind: linear_decay, decay_fraction: 0.5}}`.

Data: exactly two domains (`data.domains`), X the first and Y the second, in unpaired batches.
`translate(images, target)` applies G for target Y (name or index 1) and F for target X, so the
images are taken to come from the other domain. With `known_mapping` naming a data transform
(components/data/domains.py, e.g. `thicken` for digits -> thick digits), evaluation reports the
mean absolute error of G(x) against that true image of x.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Literal

import torch

from pydantic import Field
from components.errors import ConfigError
from components.data.batch import Batch
from components.data.domains import TRANSFORMS
from components.layers.norm_blocks import PatchDiscriminator, ResnetGenerator
from components.losses.adversarial import adversarial_loss
from components.models.base import register
from components.models.families.adversarial import AdversarialModel, to_signed, to_unit


class ImagePool(torch.nn.Module):
    """The history of generated images a discriminator is shown (Shrivastava et al. 2017)."""

    def __init__(self, size: int, image_shape):
        super().__init__()
        self.size = size
        self.register_buffer("images", torch.zeros(size, *image_shape))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def query(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.size == 0:
            return images
        shown = []
        for image in images:
            if self.count < self.size:
                self.images[self.count] = image
                self.count += 1
                shown.append(image)
            elif torch.rand((), generator=generator) < 0.5:
                i = int(torch.randint(self.size, (), generator=generator))
                shown.append(self.images[i].clone())
                self.images[i] = image
            else:
                shown.append(image)
        return torch.stack(shown)


def l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).abs().mean()


@register
class CycleGAN(AdversarialModel):
    name = "cyclegan"
    capabilities = {"translate"}
    selection = None   # no samples to measure FID of: the last epoch's weights are kept
    requires = {"domains"}
    unpaired_domains = True
    promotion_metric = "translation_fid"   # translations against the target domain's real images (pipelines/evaluate.py)

    @dataclasses.dataclass
    class Params:
        width: Annotated[int, Field(ge=1)] = 32               # the paper's 64 filters next to the image, sized down
        residual_blocks: Annotated[int, Field(ge=1)] = 3      # the paper's 6 (128 px) or 9 (256 px)
        discriminator_width: Annotated[int, Field(ge=1)] = 32
        lambda_cycle: Annotated[float, Field(ge=0)] = 10.0
        lambda_identity: Annotated[float, Field(ge=0)] = 5.0  # 0.5 lambda_cycle (section 5.2); 0 disables it
        pool_size: Annotated[int, Field(ge=0)] = 50
        beta1: Annotated[float, Field(ge=0, lt=1)] = 0.5
        known_mapping: Literal[("", *TRANSFORMS)] = ""  # a data transform that is the true X -> Y map ("" = none known)

    def __init__(self, spec, params):
        super().__init__(spec, params)
        if len(spec.domains) != 2:
            raise ConfigError(f"model 'cyclegan' translates between exactly 2 domains; data source "
                              f"{spec.source!r} has {len(spec.domains)} ({', '.join(spec.domain_names)})")
        c, h, w = self.image_shape
        side = min(h, w)
        self.G = ResnetGenerator(c, c, side, params.width, params.residual_blocks)   # X -> Y
        self.F = ResnetGenerator(c, c, side, params.width, params.residual_blocks)   # Y -> X
        self.D_X = PatchDiscriminator(c, side, params.discriminator_width)
        self.D_Y = PatchDiscriminator(c, side, params.discriminator_width)
        self.pool_X = ImagePool(params.pool_size, self.image_shape)   # of F(y), shown to D_X
        self.pool_Y = ImagePool(params.pool_size, self.image_shape)   # of G(x), shown to D_Y
        self.loss = adversarial_loss("lsgan")

    def generator_parameters(self):
        return [*self.G.parameters(), *self.F.parameters()]

    def discriminator_parameters(self):
        return [*self.D_X.parameters(), *self.D_Y.parameters()]

    def cycle_loss(self, x, y, reconstructed_x, reconstructed_y) -> torch.Tensor:
        """lambda (||F(G(x)) - x||_1 + ||G(F(y)) - y||_1)."""
        return self.params.lambda_cycle * (l1(reconstructed_x, x) + l1(reconstructed_y, y))

    def identity_loss(self, x, y, F_of_x, G_of_y) -> torch.Tensor:
        """lambda_identity (||G(y) - y||_1 + ||F(x) - x||_1)."""
        return self.params.lambda_identity * (l1(G_of_y, y) + l1(F_of_x, x))

    def split(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch.by_domain(2)
        return to_signed(x.images), to_signed(y.images)

    def training_step(self, batch, optimizers):
        x, y = self.split(batch)
        fake_y, fake_x = self.G(x), self.F(y)
        cycle = self.cycle_loss(x, y, self.F(fake_y), self.G(fake_x))
        identity = (self.identity_loss(x, y, self.F(x), self.G(y)) if self.params.lambda_identity
                    else x.new_zeros(()))
        # 2x: the shared lsgan generator term is 1/2 E[(D - 1)^2], the paper's is E[(D - 1)^2]
        adversarial = 2 * (self.loss.generator(self.D_Y(fake_y)) + self.loss.generator(self.D_X(fake_x)))
        g_loss = adversarial + cycle + identity
        self.optimize(optimizers["generator"], g_loss)

        shown_y, shown_x = self.pool_Y.query(fake_y.detach()), self.pool_X.query(fake_x.detach())
        d_loss = (self.loss.discriminator(self.D_Y(y), self.D_Y(shown_y))
                  + self.loss.discriminator(self.D_X(x), self.D_X(shown_x)))
        self.optimize(optimizers["discriminator"], d_loss)
        return {"loss": g_loss.item() + d_loss.item(), "g_loss": g_loss.item(), "d_loss": d_loss.item(),
                "cycle_loss": cycle.item(), "identity_loss": identity.item()}

    @torch.no_grad()
    def validation_metrics(self, batch):
        """The cycle error of every image (x -> G -> F, y -> F -> G) in [0, 1] pixel units, averaged over
        the batch: the trainer weights each batch by its size, so a batch of one domain counts too."""
        if batch.domains is None:
            return {}
        images, back = to_signed(batch.images), torch.empty_like(batch.images)
        for domain, there, home in ((0, self.G, self.F), (1, self.F, self.G)):
            rows = batch.domains == domain
            if rows.any():
                back[rows] = home(there(images[rows]))
        return {"cycle_error": l1(back, images).item() / 2}

    def domain_index(self, target) -> int:
        names = self.spec.domain_names
        if isinstance(target, str):
            if target not in names:
                raise ValueError(f"cyclegan: unknown domain {target!r}; its domains: {', '.join(names)}")
            return names.index(target)
        index = int(target)
        if index not in (0, 1):
            raise ValueError(f"cyclegan: domain index {index} out of range: it translates between 2 domains "
                             f"({', '.join(names)})")
        return index

    @torch.no_grad()
    def translate(self, images, target):
        network = self.G if self.domain_index(target) == 1 else self.F
        return to_unit(network(self.signed(images)))

    @torch.no_grad()
    def evaluation_metrics(self, test, settings):
        if test.domains is None:
            return {"translation": "not measured: the test batch carries no domains"}
        x, y = (part.images for part in test.by_domain(2))
        metrics = {"cycle_error_x": l1(self.translate(self.translate(x, 1), 0), x).item(),
                   "cycle_error_y": l1(self.translate(self.translate(y, 0), 1), y).item()}
        if self.params.known_mapping:
            truth = torch.from_numpy(TRANSFORMS[self.params.known_mapping].apply(x.cpu().numpy()))
            metrics["known_mapping_error"] = l1(self.translate(x, 1).cpu(), truth).item()
            metrics["known_mapping_error_of_identity"] = l1(x.cpu(), truth).item()   # doing nothing scores this
        return metrics
