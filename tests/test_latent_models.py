"""The latent-variable family: VAE variants (conv, grayscale decoder, beta and KL warm-up,
IWAE objective) and the adversarial autoencoder."""

import pytest
import torch

from components.errors import ConfigError
from components.data.batch import Batch, DataSpec
from components.models import NotSupported, build_model, load_model, save_model
from components.models.aae import rbf_mmd2
from components.layers.pixel_likelihood import DiscretizedLogisticPixels

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 7, 5), (3, 6, 6)])
@pytest.mark.parametrize("name", ["vae", "aae"])
def test_conv_networks_reproduce_the_image_shape(name, shape):
    model = build_model(name, DataSpec.single(shape), {"architecture": "conv", "latent_dim": 3, "hidden_units": [16],
                                      "conv_channels": [4, 8]})
    x = torch.bernoulli(torch.full((5, *shape), 0.5))
    assert model.encode(x).shape == (5, 3)
    assert model.decode(model.encode(x)).shape == (5, *shape)
    samples = model.sample(4, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (4, *shape) and set(samples.unique().tolist()) <= {0.0, 1.0}


def test_discretized_logistic_is_a_distribution_over_the_levels():
    levels = 5
    pixels = DiscretizedLogisticPixels(levels)
    out = torch.tensor([[[0.3, -0.2, 1.4]], [[-1.0, -3.0, 0.5]]]).transpose(0, 1)  # (1, P=2, D=3)
    values = torch.linspace(0, 1, levels)
    # Every pixel's probabilities over the levels sum to one (log_prob sums over pixels: take one at a time).
    for d in range(3):
        total = sum(pixels.log_prob(out[..., d:d + 1], v.view(1, 1)).exp() for v in values)
        assert total.item() == pytest.approx(1.0, abs=1e-5)
    assert pixels.level_probs(out).sum(-1).allclose(torch.ones(1, 3))
    draws = pixels.sample(out.expand(2000, 2, 3), torch.Generator().manual_seed(0))
    assert set((draws * (levels - 1)).round().unique().tolist()) <= set(range(levels))
    assert draws.mean(0).allclose(pixels.mean(out)[0], atol=0.03)


def test_grayscale_vae_uses_the_discretized_decoder_and_its_bounds_are_ordered():
    torch.manual_seed(0)
    model = build_model("vae", DataSpec.single((1, 4, 4), 17), {"latent_dim": 2, "hidden_units": [16]}).eval()
    x = torch.randint(0, 17, (16, 1, 4, 4)) / 16.0
    reconstruction, kl = model.elbo_terms(x)
    assert (reconstruction <= 0).all() and (kl >= 0).all()
    elbo = torch.stack([sum(model.elbo_terms(x)[i] * s for i, s in ((0, 1), (1, -1))).mean()
                        for _ in range(20)]).mean()
    assert model.iwae_log_prob(x, 200).mean() > elbo
    samples = model.sample(8, generator=torch.Generator().manual_seed(0))
    assert set((samples * 16).round().unique().tolist()) <= set(range(17))


def test_reconstruction_is_summed_over_pixels_and_beta_weights_the_kl():
    torch.manual_seed(0)
    x = torch.bernoulli(torch.full((6, 1, 4, 4), 0.5))
    model = build_model("vae", DataSpec.single((1, 4, 4)), {"latent_dim": 2, "hidden_units": [8], "beta": 4.0})
    mean, _ = model.posterior(x)
    logits = model.decoder(mean)[:, 0]
    summed = torch.distributions.Bernoulli(logits=logits).log_prob(model.flatten(x)).sum(1)
    assert model.reconstruction_log_prob(mean, x).allclose(summed)
    torch.manual_seed(1)
    reconstruction, kl = model.elbo_terms(x)
    torch.manual_seed(1)
    loss = model.training_step(Batch(x), model.configure_optimizers(0.0))["loss"]
    assert loss == pytest.approx(-(reconstruction - 4.0 * kl).mean().item(), rel=1e-5)


def test_kl_warmup_rises_linearly_to_beta_and_survives_a_checkpoint(tmp_path):
    model = build_model("vae", DataSpec.single((1, 4, 4)), {"latent_dim": 2, "hidden_units": [8], "beta": 2.0,
                                           "kl_warmup_epochs": 4})
    weights = []
    for _ in range(3):
        model.on_epoch_start()
        weights.append(model.kl_weight())
    save_model(model, tmp_path)
    restored = load_model(tmp_path)
    for _ in range(3):
        restored.on_epoch_start()
        weights.append(restored.kl_weight())
    assert weights == [0.0, 0.5, 1.0, 1.5, 2.0, 2.0]


def test_iwae_objective_trains_and_is_what_early_stopping_watches():
    torch.manual_seed(0)
    data = torch.bernoulli(torch.rand(8, 1, 4, 4).repeat(8, 1, 1, 1))
    model = build_model("vae", DataSpec.single((1, 4, 4)), {"latent_dim": 2, "hidden_units": [16], "train_samples": 5})
    assert model.selection == ("neg_iwae5", "min")
    before = model.validation_metrics(Batch(data))["neg_iwae5"]
    optimizers = model.configure_optimizers(1e-2)
    for _ in range(60):
        model.training_step(Batch(data), optimizers)
    assert model.validation_metrics(Batch(data))["neg_iwae5"] < before - 1.0


@pytest.mark.parametrize("params", [{"architecture": "conv", "conv_channels": []},
                                    {"train_samples": 5, "beta": 2.0}, {"architecture": "rnn"}])
def test_bad_vae_configurations_are_refused(params):
    with pytest.raises(ConfigError):
        build_model("vae", DataSpec.single((1, 4, 4)), params)


def test_mmd_separates_distributions_and_not_identical_ones():
    torch.manual_seed(0)
    a, b = torch.randn(300, 2), torch.randn(300, 2)
    assert abs(rbf_mmd2(a, b).item()) < 0.02
    assert rbf_mmd2(a, b + 2.0).item() > 0.2


@pytest.mark.parametrize("prior", ["gaussian", "mixture", "uniform"])
def test_aae_codes_move_toward_the_chosen_prior(prior):
    torch.manual_seed(0)
    data = torch.bernoulli(torch.rand(16, 1, 4, 4).repeat(8, 1, 1, 1))
    model = build_model("aae", DataSpec.single((1, 4, 4)), {"latent_dim": 2, "prior": prior, "hidden_units": [32],
                                           "discriminator_units": [32]})
    prior_draws = model.prior_sample(len(data), torch.Generator().manual_seed(1))

    def distance():
        return rbf_mmd2(model.encode(data), prior_draws).item()

    before = distance()
    optimizers = model.configure_optimizers(2e-3)
    for _ in range(150):
        model.training_step(Batch(data), optimizers)
    after = distance()
    assert after < 0.5 * before, (before, after)


def test_aae_has_codes_and_samples_but_no_likelihood():
    model = build_model("aae", DataSpec.single((1, 4, 4)), {"latent_dim": 2, "hidden_units": [8], "discriminator_units": [8]})
    assert model.capabilities == {"sample", "encode", "decode"}
    with pytest.raises(NotSupported):
        model.log_prob(torch.zeros(2, 1, 4, 4))
    assert set(model.configure_optimizers(1e-3)) == {"autoencoder", "discriminator", "generator"}
