"""The adversarial family: shared losses against hand-computed values, DCGAN's architecture
facts, conditional sampling of the cGAN, InfoGAN's information term and encoder."""

import math
import typing

import numpy as np
import pytest
import torch
from torch import nn

from components.errors import ConfigError
from components.data.batch import Batch, DataSpec
from components.losses.adversarial import (LOSSES, LossName, LeastSquares, NonSaturating, WassersteinGP,
                                           adversarial_loss, gradient_penalty)
from components.losses.information import information_lower_bound
from components.plots import draw
from components.metrics.clustering import unsupervised_accuracy
from components.models import NotSupported, build_model

pytestmark = pytest.mark.usefixtures("one_thread")


# --- losses -------------------------------------------------------------------------------

def test_nonsaturating_loss_is_the_cross_entropy_of_goodfellow_et_al():
    # D = sigmoid(logit): sigmoid(0) = 1/2, sigmoid(ln 3) = 3/4, sigmoid(-ln 3) = 1/4.
    d_real, d_fake = torch.tensor([0.0, math.log(3)]), torch.tensor([0.0, -math.log(3)])
    loss = NonSaturating()
    # -(log 1/2 + log 3/4)/2 - (log(1 - 1/2) + log(1 - 1/4))/2 = -log(1/2) - log(3/4) = log(8/3)
    assert loss.discriminator(d_real, d_fake).item() == pytest.approx(math.log(8 / 3))
    # -(log 1/2 + log 1/4)/2 = 1.5 log 2: the non-saturating -log D(G(z)), not log(1 - D(G(z)))
    assert loss.generator(d_fake).item() == pytest.approx(1.5 * math.log(2))
    assert NonSaturating().discriminator(torch.tensor([100.0]), torch.tensor([-100.0])).item() < 1e-30


def test_least_squares_loss_uses_a_0_b_1_c_1():
    d_real, d_fake = torch.tensor([1.0, 3.0]), torch.tensor([0.5, -1.0])
    loss = LeastSquares()
    # 1/2 ((0^2 + 2^2)/2) + 1/2 ((0.5^2 + 1^2)/2) = 1 + 0.3125
    assert loss.discriminator(d_real, d_fake).item() == pytest.approx(1.3125)
    # 1/2 (((0.5 - 1)^2 + (-1 - 1)^2)/2) = 1/2 (0.25 + 4)/2
    assert loss.generator(d_fake).item() == pytest.approx(1.0625)


def test_wasserstein_loss_and_the_drift_term():
    d_real, d_fake = torch.tensor([1.0, 3.0]), torch.tensor([0.5, -1.0])
    assert WassersteinGP().discriminator(d_real, d_fake).item() == pytest.approx(-0.25 - 2.0)
    assert WassersteinGP().generator(d_fake).item() == pytest.approx(0.25)
    # + 0.001 * (1^2 + 3^2)/2
    assert WassersteinGP(drift=0.001).discriminator(d_real, d_fake).item() == pytest.approx(-2.25 + 0.005)


def linear_critic(norm: float):
    w = torch.tensor([[[1.0, -2.0], [2.0, 4.0]]])  # (1, 2, 2), ||w|| = 5
    w = w / w.norm() * norm
    return lambda x: (x * w).flatten(1).sum(1, keepdim=True)


def test_gradient_penalty_of_linear_critics():
    real, fake = torch.randn(6, 1, 2, 2), torch.randn(6, 1, 2, 2)
    assert gradient_penalty(linear_critic(1.0), real, fake).item() == pytest.approx(0.0, abs=1e-10)
    assert gradient_penalty(linear_critic(3.0), real, fake).item() == pytest.approx(10 * (3 - 1) ** 2, rel=1e-5)
    assert WassersteinGP(penalty_weight=2.0).penalty(linear_critic(0.5), real, fake).item() == pytest.approx(
        2 * 0.25, rel=1e-5)
    assert NonSaturating().penalty(linear_critic(3.0), real, fake).item() == 0.0


