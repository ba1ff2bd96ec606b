"""Text-to-image GAN: GAN-CLS with GAN-INT (Reed et al., 2016).

A caption t is encoded to phi(t); each network compresses phi(t) by a fully
connected layer with leaky ReLU (128-d in the paper, `embedding_dim` here).
The generator draws x = G(z, phi(t)) from the DCGAN generator
(components/models/families/adversarial.py) fed with [z, compressed phi(t)];
the discriminator runs the DCGAN trunk down to 4x4, replicates the compressed
embedding over the 4x4 map, concatenates it depthwise, and scores the pair by a
1x1 convolution with leaky ReLU and a 4x4 convolution (section 4).

Matching-aware discriminator (GAN-CLS, algorithm 1): with s_r = D(x, h) for a
real image and its caption, s_w = D(x, h_wrong) for a real image and another
image's caption, and s_f = D(G(z, h), h),

    L_D = log s_r + (log(1 - s_w) + log(1 - s_f)) / 2    (maximized),
    L_G = log s_f                                        (maximized),

so a realistic image that does not match its text counts as fake. GAN-INT
adds to the generator's loss fakes from interpolated embeddings
h_int = beta t1 + (1 - beta) t2 of two captions of the batch (beta = 0.5),
which D must also judge real: the embedding manifold between captions is
covered although no image has such a caption. (The paper adds the term to
"the generator objective"; D sees no real image for h_int.)

Text encoder. The paper's char-CNN-RNN was pretrained with the deep structured
joint embedding of Reed et al. 2016a ("Learning Deep Representations of
Fine-Grained Visual Descriptions") and kept fixed while the GAN trained; no
pretrained weights can be downloaded here, so the model pretrains its own in
its first `text_pretraining_steps` steps. Encoder (a departure in form, not in
role): a word embedding and a bidirectional GRU over the caption's tokens.
Joint embedding: an image encoder theta (a DCGAN discriminator trunk with
`text_features` outputs, used only for this) and the compatibility
F(v, t) = theta(v) . phi(t); Reed et al. 2016a's symmetric structured loss

    L = 1/N sum_n [ max_y (Delta(y_n, y) + F_t(v_n, y) - F_t(v_n, y_n))
                  + max_y (Delta(y_n, y) + F_v(t_n, y) - F_v(t_n, y_n)) ]

with Delta the 0-1 loss, F_t(v, y) the mean of F(v, t) over the batch's
captions of class y and F_v(t, y) that over the batch's images of class y
(the paper's expectations over a class's texts and images, taken within the
batch). Classes are the batch's labels; without labels, identical captions
form a class. The encoder and theta have their own optimizer, `text_encoder`
(`training.optimizers.text_encoder.lr` sets its rate). During pretraining the
GAN trains alongside on the (detached) embeddings of the encoder as it stands;
afterwards the encoder is frozen, as the paper's was.
`text_finetune: true` keeps training the encoder after pretraining, by the
discriminator's matching-aware loss at the `text_encoder` optimizer's rate.
`text_pretraining_steps: 0` (the class default, kept for callers with a few
unlabelled captions; params.yaml's entry pretrains): no joint embedding, the
encoder trained by the discriminator's matching-aware loss throughout (through
the `text_encoder` optimizer, stepped with D's), whose s_w term forces the
embedding to carry what distinguishes captions that fit an image from those
that do not.

Mismatching captions are another image's caption in the batch (the batch
rolled by one): as in the paper, such a caption can happen to describe the
same class, which only softens the s_w term for those pairs.

`sample(n, condition=captions)`: one string for all n samples or n strings;
words outside the vocabulary map to <unk>, so any text gets an answer.
Without a condition, samples follow training captions (a bank of the last
`caption_bank` captions seen in training, saved with the weights). Selection
asks for the validation split's captions and scores the samples by intra-FID,
so an epoch whose samples ignore their captions is not kept
(components/training/selection.py).

Evaluation: the test split's captions use only phrasings held out of training
(components/data/captions.py); `phrasings_of` tells them from the training
ones by the templates the test captions match. For each class k the same noise
is drawn with captions naming k in the held-out phrasings and in the training
ones; the evaluation classifier's accuracy on each is `heldout_caption_accuracy`
and `train_caption_accuracy` (the gap: what the text encoder fails to carry
over to wordings it never read). The held-out samples also give the per-class
FID, the class grid (one row per class) and, from pairs of held-out captions,
the GAN-INT interpolation figure: G(z, (1 - t) phi(c1) + t phi(c2)), one z per
row, t from 0 to 1 along it.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from torch import nn

from pydantic import Field
from components.errors import ConfigError
from components.data.captions import NOUNS, TEMPLATES, class_words
from components.losses.adversarial import AdversarialLoss
from components.models.base import NotSupported, register
from components.models.families.adversarial import (AdversarialModel, DCGANDiscriminator, DCGANGenerator,
                                                    dcgan_init, per_class_fid, per_class_fid_figure,
                                                    per_class_fid_metrics, to_signed, to_unit)
from components.pictures import LabelledRows

GAN_INT_BETA = 0.5   # the paper's interpolation weight
INTERPOLATION_STEPS = 10


def caption_text(spec, template: int, label: int) -> str:
    """Template `template` of components/data/captions.py naming class `label` (no attributes)."""
    return TEMPLATES[template].format(name=class_words(spec.class_names[label]), noun=NOUNS.get(spec.source, "image"))


def phrasings_of(spec, captions, labels) -> dict[str, list[int]] | None:
    """The caption templates the test captions use (`heldout`: training never read them) and the
    others (`train`); None when some test caption is no template's (not the data layer's captions)."""
    if captions is None or labels is None or not spec.class_names:
        return None
    used = set()
    for caption, label in zip(captions, labels.tolist()):
        matched = {t for t in range(len(TEMPLATES)) if caption.split(",")[0] == caption_text(spec, t, label)}
        if not matched:
            return None
        used |= matched
    seen = [t for t in range(len(TEMPLATES)) if t not in used]
    return {"heldout": sorted(used), "train": seen} if seen else None


def matching_aware_discriminator_loss(loss: AdversarialLoss, s_real: torch.Tensor, s_wrong: torch.Tensor,
                                      s_fake: torch.Tensor) -> torch.Tensor:
    """The real pair counts once, the mismatching and the generated pairs half each (algorithm 1):
    for the non-saturating loss -log s_r - (log(1 - s_w) + log(1 - s_f)) / 2."""
    return 0.5 * (loss.discriminator(s_real, s_wrong) + loss.discriminator(s_real, s_fake))


class MultiOptimizer:
    """Several optimizers stepped on one loss (what `optimize` needs of an optimizer)."""

    def __init__(self, *optimizers):
        self.optimizers = optimizers
        self.param_groups = [g for o in optimizers for g in o.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for optimizer in self.optimizers:
            optimizer.step()


def structured_hinge(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """mean_n max_y (Delta(y_n, y) + scores[n, y] - scores[n, y_n]), Delta the 0-1 loss (0 at y = y_n)."""
    true = scores.gather(1, target[:, None])
    margins = 1 + scores - true
    margins = margins.scatter(1, target[:, None], 0.0)
    return margins.max(1).values.clamp(min=0).mean()


def joint_embedding_loss(images: torch.Tensor, texts: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Reed et al. 2016a's symmetric structured loss on image features theta(v) (B, D), text features
    phi(t) (B, D) and class labels (B,): each image classified by the mean compatibility with each
    class's captions, each caption by that with each class's images (classes present in the batch)."""
    classes, index = labels.unique(return_inverse=True)
    members = F.one_hot(index, len(classes)).to(images.dtype)          # (B, C)
    counts = members.sum(0)[:, None]
    text_means, image_means = members.T @ texts / counts, members.T @ images / counts
    # mean_t F(v, t) over class y's captions = theta(v) . mean phi(t): F is linear in each argument
    return structured_hinge(images @ text_means.T, index) + structured_hinge(texts @ image_means.T, index)


