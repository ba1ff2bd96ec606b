"""What the latent-variable models with an encoder share (VAE, adversarial autoencoder).

An encoder maps an image to a vector (the code, or a posterior's parameters);
a decoder maps a latent code to the parameters of the pixel distribution
p(x | z) (`pixel_likelihood`: Bernoulli for binary data, discretized logistic
for grayscale). Both are MLPs, or convolutional stacks (3x3, stride 2, each
halving the resolution) followed by the same fully connected layers, chosen
by the `architecture` parameter. Subclasses add the prior and the training.
"""

from __future__ import annotations

import torch
from torch import nn

from components.models.base import GenerativeModel
from components.layers.pixel_likelihood import pixel_likelihood


def mlp(sizes: list[int], activation=nn.Tanh) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


def halved(size: int, times: int) -> int:
    for _ in range(times):
        size = (size + 1) // 2      # a 3x3, stride-2, padding-1 convolution rounds up
    return size


class ConvEncoder(nn.Module):
    """Strided 3x3 convolutions, then fully connected layers to `out_features`."""

    def __init__(self, image_shape, channels: list[int], hidden: list[int], out_features: int):
        super().__init__()
        c, h, w = image_shape
        layers: list[nn.Module] = []
        for c_in, c_out in zip([c, *channels[:-1]], channels):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.ReLU()]
        self.convs = nn.Sequential(*layers, nn.Flatten())
        flat = channels[-1] * halved(h, len(channels)) * halved(w, len(channels))
        self.head = mlp([flat, *hidden, out_features], nn.ReLU)

    def forward(self, x):
        return self.head(self.convs(x))


class ConvDecoder(nn.Module):
    """The encoder mirrored: fully connected layers, then stride-2 transposed convolutions
    back to the image size, then a 3x3 convolution to `params_per_pixel` maps per channel."""

    def __init__(self, image_shape, channels: list[int], hidden: list[int], latent_dim: int, params_per_pixel: int):
        super().__init__()
        c, h, w = image_shape
        n = len(channels)
        self.start_shape = (channels[-1], halved(h, n), halved(w, n))
        self.head = nn.Sequential(mlp([latent_dim, *reversed(hidden), int(torch.tensor(self.start_shape).prod())],
                                      nn.ReLU), nn.ReLU())
        layers: list[nn.Module] = []
        for i in reversed(range(n)):  # i-th upsampling restores the resolution before the i-th convolution
            target_h, target_w = halved(h, i), halved(w, i)
            c_out = channels[i - 1] if i > 0 else channels[0]
            # output_padding picks the even or odd one of the two sizes a stride-2 layer can produce
            layers += [nn.ConvTranspose2d(channels[i], c_out, 3, stride=2, padding=1,
                                          output_padding=(1 - target_h % 2, 1 - target_w % 2)), nn.ReLU()]
        self.deconvs = nn.Sequential(*layers, nn.Conv2d(channels[0], params_per_pixel * c, 3, padding=1))
        self.params_per_pixel = params_per_pixel

    def forward(self, z):
        lead = z.shape[:-1]
        maps = self.deconvs(self.head(z.reshape(-1, z.shape[-1])).reshape(-1, *self.start_shape))
        return maps.reshape(*lead, self.params_per_pixel, -1)   # (..., P, C*H*W), channels-major like images


class MLPDecoder(nn.Module):
    def __init__(self, num_pixels: int, hidden: list[int], latent_dim: int, params_per_pixel: int):
        super().__init__()
        self.net = mlp([latent_dim, *reversed(hidden), params_per_pixel * num_pixels])
        self.params_per_pixel = params_per_pixel

    def forward(self, z):
        return self.net(z).reshape(*z.shape[:-1], self.params_per_pixel, -1)


def check_architecture(params) -> None:
    """The rule across an autoencoder's architecture parameters, for its Params' `__post_init__` (the
    schema runs it: components.config.rules)."""
    if params.architecture == "conv" and not params.conv_channels:
        raise ValueError("architecture 'conv' needs at least one entry in conv_channels")


class Autoencoder(GenerativeModel):
    """Encoder, decoder and pixel likelihood; `Params` must have latent_dim, architecture,
    hidden_units and conv_channels, and run `check_architecture` in its `__post_init__`.
    `encoder_outputs` is what the encoder produces per image."""

    family = "latent"
    pixels = "any"
    capabilities = {"sample", "encode", "decode"}

    def build_networks(self, encoder_outputs: int) -> None:
        p = self.params
        self.pixel_likelihood = pixel_likelihood(self.levels)
        per_pixel = self.pixel_likelihood.num_params
        if p.architecture == "conv":
            self.encoder = ConvEncoder(self.image_shape, p.conv_channels, p.hidden_units, encoder_outputs)
            self.decoder = ConvDecoder(self.image_shape, p.conv_channels, p.hidden_units, p.latent_dim, per_pixel)
        else:
            self.encoder = mlp([self.num_pixels, *p.hidden_units, encoder_outputs])
            self.decoder = MLPDecoder(self.num_pixels, p.hidden_units, p.latent_dim, per_pixel)

    def encoder_input(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(len(x), *self.image_shape) if self.params.architecture == "conv" else self.flatten(x)

    def reconstruction_log_prob(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p(x | z), summed over pixels; z may carry extra leading sample dimensions."""
        return self.pixel_likelihood.log_prob(self.decoder(z), self.flatten(x))

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The expected image E[x | z], (n, C, H, W) in [0, 1]: what reconstructions and interpolations show."""
        return self.unflatten(self.pixel_likelihood.mean(self.decoder(z.to(self.device))))

    def prior_sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def sample(self, n, condition=None, generator=None):
        self.check_unconditional(condition)
        z = self.prior_sample(n, generator).to(self.device)
        return self.unflatten(self.pixel_likelihood.sample(self.decoder(z), generator))