def test_gradient_penalty_takes_the_norm_per_sample():
    # D(x) = ||x||^2 / 2 has gradient x; with real = fake every interpolate is the image itself.
    images = torch.zeros(2, 1, 2, 2)
    images[0, 0, 0, 0], images[1, 0, 1, 1] = 1.0, 3.0  # gradient norms 1 and 3
    penalty = gradient_penalty(lambda x: 0.5 * x.pow(2).flatten(1).sum(1), images, images)
    assert penalty.item() == pytest.approx(10 * (0 + 2 ** 2) / 2)   # a batch-wide norm would give ~46.8


def test_gradient_penalty_reaches_the_critic_weights():
    critic = nn.Linear(4, 1)
    gradient_penalty(lambda x: critic(x.flatten(1)), torch.randn(5, 1, 2, 2), torch.randn(5, 1, 2, 2)).backward()
    assert critic.weight.grad is not None and critic.weight.grad.abs().sum() > 0


def test_loss_registry():
    assert set(LOSSES) == {"nonsaturating", "lsgan", "wgan_gp"} == set(typing.get_args(LossName))
    assert isinstance(adversarial_loss("wgan_gp", drift=0.001), WassersteinGP)
    with pytest.raises(ConfigError, match="unknown adversarial loss 'hinge'.*lsgan, nonsaturating, wgan_gp"):
        adversarial_loss("hinge")
    with pytest.raises(ConfigError, match="^model 'dcgan': loss = 'hinge': must be one of nonsaturating, lsgan, "
                                          "wgan_gp$"):
        build_model("dcgan", DataSpec.single((1, 8, 8)), {"loss": "hinge"})


def test_information_bound_is_its_formula():
    logits = torch.tensor([[0.0, 0.0], [math.log(3), 0.0]])   # Q(c = 0 | x) = 1/2, 3/4
    categorical = torch.tensor([0, 0])
    mean, continuous = torch.tensor([[0.0], [1.0]]), torch.tensor([[0.5], [0.0]])
    half_log_2pi = 0.5 * math.log(2 * math.pi)
    # categorical: mean log Q + H(c) = log 2; continuous (std 1): mean -(c - mean)^2 / 2 = -0.3125, H = log 2
    expected_categorical = (math.log(0.5) + math.log(0.75)) / 2 + math.log(2)
    expected_continuous = -0.3125 - half_log_2pi + math.log(2)
    bound = information_lower_bound(logits, categorical, mean, continuous)
    assert bound.item() == pytest.approx(expected_categorical + 0.1 * expected_continuous)
    # A learned std: sigma = 2 for the first image: -0.5 (0.5/2)^2 - log 2 - half_log_2pi
    log_std = torch.tensor([[math.log(2)], [0.0]])
    expected_continuous = (-0.03125 - math.log(2) - 0.5) / 2 - half_log_2pi + math.log(2)
    bound = information_lower_bound(logits, categorical, mean, continuous, log_std, 2.0, 0.5)
    assert bound.item() == pytest.approx(2 * expected_categorical + 0.5 * expected_continuous, abs=1e-6)


def test_unsupervised_accuracy_takes_the_best_one_to_one_map():
    labels = [0, 0, 1, 1, 2, 2]
    assert unsupervised_accuracy([2, 2, 0, 0, 1, 1], labels) == 1.0
    # value 0 covers labels {0, 1}: only one of them may be mapped to it
    assert unsupervised_accuracy([0, 0, 0, 0, 1, 1], labels) == pytest.approx(4 / 6)


# --- DCGAN ----------------------------------------------------------------------------------

def dcgan(shape, **params):
    return build_model("dcgan", DataSpec.single(shape, 256), {"latent_dim": 8, "width": 4, **params})


