"""StarGAN (Choi, Choi, Kim, Ha, Kim & Choo, 2018): one generator translating among many domains.

G(x, c) takes the target label c, tiled over the image and concatenated to it as extra channels;
D: x -> {D_src(x), D_cls(x)} is a critic (PatchGAN output) with an auxiliary domain classifier on
the same trunk. Losses (eqs. 1-7, with the WGAN-GP adversarial loss of section 4):

    L_adv  = E_x[D_src(x)] - E_{x,c}[D_src(G(x, c))] - lambda_gp E[(||grad D_src(x_hat)||_2 - 1)^2]
    L_cls^r = E_{x,c'}[-log D_cls(c' | x)]        (real images, their own label c')
    L_cls^f = E_{x,c}[-log D_cls(c | G(x, c))]     (fakes, the target label c)
    L_rec  = E_{x,c,c'}[||x - G(G(x, c), c')||_1]
    L_D = -L_adv + lambda_cls L_cls^r,   L_G = L_adv + lambda_cls L_cls^f + lambda_rec L_rec

with lambda_gp = 10 (the shared `wgan_gp` loss), lambda_cls = 1, lambda_rec = 10, and n_critic = 5
critic updates per generator update (each training step updates D; every n_critic-th also G, as in
the authors' code; the step count is a buffer, so it survives a resume). Adam lr 1e-4, betas
(0.5, 0.999) in the paper.

Labels (`labels`): `domains`, one-hot of the domain index, classified by softmax cross-entropy;
or `attributes`, the data's binary attribute vector (several at once, multi-label), classified by
per-attribute sigmoid cross-entropy summed over attributes (the paper's CelebA setting). Target
labels are the batch's real labels shuffled (the authors' code). In `attributes` mode the model
remembers each domain's attribute vector from the batches, so `translate` also takes a domain name.

Networks (components/layers/norm_blocks.py): a residual generator with instance norm (its first
convolution zero-padded, as in the authors' code: instance norm would cancel a constant label
channel over a reflected border); a critic
without normalization (its gradient penalty is per image) and LeakyReLU(0.01), whose classifier
head is a convolution over the whole last map, as in the paper.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from torch import nn

from pydantic import Field
from components.errors import ConfigError
from components.layers.norm_blocks import PatchDiscriminator, ResnetGenerator
from components.losses.adversarial import WassersteinGP
from components.models.base import register
from components.models.families.adversarial import AdversarialModel, to_signed, to_unit


class Discriminator(PatchDiscriminator):
    """(B, C, H, W) -> (D_src per patch (B, 1, h, w), D_cls logits (B, labels))."""

    def __init__(self, in_channels, side, width, labels):
        super().__init__(in_channels, side, width, norm=False, slope=0.01)
        self.cls = nn.Conv2d(self.channels, labels, self.size)

    def forward(self, x):
        features = self.trunk(x)
        return self.patch(features), self.cls(features).flatten(1)


@register
class StarGAN(AdversarialModel):
    name = "stargan"
    capabilities = {"translate"}
    selection = None   # no samples to measure FID of: the last epoch's weights are kept
    # The paper's measure (its RaFD experiment): the error of a classifier trained on real images of each domain
    # on images translated into it (pipelines/evaluate.py)
    promotion_metric = "target_classification_error"

    @dataclasses.dataclass
    class Params:
        labels: Literal["domains", "attributes"] = "domains"
        width: Annotated[int, Field(ge=1)] = 32               # the paper's 64
        residual_blocks: Annotated[int, Field(ge=1)] = 3      # the paper's 6
        discriminator_width: Annotated[int, Field(ge=1)] = 32
        lambda_cls: Annotated[float, Field(ge=0)] = 1.0
        lambda_rec: Annotated[float, Field(ge=0)] = 10.0
        lambda_gp: Annotated[float, Field(ge=0)] = 10.0
        n_critic: Annotated[int, Field(ge=1)] = 5
        beta1: Annotated[float, Field(ge=0, lt=1)] = 0.5

    def __init__(self, spec, params):
        super().__init__(spec, params)
        field = params.labels
        spec.require(self.name, [field])
        self.label_names = spec.domain_names if field == "domains" else spec.attribute_names
        if field == "domains" and len(self.label_names) < 2:
            raise ConfigError(f"model 'stargan' with labels: domains needs at least 2 domains; data source "
                              f"{spec.source!r} has {len(self.label_names)}")
        if field == "attributes" and not self.label_names:
            raise ConfigError(f"model 'stargan' with labels: attributes: data source {spec.source!r} names none")
        c, h, w = self.image_shape
        n = len(self.label_names)
        self.generator = ResnetGenerator(c + n, c, min(h, w), params.width, params.residual_blocks,
                                         reflect_input=False)
        self.discriminator = Discriminator(c, min(h, w), params.discriminator_width, n)
        self.loss = WassersteinGP(penalty_weight=params.lambda_gp)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        # attributes mode: each domain's attribute vector as seen in training (for translate(x, domain))
        self.register_buffer("domain_attributes", torch.zeros(len(spec.domains), n))
        self.register_buffer("domain_seen", torch.zeros(len(spec.domains), dtype=torch.bool))

    # --- labels ---------------------------------------------------------------------------
    def real_labels(self, batch) -> torch.Tensor:
        """(B, n) float: one-hot domains or the attribute vectors."""
        if self.params.labels == "domains":
            return F.one_hot(batch.domains.long(), len(self.label_names)).float()
        return batch.attributes.float()

    def G(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        tiled = c[:, :, None, None].expand(-1, -1, *x.shape[2:])
        return self.generator(torch.cat([x, tiled], 1))

    def classification_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """-log D_cls(c | x): softmax cross-entropy of one-hot domains, or the sum over attributes of
        sigmoid cross-entropy, averaged over images."""
        if self.params.labels == "domains":
            return F.cross_entropy(logits, labels.argmax(1))
        return F.binary_cross_entropy_with_logits(logits, labels, reduction="sum") / len(logits)

    # --- training -------------------------------------------------------------------------
    def training_step(self, batch, optimizers):
        x, c_org = to_signed(batch.images), self.real_labels(batch)
        if self.params.labels == "attributes" and batch.domains is not None:
            with torch.no_grad():
                self.domain_attributes[batch.domains] = c_org
                self.domain_seen[batch.domains] = True
        c_trg = c_org[torch.randperm(len(x)).to(x.device)]

        src_real, cls_real = self.discriminator(x)
        fake = self.G(x, c_trg)
        src_fake, _ = self.discriminator(fake.detach())
        critic = lambda images: self.discriminator(images)[0]
        d_adv = self.loss.discriminator(src_real, src_fake) + self.loss.penalty(critic, x, fake)
        d_cls = self.classification_loss(cls_real, c_org)
        d_loss = d_adv + self.params.lambda_cls * d_cls
        self.optimize(optimizers["discriminator"], d_loss)
        out = {"d_loss": d_loss.item(), "d_cls_loss": d_cls.item(), "wasserstein": -self.loss.discriminator(
            src_real.detach(), src_fake.detach()).item()}

        self.steps += 1
        if int(self.steps) % self.params.n_critic == 0:
            src_fake, cls_fake = self.discriminator(fake)
            reconstructed = self.G(fake, c_org)
            g_cls = self.classification_loss(cls_fake, c_trg)
            g_rec = (x - reconstructed).abs().mean()
            g_loss = self.loss.generator(src_fake) + self.params.lambda_cls * g_cls + self.params.lambda_rec * g_rec
            self.optimize(optimizers["generator"], g_loss)
            out.update(g_loss=g_loss.item(), g_cls_loss=g_cls.item(), g_rec_loss=g_rec.item())
        out["loss"] = out["d_loss"] + out.get("g_loss", 0.0)
        return out

    # --- translation ----------------------------------------------------------------------
    def target_labels(self, target, n: int) -> torch.Tensor:
        """(n, labels) for a domain name or index, an attribute name, or attribute vector(s)."""
        names, domains = self.label_names, self.spec.domain_names
        if isinstance(target, str) or (isinstance(target, int) and self.params.labels == "domains"):
            if self.params.labels == "domains":
                index = names.index(target) if isinstance(target, str) and target in names else target
                if not isinstance(index, int) or not 0 <= index < len(names):
                    raise ValueError(f"stargan: unknown domain {target!r}; its domains: {', '.join(names)}")
                return F.one_hot(torch.full((n,), index), len(names)).float()
            if target in names:   # one attribute on, the others off
                return F.one_hot(torch.full((n,), names.index(target)), len(names)).float()
            if target in domains:
                d = domains.index(target)
                if not bool(self.domain_seen[d]):
                    raise ValueError(f"stargan: domain {target!r}'s attributes were never seen in training")
                return self.domain_attributes[d].cpu().expand(n, -1).clone()
            raise ValueError(f"stargan: unknown target {target!r}; attributes: {', '.join(names)}; "
                             f"domains: {', '.join(domains)}")
        vector = torch.as_tensor(target, dtype=torch.float32)
        if vector.shape[-1] != len(names) or vector.dim() > 2:
            raise ValueError(f"stargan: a target vector has one entry per {self.params.labels[:-1]} "
                             f"({', '.join(names)}); got shape {tuple(vector.shape)}")
        return vector.expand(n, -1).clone() if vector.dim() == 1 else vector

    @torch.no_grad()
    def translate(self, images, target):
        labels = self.target_labels(target, len(images)).to(self.device)
        return to_unit(self.G(self.signed(images), labels))

    @torch.no_grad()
    def evaluation_metrics(self, test, settings):
        """D_cls's own verdict on test images translated to each target (all attributes right): named
        `aux_classifier_target_accuracy`, since G was trained to satisfy this very classifier (the
        independent figure, `target_accuracy`, is components/metrics/translation.py's domain
        classifier's); and the reconstruction error of translating back."""
        field = self.params.labels
        if getattr(test, field) is None:
            return {"translation": f"not measured: the test batch carries no {field}"}
        x = test.images.to(self.device)
        c_org = self.real_labels(test.to(self.device))
        targets = torch.eye(len(self.label_names)) if field == "domains" else torch.cat(
            [torch.zeros(1, len(self.label_names)), torch.eye(len(self.label_names))])
        correct, errors = [], []
        for target in targets.to(self.device):
            c = target.expand(len(x), -1)
            fake = self.G(to_signed(x), c)
            logits = self.discriminator(fake)[1]
            predicted = (F.one_hot(logits.argmax(1), len(self.label_names)).float() if field == "domains"
                         else (logits > 0).float())
            correct.append((predicted == c).all(1).float().mean().item())
            errors.append((to_unit(self.G(fake, c_org)) - x).abs().mean().item())
        return {"aux_classifier_target_accuracy": sum(correct) / len(correct),
                "reconstruction_error": sum(errors) / len(errors)}
