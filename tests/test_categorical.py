"""Autoregressive models of L-level (8-bit: 256-way softmax) pixels: exact, causal, on the grid."""

import itertools

import pytest
import torch

from components.completion import complete, lower_half_hidden
from components.data.batch import DataSpec
from components.models import build_model

CATEGORICAL = [
    ("markov_ar", {"order_k": 2}),
    ("pixelcnn", {"features": 4, "residual_blocks": 1, "output_features": 8}),
    ("row_lstm", {"features": 3, "layers": 1, "output_features": 8}),
    ("diagonal_bilstm", {"features": 3, "layers": 2, "output_features": 8}),
]


def randomized(name, params, shape, levels):
    model = build_model(name, DataSpec.single(shape, levels), params)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.5)
    return model.eval()


def every_image(shape, levels):
    values = torch.arange(levels, dtype=torch.float32) / (levels - 1)
    pixels = shape[0] * shape[1] * shape[2]
    return torch.cartesian_prod(*[values] * pixels).reshape(-1, *shape)


@pytest.mark.parametrize("name,params", CATEGORICAL)
def test_256_way_probabilities_sum_to_one_over_every_image(name, params):
    """All 256^2 images of a 1x2 grid: the joint (hence each 256-way conditional) sums to 1."""
    model = randomized(name, params, (1, 1, 2), 256)
    with torch.no_grad():
        log_p = model.log_prob(every_image((1, 1, 2), 256)).double()
    assert abs(torch.logsumexp(log_p, 0).exp().item() - 1.0) < 1e-4
    first_pixel = torch.logsumexp(log_p.reshape(256, 256), dim=1)   # marginal of the first pixel
    assert abs(torch.logsumexp(first_pixel, 0).exp().item() - 1.0) < 1e-4


@pytest.mark.parametrize("name,params", CATEGORICAL)
def test_categorical_probabilities_sum_to_one_on_a_2x2_grid(name, params):
    """5 levels on 2x2 (625 images): rows and columns interact, unlike on a 1x2 strip."""
    model = randomized(name, params, (1, 2, 2), 5)
    with torch.no_grad():
        total = torch.logsumexp(model.log_prob(every_image((1, 2, 2), 5)).double(), 0).exp()
    assert abs(total.item() - 1.0) < 1e-4


@pytest.mark.parametrize("name,params", CATEGORICAL)
def test_categorical_conditionals_ignore_current_and_later_pixels(name, params):
    model = randomized(name, params, (1, 3, 3), 256)
    order = model.order.tolist()
    x = (torch.randint(0, 256, (1, 9)) / 255.0).requires_grad_(True)
    logits = model.conditionals(x)
    assert logits.shape == (1, 9, 256)
    for d, pixel in enumerate(order):
        (grad,) = torch.autograd.grad(logits[0, pixel].sum(), x, retain_graph=True)
        assert torch.all(grad[0, order[d:]] == 0), f"pixel {pixel} depends on {order[d:]}"


@pytest.mark.parametrize("name,params", CATEGORICAL)
def test_categorical_samples_lie_on_the_intensity_grid_and_are_reproducible(name, params):
    model = randomized(name, params, (1, 3, 3), 17)
    first = model.sample(5, generator=torch.Generator().manual_seed(4))
    again = model.sample(5, generator=torch.Generator().manual_seed(4))
    assert first.shape == (5, 1, 3, 3) and torch.equal(first, again)
    assert torch.allclose(first * 16, torch.round(first * 16)) and first.min() >= 0 and first.max() <= 1


def test_categorical_completion_samples_the_exact_conditional():
    model = randomized("pixelcnn", CATEGORICAL[1][1], (1, 2, 2), 3)
    upper = torch.tensor([1.0, 0.5])
    images = torch.cat([upper, torch.zeros(2)]).reshape(1, 1, 2, 2).repeat(4000, 1, 1, 1)
    done = complete(model, images, lower_half_hidden((1, 2, 2)), torch.Generator().manual_seed(1)).reshape(4000, 4)
    assert torch.all(done[:, :2] == upper)
    lowers = torch.tensor(list(itertools.product([0.0, 0.5, 1.0], repeat=2)))
    with torch.no_grad():
        joint = model.log_prob(torch.cat([upper.expand(9, 2), lowers], 1).reshape(9, 1, 2, 2)).exp()
    for lower, p in zip(lowers, joint / joint.sum()):
        assert abs((done[:, 2:] == lower).all(1).float().mean() - p) < 0.03


def test_markov_ar_parameter_counts_for_binary_and_8_bit_pixels():
    model = build_model("markov_ar", DataSpec.single((1, 28, 28), 256), {"order_k": 3})
    assert sum(p.numel() for p in model.parameters()) == 784 * 256 * 4
    counts = model.parameter_counts(784, 3, levels=256)
    assert counts == {"markov_ar": 784 * 256 * 4, "fully_independent": 784 * 255, "fully_dependent": "256^784 - 1"}
    assert model.parameter_counts(784, 3)["markov_ar"] == 784 * 4


@pytest.mark.parametrize("levels", [2, 17])
@pytest.mark.parametrize("name,params", CATEGORICAL)
def test_one_pixels_conditionals_equal_the_full_pass(name, params, levels):
    """Sampling and completion ask for one pixel at a time (the raster models compute only the
    rows down to it): the same numbers as the whole-image pass."""
    model = randomized(name, params, (1, 4, 5), levels)
    x = torch.randint(0, levels, (3, 20)).float() / (levels - 1)
    full = model.conditionals(x)
    for pixel in range(20):
        assert torch.allclose(model.pixel_conditionals(x, pixel), full[:, pixel], atol=1e-5)