@pytest.mark.parametrize("size, stages", [(8, 1), (28, 3), (32, 3), (64, 4)])
@pytest.mark.parametrize("channels", [1, 3])
def test_dcgan_shapes_ranges_and_stages(channels, size, stages):
    shape = (channels, size, size)
    model = dcgan(shape)
    out = model.training_step(Batch(torch.rand(4, *shape)), model.configure_optimizers(2e-4))
    assert {"d_loss", "g_loss", "d_real", "d_fake"} <= set(out)
    model.eval()
    samples = model.sample(5, generator=torch.Generator().manual_seed(1))
    assert samples.shape == (5, *shape) and samples.min() >= 0 and samples.max() <= 1
    assert torch.equal(samples, model.sample(5, generator=torch.Generator().manual_seed(1)))
    strided_up = [m for m in model.generator.modules() if isinstance(m, nn.ConvTranspose2d) and m.stride == (2, 2)]
    strided_down = [m for m in model.discriminator.modules() if isinstance(m, nn.Conv2d) and m.stride == (2, 2)]
    assert len(strided_up) == len(strided_down) == stages


def layers(model):
    return [m for m in model.modules() if not isinstance(m, nn.Sequential) and list(m.children()) == []]


def test_dcgan_follows_the_architecture_guidelines():
    model = dcgan((1, 64, 64), width=32)
    g, d = layers(model.generator), layers(model.discriminator.trunk)
    assert not any("Pool" in type(m).__name__ for m in g + d)
    assert not any(isinstance(m, nn.Linear) for m in g + d)     # all convolutional
    # every convolution is followed by batch norm, except the generator's output and the discriminator's input
    g_convs = [i for i, m in enumerate(g) if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert all(isinstance(g[i + 1], nn.BatchNorm2d) for i in g_convs[:-1])
    assert isinstance(g[g_convs[-1] + 1], nn.Tanh) and g[-1] is g[g_convs[-1] + 1]
    d_convs = [i for i, m in enumerate(d) if isinstance(m, nn.Conv2d)]
    assert isinstance(d[d_convs[0] + 1], nn.LeakyReLU)
    assert all(isinstance(d[i + 1], nn.BatchNorm2d) for i in d_convs[1:])
    assert {type(m) for m in g if not isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm2d))} == {
        nn.ReLU, nn.Tanh}
    assert all(m.negative_slope == 0.2 for m in d if isinstance(m, nn.LeakyReLU))
    # weights from N(0, 0.02); batch-norm scales N(1, 0.02), shifts 0
    weights = torch.cat([m.weight.flatten() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))])
    assert weights.std().item() == pytest.approx(0.02, rel=0.05) and abs(weights.mean().item()) < 1e-3
    scales = torch.cat([m.weight for m in model.modules() if isinstance(m, nn.BatchNorm2d)])
    assert scales.mean().item() == pytest.approx(1.0, abs=0.01) and 0.01 < scales.std().item() < 0.03
    assert all((m.bias == 0).all() for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    optimizers = model.configure_optimizers(2e-4)
    assert all(o.param_groups[0]["betas"] == (0.5, 0.999) for o in optimizers.values())
    g_params = {id(p) for p in optimizers["generator"].param_groups[0]["params"]}
    assert g_params == {id(p) for p in model.generator.parameters()}
    assert not g_params & {id(p) for p in optimizers["discriminator"].param_groups[0]["params"]}


def test_dcgan_scales_data_to_minus_one_one_and_pads_28_with_black():
    model = dcgan((1, 28, 28))
    seen = []
    model.discriminator.trunk.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    images = torch.zeros(4, 1, 28, 28)
    images[:, :, :14] = 1.0
    model.training_step(Batch(images), model.configure_optimizers(2e-4))
    real = seen[0]
    assert real.shape == (4, 1, 32, 32)
    assert torch.equal(real[:, :, 2:16, 2:30], torch.ones(4, 1, 14, 28))
    assert (real[:, :, 16:] == -1).all() and (real[:, :, :2] == -1).all() and (real[..., :2] == -1).all()
    with pytest.raises(NotSupported):
        model.sample(2, condition=1)


def test_dcgan_with_wgan_gp_uses_layer_norm_in_the_critic():
    model = dcgan((1, 32, 32), loss="wgan_gp", discriminator_steps=2)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.discriminator.modules())
    assert any(isinstance(m, nn.GroupNorm) and m.num_groups == 1 for m in model.discriminator.modules())
    before = {name: p.clone() for name, p in model.discriminator.named_parameters()}
    out = model.training_step(Batch(torch.rand(4, 1, 32, 32)), model.configure_optimizers(1e-3))
    assert math.isfinite(out["d_loss"])
    changed = {name for name, p in model.discriminator.named_parameters() if not torch.equal(before[name], p)}
    # E[D(fake)] - E[D(real)] and the gradient penalty are blind to the critic's output bias
    assert changed == set(before) - {"head.bias"}