class TextEncoder(nn.Module):
    """Token ids (B, T), 0-padded -> phi(t) (B, 2 * hidden): the last states of a bidirectional GRU."""

    def __init__(self, vocabulary_size: int, word_dim: int, hidden: int):
        super().__init__()
        self.words = nn.Embedding(vocabulary_size, word_dim, padding_idx=0)
        self.rnn = nn.GRU(word_dim, hidden, batch_first=True, bidirectional=True)
        self.features = 2 * hidden

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        # An empty caption still gets one (padding) step, so every text has an embedding.
        lengths = (tokens != 0).sum(1).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(self.words(tokens), lengths, batch_first=True,
                                                   enforce_sorted=False)
        _, last = self.rnn(packed)                    # (2, B, hidden): forward and backward final states
        return torch.cat([last[0], last[1]], 1)


def compressor(features: int, embedding_dim: int) -> nn.Module:
    return nn.Sequential(nn.Linear(features, embedding_dim), nn.LeakyReLU(0.2))


class TextConditionalGenerator(nn.Module):
    def __init__(self, text_features, embedding_dim, latent_dim, image_shape, width, extra_layers):
        super().__init__()
        self.compress = compressor(text_features, embedding_dim)
        self.net = DCGANGenerator(latent_dim + embedding_dim, image_shape, width, extra_layers)

    def forward(self, z, phi):
        return self.net(torch.cat([z, self.compress(phi)], 1))


