"""RNADE: a real density (integrates to 1) that never looks ahead in its ordering."""

import itertools

import pytest
import torch

from components.data.batch import DataSpec
from components.models import build_model


def randomized(**params):
    torch.manual_seed(0)
    model = build_model("rnade", DataSpec.single((1, 1, 2), 256), {"hidden_units": 4, "components": 3, **params})
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)  # moderate widths: the integration grid resolves them
    return model.eval()


def test_density_integrates_to_one():
    model = randomized()
    grid = torch.linspace(-10, 11, 2101)  # widths reach 2: the tails matter
    points = torch.cartesian_prod(grid, grid)
    integral = model.density_log_prob(points).exp().sum() * (grid[1] - grid[0]) ** 2
    assert abs(integral.item() - 1.0) < 1e-3


@pytest.mark.parametrize("ordering", ["raster", "random"])
def test_mixture_of_each_pixel_ignores_it_and_later_pixels(ordering):
    torch.manual_seed(0)
    model = build_model("rnade", DataSpec.single((1, 2, 3), 256), {"hidden_units": 5, "components": 2, "ordering": ordering})
    y = torch.rand(1, 6, requires_grad=True)
    order = model.order.tolist()
    for d in range(6):
        outputs = torch.cat([t[0, d] for t in model.mixture(y)])  # visiting step d
        for value in outputs:
            (grad,) = torch.autograd.grad(value, y, retain_graph=True)
            assert torch.all(grad[0, order[d:]] == 0)


def test_log_prob_is_the_dequantized_bound_and_samples_lie_in_range():
    model = randomized()
    x = torch.tensor([[[[0.0, 1.0]]]])
    y = model.dequantize(x, torch.Generator().manual_seed(3))
    assert 0 <= y[0, 0] < 1 / 256 and 255 / 256 <= y[0, 1] < 1  # each level fills its own bin
    torch.manual_seed(1)
    log_p = model.log_prob(x)
    torch.manual_seed(1)
    expected = model.density_log_prob(model.dequantize(x)) - 2 * torch.log(torch.tensor(256.0))
    assert torch.allclose(log_p, expected)
    samples = model.sample(50, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (50, 1, 1, 2) and samples.min() >= 0 and samples.max() <= 1


def test_rnade_on_binary_data_is_a_bound_on_the_discrete_likelihood():
    """A binary source (binarized MNIST) reaches RNADE as 2-level intensities: the dequantized
    density bounds the discrete probabilities, which then sum to at most 1 (the mass in [0, 1]^D)."""
    model = build_model("rnade", DataSpec.single((1, 2, 2), 2), {"hidden_units": 4, "components": 3}).eval()
    images = torch.tensor(list(itertools.product([0.0, 1.0], repeat=4))).reshape(16, 1, 2, 2)
    with torch.no_grad():
        bound = torch.stack([model.log_prob(images) for _ in range(200)]).exp().mean(0)  # E_u[p(y)/L^D]
    assert torch.all(bound > 0) and bound.sum() <= 1.02


def test_rnade_completion_keeps_observed_pixels_and_fills_the_rest_with_intensities():
    from components.completion import complete, lower_half_hidden

    model = build_model("rnade", DataSpec.single((1, 4, 4), 17), {"hidden_units": 6, "components": 3}).eval()
    images = torch.randint(0, 17, (20, 1, 4, 4)) / 16.0
    observed = lower_half_hidden((1, 4, 4))
    done = complete(model, images, observed, torch.Generator().manual_seed(0))
    again = complete(model, images, observed, torch.Generator().manual_seed(0))
    assert torch.equal(done, again) and torch.equal(done[:, :, :2], images[:, :, :2])
    assert done.min() >= 0 and done.max() <= 1 and not torch.equal(done[:, :, 2:], images[:, :, 2:])