# --- conditional GAN --------------------------------------------------------------------------

def halves(n: int, generator: torch.Generator):
    """Toy two-class 8x8 data: class 0 has its left half on, class 1 its right half (plus a little noise)."""
    labels = torch.randint(2, (n,), generator=generator)
    images = torch.zeros(n, 1, 8, 8)
    images[labels == 0, :, :, :4] = 1.0
    images[labels == 1, :, :, 4:] = 1.0
    images = (images + 0.1 * torch.rand(n, 1, 8, 8, generator=generator)).clamp(0, 1)
    return Batch(images, labels=labels)


TOY_SPEC = DataSpec.single((1, 8, 8), 256, class_names=("left", "right"), fields=("labels",))
TINY_CGAN = {"latent_dim": 4, "noise_units": 16, "label_units": 16, "hidden_units": 32,
             "discriminator_image_units": 16, "discriminator_label_units": 8, "discriminator_hidden_units": 16,
             "maxout_pieces": 3, "dropout": 0.2}


def test_cgan_needs_labels_and_its_generator_depends_on_them():
    with pytest.raises(ConfigError, match="'cgan' needs labels.*'synthetic'"):
        build_model("cgan", DataSpec.single((1, 8, 8)), TINY_CGAN)
    model = build_model("cgan", TOY_SPEC, TINY_CGAN).eval()
    z = torch.randn(3, 4)
    out0 = model.generator(z, model.one_hot(torch.zeros(3)))
    out1 = model.generator(z, model.one_hot(torch.ones(3)))
    assert not torch.allclose(out0, out1)
    a = model.sample(4, condition=1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, model.sample(4, condition=[1, 1, 1, 1], generator=torch.Generator().manual_seed(0)))
    assert torch.equal(a, model.sample(4, condition=torch.ones(4, dtype=torch.long),
                                       generator=torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError, match="4 samples with 3 labels"):
        model.sample(4, condition=[0, 1, 0])
    with pytest.raises(ValueError, match="0..1"):
        model.sample(2, condition=2)
    drawn = model.labels_for(4000, None, torch.Generator().manual_seed(0))
    assert 1900 < (drawn == 0).sum() < 2100   # uniform over the two classes


def test_cgan_samples_follow_the_asked_class():
    torch.manual_seed(0)
    model = build_model("cgan", TOY_SPEC, TINY_CGAN)
    optimizers = model.configure_optimizers(2e-3)
    data = torch.Generator().manual_seed(0)
    for _ in range(300):
        model.training_step(halves(32, data), optimizers)
    model.eval()
    for k, (on, off) in enumerate([(slice(0, 4), slice(4, 8)), (slice(4, 8), slice(0, 4))]):
        samples = model.sample(200, condition=k, generator=torch.Generator().manual_seed(k))
        assert samples[..., on].mean() > samples[..., off].mean() + 0.5, k


# --- InfoGAN ---------------------------------------------------------------------------------

TINY_INFOGAN = {"latent_dim": 4, "categorical": 2, "continuous": 2, "width": 8, "q_units": 16}


def test_infogan_information_term_is_the_bound_of_its_q_and_reaches_generator_and_q():
    model = build_model("infogan", TOY_SPEC, {**TINY_INFOGAN, "lambda_continuous": 0.3})
    categorical, continuous = model.draw_codes(16)
    features = model.discriminator.features_of(model.generate(categorical, continuous))
    out = model.q(features)
    logits, mean = out[:, :2], out[:, 2:4]
    by_hand = (torch.log_softmax(logits, 1)[torch.arange(16), categorical].mean() + math.log(2)
               + 0.3 * ((-0.5 * (continuous - mean) ** 2).sum(1).mean() - 2 * 0.5 * math.log(2 * math.pi)
                        + 2 * math.log(2)))
    information = model.information(features, categorical, continuous)
    assert information.item() == pytest.approx(by_hand.item(), rel=1e-5)
    information.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.q.parameters())
    assert model.generator.net[0].weight.grad.abs().sum() > 0
    assert {id(p) for p in model.q.parameters()} <= {
        id(p) for p in model.configure_optimizers(1e-3)["discriminator"].param_groups[0]["params"]}