class TextConditionalDiscriminator(nn.Module):
    def __init__(self, text_features, embedding_dim, image_shape, width, extra_layers):
        super().__init__()
        self.compress = compressor(text_features, embedding_dim)
        dcgan = DCGANDiscriminator(image_shape, width, extra_layers)
        self.pad, self.trunk = dcgan.pad, dcgan.trunk
        channels = dcgan.features // 16
        self.joint = nn.Sequential(nn.Conv2d(channels + embedding_dim, channels, 1, bias=False),
                                   nn.BatchNorm2d(channels), nn.LeakyReLU(0.2, True), nn.Conv2d(channels, 1, 4))
        dcgan_init(self.joint)

    def forward(self, x, phi):
        features = self.trunk(self.pad(x))
        text = self.compress(phi)[:, :, None, None].expand(-1, -1, *features.shape[2:])
        return self.joint(torch.cat([features, text], 1)).flatten(1)


@register
class GANCLS(AdversarialModel):
    name = "gan_cls"
    capabilities = {"sample", "conditional_sample"}
    condition = "captions"
    selection = ("intra_fid", "min")
    ema_modules = ("generator",)

    @dataclasses.dataclass
    class Params:
        latent_dim: Annotated[int, Field(ge=1)] = 100          # the paper's z
        embedding_dim: Annotated[int, Field(ge=1)] = 128       # compressed caption embedding (the paper's 128)
        word_dim: Annotated[int, Field(ge=1)] = 64
        text_hidden: Annotated[int, Field(ge=1)] = 128         # GRU state per direction
        width: Annotated[int, Field(ge=1)] = 64
        extra_layers: Annotated[int, Field(ge=0)] = 0
        # weight of the GAN-INT term in G's loss (0: GAN-CLS alone)
        interpolation_weight: Annotated[float, Field(ge=0)] = 1.0
        caption_bank: Annotated[int, Field(ge=1)] = 512        # training captions kept for unconditional sampling
        # steps of joint-embedding pretraining of the text encoder (Reed et al. 2016a), then frozen or
        # fine-tuned; 0: no pretraining, the encoder trained by the discriminator's loss throughout
        text_pretraining_steps: Annotated[int, Field(ge=0)] = 0
        # after pretraining: the encoder fixed (the paper) or fine-tuned by D's loss at its optimizer's rate
        text_finetune: bool = False
        # the matching-aware discriminator needs a real and a fake side: no WGAN critic (wgan_gp)
        loss: Literal["nonsaturating", "lsgan"] = "nonsaturating"
        beta1: Annotated[float, Field(ge=0, lt=1)] = 0.5

    def __init__(self, spec, params):
        super().__init__(spec, params)
        if len(spec.vocabulary) < 3 or spec.caption_length < 1:
            raise ConfigError(f"model 'gan_cls' reads captions, but data source {spec.source!r} has no caption "
                              "vocabulary (set data.captions: true)")
        self.build_loss()
        p = params
        self.text_encoder = TextEncoder(len(spec.vocabulary), p.word_dim, p.text_hidden)
        self.generator = TextConditionalGenerator(self.text_encoder.features, p.embedding_dim, p.latent_dim,
                                                  self.image_shape, p.width, p.extra_layers)
        self.discriminator = TextConditionalDiscriminator(self.text_encoder.features, p.embedding_dim,
                                                          self.image_shape, p.width, p.extra_layers)
        # theta(v) of the joint embedding: used for the text encoder's pretraining only
        self.image_encoder = DCGANDiscriminator(self.image_shape, p.width, p.extra_layers,
                                                outputs=self.text_encoder.features)
        self.register_buffer("text_steps", torch.zeros((), dtype=torch.int64))   # pretraining steps done
        self.register_buffer("bank", torch.zeros(p.caption_bank, spec.caption_length, dtype=torch.int64))
        self.register_buffer("banked", torch.zeros((), dtype=torch.int64))   # captions ever put in the bank

    def configure_optimizers(self, lr):
        betas = (self.params.beta1, 0.999)
        return {**super().configure_optimizers(lr),
                "text_encoder": torch.optim.Adam([*self.text_encoder.parameters(), *self.image_encoder.parameters()],
                                                 lr=lr, betas=betas)}

    @property
    def pretraining(self) -> bool:
        """Whether the text encoder is still in its joint-embedding pretraining."""
        return int(self.text_steps) < self.params.text_pretraining_steps

    def class_labels(self, batch, tokens: torch.Tensor) -> torch.Tensor:
        """The batch's labels, or (without them) one class per distinct caption."""
        if batch.labels is not None:
            return batch.labels.to(tokens.device)
        return tokens.unique(dim=0, return_inverse=True)[1]

    def pretraining_step(self, real, tokens, labels, optimizer) -> float:
        # theta(v) on the unit sphere: Reed et al. 2016a's image features were a fixed CNN's, so only phi
        # could meet the margins; a trained theta would meet them by growing and leave phi's classes close
        loss = joint_embedding_loss(F.normalize(self.image_encoder(real), dim=1), self.embed(tokens), labels)
        self.optimize(optimizer, loss)
        self.text_steps += 1
        return loss.item()

    def tokens(self, captions: list[str]) -> torch.Tensor:
        length = self.spec.caption_length
        return torch.tensor([self.spec.tokenize(c, length) for c in captions], dtype=torch.int64,
                            device=self.device)

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.text_encoder(tokens)

    def remember(self, tokens: torch.Tensor) -> None:
        size = len(self.bank)
        if size == 0:
            return
        positions = (self.banked + torch.arange(len(tokens), device=tokens.device)) % size
        self.bank[positions[-size:]] = tokens[-size:, :self.bank.shape[1]]
        self.banked += len(tokens)

    def training_step(self, batch, optimizers):
        real = to_signed(batch.images)
        tokens = batch.caption_tokens if batch.caption_tokens is not None else self.tokens(batch.captions)
        self.remember(tokens.detach())
        terms = {}
        if self.pretraining:
            terms["text_loss"] = self.pretraining_step(real, tokens, self.class_labels(batch, tokens),
                                                       optimizers["text_encoder"])
        # the encoder learns from D's loss: without pretraining, or after it when fine-tuned
        joint = self.params.text_pretraining_steps == 0 or (self.params.text_finetune and not self.pretraining)
        phi = self.embed(tokens) if joint else self.embed(tokens).detach()
        wrong = phi.roll(1, 0)                      # another image's caption
        z = self.noise(len(real))
        fake = self.generator(z, phi.detach())
        s_real, s_wrong = self.discriminator(real, phi), self.discriminator(real, wrong)
        s_fake = self.discriminator(fake.detach(), phi)
        d_loss = matching_aware_discriminator_loss(self.loss, s_real, s_wrong, s_fake)
        if joint:   # one loss, two optimizers: D's and the text encoder's, each at its own rate
            self.optimize(MultiOptimizer(optimizers["discriminator"], optimizers["text_encoder"]), d_loss)
        else:
            self.optimize(optimizers["discriminator"], d_loss)

        g_loss, g_terms = self.generator_loss(z, phi.detach())
        self.optimize(optimizers["generator"], g_loss)
        return {"loss": d_loss.item() + g_loss.item(), "d_loss": d_loss.item(), "g_loss": g_loss.item(), **terms,
                **{k: v.item() for k, v in g_terms.items()}, **self.beliefs(s_real, s_fake),
                "d_wrong": self.belief(s_wrong)}

    def belief(self, s: torch.Tensor) -> float:
        """D's mean verdict on real images given mismatching captions (low once D reads the text)."""
        return self.beliefs(s, s)["d_real"]

    def generator_loss(self, z: torch.Tensor, phi: torch.Tensor):
        """GAN-CLS's generator term, plus GAN-INT's on the embeddings halfway between two captions."""
        cls_term = self.loss.generator(self.discriminator(self.generator(z, phi), phi))
        between = GAN_INT_BETA * phi + (1 - GAN_INT_BETA) * phi.roll(1, 0)
        int_term = self.loss.generator(self.discriminator(self.generator(z.roll(1, 0), between), between))
        return cls_term + self.params.interpolation_weight * int_term, {"g_cls": cls_term, "g_int": int_term}

    @torch.no_grad()
    def validation_metrics(self, batch):
        real = to_signed(batch.images)
        phi = self.embed(batch.caption_tokens if batch.caption_tokens is not None else self.tokens(batch.captions))
        fake = self.generator(self.noise(len(real)), phi)
        metrics = self.beliefs(self.discriminator(real, phi), self.discriminator(fake, phi))
        metrics["d_wrong"] = self.belief(self.discriminator(real, phi.roll(1, 0)))
        return metrics

    def captions_for(self, n: int, condition, generator=None) -> torch.Tensor:
        """The token ids `sample` draws for (see the module docstring)."""
        if condition is None:
            kept = int(min(self.banked, len(self.bank)))
            if kept == 0:
                raise NotSupported("gan_cls samples images of captions: pass condition=<text or n texts> "
                                   "(this model has seen no training captions to draw from)")
            return self.bank[torch.randint(kept, (n,), generator=generator).to(self.bank.device)]
        captions = [condition] * n if isinstance(condition, str) else [str(c) for c in condition]
        if len(captions) != n:
            raise ValueError(f"gan_cls: asked for {n} samples with {len(captions)} captions")
        return self.tokens(captions)

    @torch.no_grad()
    def sample(self, n, condition=None, generator=None):
        phi = self.embed(self.captions_for(n, condition, generator))
        return to_unit(self.generator(self.noise(n, generator), phi))

    @torch.no_grad()
    def interpolate(self, first: str, second: str, steps: int = 8,
                    generator: torch.Generator | None = None) -> torch.Tensor:
        """One z, embeddings moved from `first`'s to `second`'s: (steps, C, H, W) in [0, 1]."""
        phi = self.embed(self.tokens([first, second]))
        weights = torch.linspace(0, 1, steps, device=phi.device)[:, None]
        between = (1 - weights) * phi[0] + weights * phi[1]
        z = self.noise(1, generator).expand(steps, -1)
        return to_unit(self.generator(z, between))

    # --- evaluation ------------------------------------------------------------
    def phrased_samples(self, templates: list[int], per_class: int, generator: torch.Generator):
        """`per_class` samples for each class in turn, captioned in `templates` (cycled), and the classes
        asked for; the noise depends on `generator` only, so two phrasings get the same z."""
        asked = torch.arange(self.spec.num_classes).repeat_interleave(per_class)
        captions = [caption_text(self.spec, templates[i % len(templates)], int(k)) for i, k in enumerate(asked)]
        return self.sample(len(asked), condition=captions, generator=generator), asked

    def evaluation_metrics(self, test, settings):
        phrasings, judge = phrasings_of(self.spec, test.captions, test.labels), settings.get("judge")
        if phrasings is None or judge is None:
            return {"caption_accuracy": "not measured: " + ("no evaluation classifier" if phrasings else
                                                            "the test captions are not components/data/captions.py's")}
        per_class = max(2, int(settings.get("num_samples", 500)) // self.spec.num_classes)
        metrics = {}
        for split in ("heldout", "train"):
            generator = torch.Generator().manual_seed(int(settings.get("seed", 0)))
            samples, asked = self.phrased_samples(phrasings[split], per_class, generator)
            metrics[f"{split}_caption_accuracy"] = judge.accuracy(samples.cpu(), asked.numpy())
        held_out = lambda n, generator: self.phrased_samples(phrasings["heldout"], n, generator)  # noqa: E731
        return {**metrics, **per_class_fid_metrics(per_class_fid(self, held_out, settings))}

    def evaluation_figures(self, test, settings, columns: int = 10):
        phrasings = phrasings_of(self.spec, test.captions, test.labels)
        if phrasings is None:
            return {}
        template, classes = phrasings["heldout"][0], self.spec.num_classes
        seed = int(settings.get("seed", 0))
        samples, _ = self.phrased_samples([template], columns, torch.Generator().manual_seed(seed))
        rows = [caption_text(self.spec, template, k) for k in range(classes)]
        figures = {"class_samples.png": LabelledRows(samples.cpu().numpy(), rows, columns,
                                                     "captions in a phrasing held out of training")}
        pairs = [(rows[k], rows[(k + 1) % classes]) for k in range(min(classes, 10))]
        generator = torch.Generator().manual_seed(seed)
        walks = torch.cat([self.interpolate(a, b, INTERPOLATION_STEPS, generator).cpu() for a, b in pairs])
        figures["caption_interpolation.png"] = LabelledRows(
            walks.numpy(), [f"{a} -> {b}" for a, b in pairs], INTERPOLATION_STEPS,
            "GAN-INT: G(z, (1 - t) phi(c1) + t phi(c2)), t = 0 .. 1, one z per row")
        held_out = lambda n, g: self.phrased_samples(phrasings["heldout"], n, g)  # noqa: E731
        figures.update(per_class_fid_figure(self, per_class_fid(self, held_out, settings)))
        return figures
