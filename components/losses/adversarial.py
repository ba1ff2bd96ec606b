"""The adversarial losses, each as its paper writes it, on the discriminator's outputs.

Every loss gives the discriminator's (critic's) loss and the generator's loss,
both to be minimized, and a `penalty` on the discriminator's inputs (zero
except for WGAN-GP). A model computes

    d_loss = loss.discriminator(D(x), D(G(z))) + loss.penalty(D, x, G(z))
    g_loss = loss.generator(D(G(z)))

* `nonsaturating` (Goodfellow et al. 2014): D outputs a logit, D(x) = sigmoid(logit);
  L_D = -E[log D(x)] - E[log(1 - D(G(z)))], L_G = -E[log D(G(z))] (the
  non-saturating generator loss of section 3, strong gradients early on).
* `lsgan` (Mao et al. 2017, eq. 2 with a = 0, b = c = 1): D outputs a real number;
  L_D = 1/2 E[(D(x) - b)^2] + 1/2 E[(D(G(z)) - a)^2], L_G = 1/2 E[(D(G(z)) - c)^2].
* `wgan_gp` (Gulrajani et al. 2017, algorithm 1): D is a critic;
  L_D = E[D(G(z))] - E[D(x)] + lambda E[(||grad D(x_hat)||_2 - 1)^2], x_hat = e x + (1 - e) G(z),
  e ~ U(0, 1) per sample, lambda = 10; L_G = -E[D(G(z))]. With `drift` > 0 the
  critic also pays drift * E[D(x)^2] (Karras et al. 2018, epsilon = 0.001), which
  keeps its outputs from wandering far from zero.
"""

from __future__ import annotations

from typing import Callable, Literal

import torch
import torch.nn.functional as F

from components.errors import ConfigError

Critic = Callable[[torch.Tensor], torch.Tensor]
LossName = Literal["nonsaturating", "lsgan", "wgan_gp"]   # the names of LOSSES, for typed params

KARRAS_DRIFT = 0.001   # epsilon_drift of Karras et al. 2018


class AdversarialLoss:
    name: str

    def discriminator(self, d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def generator(self, d_fake: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def penalty(self, critic: Critic, real: torch.Tensor, fake: torch.Tensor,
                generator: torch.Generator | None = None) -> torch.Tensor:
        return real.new_zeros(())

    def probability_real(self, d: torch.Tensor) -> torch.Tensor | None:
        """D's belief that its input is real, where the loss defines one (for monitoring)."""
        return None


class NonSaturating(AdversarialLoss):
    name = "nonsaturating"

    def discriminator(self, d_real, d_fake):
        # -log sigmoid(l) = softplus(-l) and -log(1 - sigmoid(l)) = softplus(l), without overflow.
        return F.softplus(-d_real).mean() + F.softplus(d_fake).mean()

    def generator(self, d_fake):
        return F.softplus(-d_fake).mean()

    def probability_real(self, d):
        return torch.sigmoid(d)


class LeastSquares(AdversarialLoss):
    name = "lsgan"

    def __init__(self, a: float = 0.0, b: float = 1.0, c: float = 1.0):
        self.a, self.b, self.c = a, b, c   # fake label, real label, what G wants D to say of fakes

    def discriminator(self, d_real, d_fake):
        return 0.5 * (d_real - self.b).pow(2).mean() + 0.5 * (d_fake - self.a).pow(2).mean()

    def generator(self, d_fake):
        return 0.5 * (d_fake - self.c).pow(2).mean()


def gradient_penalty(critic: Critic, real: torch.Tensor, fake: torch.Tensor, weight: float = 10.0,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """lambda E[(||grad_x D(x_hat)||_2 - 1)^2], the norm taken per sample over all its pixels, at
    x_hat = e x + (1 - e) x_fake with one e ~ U(0, 1) per sample (Gulrajani et al. 2017)."""
    e = torch.rand(len(real), *([1] * (real.dim() - 1)), generator=generator).to(real)
    x_hat = (e * real.detach() + (1 - e) * fake.detach()).requires_grad_(True)
    # create_graph: the penalty is a function of D's weights, and the critic's update differentiates it.
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    norms = grad.flatten(1).norm(2, dim=1)
    return weight * (norms - 1).pow(2).mean()


class WassersteinGP(AdversarialLoss):
    name = "wgan_gp"

    def __init__(self, penalty_weight: float = 10.0, drift: float = 0.0):
        self.penalty_weight, self.drift = penalty_weight, drift

    def discriminator(self, d_real, d_fake):
        loss = d_fake.mean() - d_real.mean()
        if self.drift:
            loss = loss + self.drift * d_real.pow(2).mean()
        return loss

    def generator(self, d_fake):
        return -d_fake.mean()

    def penalty(self, critic, real, fake, generator=None):
        return gradient_penalty(critic, real, fake, self.penalty_weight, generator)


LOSSES: dict[str, type[AdversarialLoss]] = {cls.name: cls for cls in (NonSaturating, LeastSquares, WassersteinGP)}


def adversarial_loss(name: str, **options) -> AdversarialLoss:
    """The loss registered as `name`, e.g. adversarial_loss("wgan_gp", drift=KARRAS_DRIFT)."""
    if name not in LOSSES:
        raise ConfigError(f"unknown adversarial loss {name!r}; available: {', '.join(sorted(LOSSES))}")
    return LOSSES[name](**options)