def test_infogan_training_raises_the_information_bound_and_encode_has_the_documented_layout():
    torch.manual_seed(0)
    model = build_model("infogan", TOY_SPEC, TINY_INFOGAN)
    optimizers = model.configure_optimizers(2e-3)
    data = torch.Generator().manual_seed(0)
    bounds = [model.training_step(halves(32, data), optimizers)["mutual_information"] for _ in range(120)]
    first, last = sum(bounds[:10]) / 10, sum(bounds[-10:]) / 10
    # the largest L_I: log 2 (categorical) + 0.1 * 2 (log 2 - log sqrt(2 pi e)), with Q's std fixed to 1
    assert last > first + 0.3 and last <= math.log(2) + 0.2 * (math.log(2) - 0.5 * math.log(2 * math.pi)) + 1e-6
    model.eval()
    x = halves(10, data).images
    codes = model.encode(x)
    assert codes.shape == (10, 2 + 2)
    assert (codes[:, :2] >= 0).all() and torch.allclose(codes[:, :2].sum(1), torch.ones(10))
    logits, mean, log_std = model.q_parameters(model.discriminator.features_of(x * 2 - 1))
    assert torch.allclose(codes[:, :2], logits.softmax(1)) and torch.allclose(codes[:, 2:], mean)
    assert log_std is None
    # Q reads the categorical code back from images generated with it
    categorical = torch.arange(2).repeat(50)
    images = model.sample_with_codes(categorical, torch.zeros(100, 2))
    assert unsupervised_accuracy(model.encode(images)[:, :2].argmax(1).numpy(), categorical.numpy()) > 0.9


def test_infogan_samples_unconditionally_and_draws_traversals():
    model = build_model("infogan", TOY_SPEC, {**TINY_INFOGAN, "learn_std": True}).eval()
    assert model.q[-1].out_features == 2 + 2 * 2
    samples = model.sample(6, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (6, 1, 8, 8) and samples.min() >= 0 and samples.max() <= 1
    with pytest.raises(NotSupported):
        model.sample(6, condition=0)
    figures = model.evaluation_figures(halves(4, torch.Generator()), {"seed": 0})
    assert set(figures) == {"traversal_continuous_0.png", "traversal_continuous_1.png"}
    # rows = categorical values (2), columns = 9 steps, 8x8 images, 1-pixel padding, 4x scale
    assert draw(figures["traversal_continuous_0.png"]).size == ((9 * 9 + 1) * 4, (2 * 9 + 1) * 4)
    metrics = model.evaluation_metrics(halves(50, torch.Generator().manual_seed(0)), {})
    assert 0.5 <= metrics["q_accuracy_on_real"] <= 1.0   # 2 values, 2 labels: never below 1/2
    assert metrics["categorical_code_accuracy"] == "not measured: no evaluation classifier"


def test_matched_accuracy_is_the_best_one_to_one_map_of_a_confusion():
    from components.metrics.clustering import matched_accuracy

    # rows: code values, columns: classes. Best map 0 -> 1, 1 -> 0, 2 -> 2: (8 + 5 + 7) / 25.
    assert matched_accuracy([[0, 8, 2], [5, 1, 0], [1, 1, 7]]) == pytest.approx(20 / 25)
    # Each row's own best class (greedy) would take 5 + 0; one-to-one the best is 4 + 4.
    assert matched_accuracy([[5, 4], [4, 0]]) == pytest.approx(8 / 13)
    # More values than classes: one value per class, the rest count as wrong.
    assert matched_accuracy([[3, 0], [3, 0], [0, 4]]) == pytest.approx(7 / 10)


class BrightestPixel(nn.Module):
    """A stand-in evaluation classifier: the class is the brightest of the first ten pixels."""
    num_classes = 10

    def features(self, x):
        return x.flatten(1)[:, :10]

    def head(self, features):
        return features


DIGITS_SPEC = DataSpec.single((1, 8, 8), 256, class_names=tuple("0123456789"), fields=("labels",))


def one_lit_pixel(index: torch.Tensor) -> torch.Tensor:
    images = -torch.ones(len(index), 1, 8, 8)
    images.view(len(index), -1)[torch.arange(len(index)), index] = 1.0
    return images


@pytest.mark.parametrize("follows", [True, False])
def test_infogan_code_accuracy_is_judged_by_the_evaluation_classifier_on_generated_images(follows):
    from components.metrics.sample_quality import SampleJudge

    model = build_model("infogan", DIGITS_SPEC, {**TINY_INFOGAN, "categorical": 10}).eval()
    permutation = torch.randperm(10, generator=torch.Generator().manual_seed(3))

    def generate(categorical, continuous, generator=None, z=None):
        # follows: value v lights pixel permutation[v] (a relabelling Hungarian matching undoes);
        # else the pixel depends on the noise only, the code is ignored.
        lit = permutation[categorical] if follows else torch.randint(10, (len(categorical),), generator=generator)
        return one_lit_pixel(lit)

    model.generate = generate
    images = torch.rand(40, 1, 8, 8)
    judge = SampleJudge(BrightestPixel(), images, np.arange(40) % 10, 10)
    test = Batch(images, labels=torch.arange(40) % 10)
    metrics = model.evaluation_metrics(test, {"judge": judge, "num_samples": 2000, "seed": 0})
    accuracy = metrics["categorical_code_accuracy"]
    if follows:
        assert accuracy == 1.0
    else:   # chance is 1 / 10; the best map over 200 samples per value adds a little
        assert 0.07 < accuracy < 0.16


def test_infogan_default_entry_has_the_authors_learning_rate_per_optimizer():
    """openai/InfoGAN's MNIST run: Adam beta1 0.5, generator 1e-3, discriminator and Q 2e-4."""
    from components.config import load_params
    from components.schema import architecture_params, training_settings
    from components.training import Settings
    from components.training.schedules import configure_optimizers

    params = load_params()
    name, arch = architecture_params(params, "infogan")
    settings = training_settings(params, "infogan")
    model = build_model(name, DIGITS_SPEC, arch)
    optimizers = configure_optimizers(model, settings["lr"], Settings.from_dict(settings).optimizers)
    generator, discriminator = optimizers["generator"].param_groups, optimizers["discriminator"].param_groups
    assert [g["lr"] for g in generator] == [1e-3] and [g["lr"] for g in discriminator] == [2e-4]
    assert all(g["betas"][0] == 0.5 for g in generator + discriminator)
    in_discriminator = {id(p) for g in discriminator for p in g["params"]}
    assert {id(p) for p in model.q.parameters()} <= in_discriminator
    assert {id(p) for p in model.generator.parameters()} == {id(p) for g in generator for p in g["params"]}


def test_the_params_entries_build_on_the_digits():
    from components.config import load_params
    from components.schema import architecture_params, training_settings
    from components.models import pixel_format

    params = load_params()
    digits = DataSpec.single((1, 8, 8), 17, class_names=tuple("0123456789"), fields=("labels",), source="digits")
    for key in ("dcgan", "cgan", "infogan"):
        name, arch = architecture_params(params, key)
        assert pixel_format(name, params["models"][key].get("pixels")) == "grayscale"
        model = build_model(name, digits, arch)
        assert model.family == "adversarial"
        if key != "cgan":   # cgan: the paper's SGD (tests/test_conditional.py)
            assert training_settings(params, key)["lr"] == 2e-4


def test_cgan_refuses_labels_without_class_names():
    with pytest.raises(ConfigError, match="'cgan' conditions on class labels.*0 classes"):
        build_model("cgan", DataSpec.single((1, 8, 8), fields=("labels",)), TINY_CGAN)


# --- per-class FID (cgan, gan_cls) ------------------------------------------------------------

def test_per_class_fid_is_the_frechet_formula_of_each_class():
    from components.metrics.sample_quality import per_class_fid, per_class_fid_metrics

    square = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]])   # mean (1, 1), covariance 4/3 I
    real = np.concatenate([square, square + [10.0, 0.0], [[5.0, 5.0]]])
    real_labels = np.array([0] * 4 + [1] * 4 + [2])
    # asked for 0: the square doubled about (1, 1) and moved to mean (3, 3): covariance 16/3 I;
    # asked for 1: class 1's own images; asked for 2: one sample (no covariance).
    fake = np.concatenate([2 * square + 1, square + [10.0, 0.0], [[5.0, 5.0]]])
    asked = np.array([0] * 4 + [1] * 4 + [2])
    values = per_class_fid(real, real_labels, fake, asked, 3)
    # |mu_r - mu_f|^2 + tr(S_r) + tr(S_f) - 2 tr((S_r S_f)^1/2) = 8 + 8/3 + 32/3 - 2 * 2 * 8/3 = 32/3
    assert values[0] == pytest.approx(32 / 3, rel=1e-9)
    assert values[1] == pytest.approx(0.0, abs=1e-9)
    assert math.isnan(values[2])
    metrics = per_class_fid_metrics(values)
    assert metrics == pytest.approx({"fid_class_0": 32 / 3, "fid_class_1": 0.0, "per_class_fid_mean": 16 / 3},
                                    abs=1e-9)


def test_per_class_fid_of_real_images_is_zero_for_their_class_and_large_for_another():
    from components.metrics.sample_quality import per_class_fid

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 40)
    features = np.maximum(rng.normal(size=(120, 16)) + labels[:, None] * 0.7, 0)   # ReLU-like, class-shifted
    own = per_class_fid(features, labels, features, labels, 3)
    other = per_class_fid(features, labels, features, (labels + 1) % 3, 3)
    assert np.abs(own).max() < 1e-4
    assert (other > 1.0).all()


class HalvesReader(nn.Module):
    """An evaluation classifier for `halves`: features are the two halves' brightness (in percent), class
    the brighter."""

    def features(self, x):
        left, right = 100 * x[..., :4].mean((1, 2, 3)), 100 * x[..., 4:].mean((1, 2, 3))
        return torch.stack([left, right, left * right / 100], 1)

    def head(self, features):
        return features[:, :2]


def test_cgan_per_class_fid_measures_each_class_against_its_own_test_images():
    from components.metrics.sample_quality import SampleJudge, frechet_distance
    from components.models.cgan import ConditionalGAN

    test = halves(40, torch.Generator().manual_seed(0))
    by_class = [test.images[test.labels == k] for k in range(2)]
    counts = [len(images) for images in by_class]

    class Answers(ConditionalGAN):
        """Asked for class k, gives the test images of class k + shift in turn."""
        shift = 0

        def sample(self, n, condition=None, generator=None):
            asked = self.labels_for(n, condition)
            answered = ((asked + self.shift) % 2).tolist()
            drawn = [by_class[k][answered[:i].count(k) % counts[k]] for i, k in enumerate(answered)]
            return torch.stack(drawn)

    # the floor: the first test images of each class as a reference set, i.e. what `right` answers
    judge = SampleJudge(HalvesReader(), test.images, test.labels, 2, reference=(test.images, test.labels))
    settings = {"seed": 0, "num_samples": 2 * min(counts), "judge": judge}
    right = Answers(TOY_SPEC, Answers.Params(**TINY_CGAN))
    right_metrics = right.evaluation_metrics(test, settings)
    wrong = Answers(TOY_SPEC, Answers.Params(**TINY_CGAN))
    wrong.shift = 1
    wrong_metrics = wrong.evaluation_metrics(test, settings)
    per_class = min(counts)
    features = lambda images: HalvesReader().features(images).double().numpy()  # noqa: E731
    for k in range(2):
        # asked for k: the first per_class test images of class k (resp. of the other class), against
        # all of class k's test images
        assert right_metrics[f"fid_class_{k}"] == pytest.approx(
            frechet_distance(features(by_class[k]), features(by_class[k][:per_class])), rel=1e-4, abs=1e-6)
        assert wrong_metrics[f"fid_class_{k}"] == pytest.approx(
            frechet_distance(features(by_class[k]), features(by_class[1 - k][:per_class])), rel=1e-6)
        assert wrong_metrics[f"fid_class_{k}"] > 1000 * max(right_metrics[f"fid_class_{k}"], 1e-3)
    assert right_metrics["real_data_per_class_fid_mean"] == pytest.approx(right_metrics["per_class_fid_mean"],
                                                                          rel=1e-4, abs=1e-6)
    assert wrong_metrics["per_class_fid_mean"] == pytest.approx(
        (wrong_metrics["fid_class_0"] + wrong_metrics["fid_class_1"]) / 2)
    assert set(wrong.evaluation_figures(test, settings)) == {"per_class_fid.png"}
    assert right.evaluation_metrics(test, {"seed": 0, "num_samples": 8}) == {
        "per_class_fid": "not measured: no evaluation classifier or no test labels"}


def test_gan_default_entry_trains_with_the_authors_sgd_and_momentum_schedule():
    """goodfeli/adversarial's mnist.yaml: SGD lr 0.1, momentum 0.5 rising to 0.7 by epoch 250."""
    from components.config import load_params
    from components.schema import architecture_params, training_settings
    from components.training import Settings
    from components.training.schedules import configure_optimizers

    params = load_params()
    name, arch = architecture_params(params, "gan")
    settings = training_settings(params, "gan")
    model = build_model(name, DataSpec.single((1, 8, 8), 17), arch)
    model.on_epoch_start()
    optimizers = configure_optimizers(model, settings["lr"], Settings.from_dict(settings).optimizers)
    groups = [g for o in optimizers.values() for g in o.param_groups]
    assert all(isinstance(o, torch.optim.SGD) for o in optimizers.values())
    assert [g["lr"] for g in groups] == [0.1, 0.1] and [g["momentum"] for g in groups] == [0.5, 0.5]
    for _ in range(125):
        model.on_epoch_start()
    model.training_step(Batch(torch.rand(4, 1, 8, 8)), optimizers)
    assert [g["momentum"] for g in groups] == pytest.approx([0.6, 0.6])
