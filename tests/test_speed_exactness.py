"""The fast paths compute exactly what the plain ones do.

* NADE / RNADE: the one-pass blocked log-likelihood (components/layers/nade.py) against plain
  per-pixel autograd implementations kept here: log-likelihoods and gradients to 1e-5 (float64).
* PixelCNN / Row LSTM / Diagonal BiLSTM: the cached sampler's conditionals (`step_conditionals`) equal
  the full pass at every pixel (float64, to rounding), on tiny images of several shapes and levels
  with several layers; sampling and completion draw the same images as the full-pass loop for a seed.
"""

import math

import pytest
import torch

from components.completion import complete, lower_half_hidden
from components.layers.nade import tied_log_prob
from components.data.batch import DataSpec
from components.models import build_model
from components.models.nade import bernoulli_log_prob


# --- plain references ----------------------------------------------------------

def reference_nade_log_prob(model, x):
    """NADE by the running sum, one pixel at a time, through autograd."""
    xo = model.flatten(x)[:, model.order]
    a, log_p = model.c.expand(len(xo), -1), 0
    for d in range(model.num_pixels):
        logit = torch.sigmoid(a) @ model.V[d] + model.b[d]
        log_p = log_p - torch.nn.functional.binary_cross_entropy_with_logits(logit, xo[:, d], reduction="none")
        a = a + xo[:, d:d + 1] * model.W[:, d]
    return log_p


def reference_rnade_density_log_prob(model, y):
    yo = y[:, model.order]
    a, log_p, K = model.c.expand(len(yo), -1), 0, model.params.components
    for d in range(model.num_pixels):
        logits, mu, log_sigma = (torch.sigmoid(model.rho[d] * a) @ model.V[d].T + model.b[d]).split(K, dim=1)
        log_sigma = log_sigma.clamp(-7.0, 3.0)
        log_normal = (-0.5 * ((yo[:, d:d + 1] - mu) / log_sigma.exp()) ** 2 - log_sigma
                      - 0.5 * math.log(2 * math.pi))
        log_p = log_p + torch.logsumexp(torch.log_softmax(logits, -1) + log_normal, dim=-1)
        a = a + yo[:, d:d + 1] * model.W[:, d]
    return log_p


def randomized64(name, shape, params, levels=2):
    torch.manual_seed(0)
    model = build_model(name, DataSpec.single(shape, levels), params).double()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.7)
    return model


def assert_same_value_and_gradients(model, fast, reference, weights):
    fast_value = fast()
    fast_grads = torch.autograd.grad((weights * fast_value).sum(), list(model.parameters()))
    ref_value = reference()
    ref_grads = torch.autograd.grad((weights * ref_value).sum(), list(model.parameters()))
    torch.testing.assert_close(fast_value, ref_value, rtol=0, atol=1e-5)
    for (name, _), f, r in zip(model.named_parameters(), fast_grads, ref_grads):
        torch.testing.assert_close(f, r, rtol=0, atol=1e-5, msg=name)


# A mean loss (uniform weights: the gradient computed in the forward pass, scaled) and any other
# weights (the pass rerun with them).
WEIGHTS = [torch.full((6,), -1 / 6, dtype=torch.float64), torch.linspace(-2, 3, 6, dtype=torch.float64)]


@pytest.mark.parametrize("weights", WEIGHTS)
@pytest.mark.parametrize("ordering", ["raster", "random"])
def test_nade_log_prob_and_gradients_equal_the_per_pixel_reference(ordering, weights):
    # 5 x 7 = 35 pixels: not a multiple of the block size, so the last block is partial.
    model = randomized64("nade", (1, 5, 7), {"hidden_units": 6, "ordering": ordering})
    x = torch.bernoulli(torch.rand(6, 1, 5, 7, generator=torch.Generator().manual_seed(1))).double()
    assert_same_value_and_gradients(model, lambda: model.log_prob(x), lambda: reference_nade_log_prob(model, x),
                                    weights)


@pytest.mark.parametrize("weights", WEIGHTS)
@pytest.mark.parametrize("ordering", ["raster", "random"])
def test_rnade_density_and_gradients_equal_the_per_pixel_reference(ordering, weights):
    model = randomized64("rnade", (1, 5, 7), {"hidden_units": 6, "components": 3, "ordering": ordering}, 256)
    with torch.no_grad():
        model.b[:, 6:] = -3 + model.b[:, 6:]   # some log widths below the clamp, whose gradient is zero
    y = torch.rand(6, 35, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert_same_value_and_gradients(model, lambda: model.density_log_prob(y),
                                    lambda: reference_rnade_density_log_prob(model, y), weights)


@pytest.mark.parametrize("block", [1, 3, 8, 64])
def test_nade_one_pass_is_exact_for_any_block_size(block):
    model = randomized64("nade", (1, 5, 7), {"hidden_units": 6})
    x = torch.bernoulli(torch.rand(6, 1, 5, 7, generator=torch.Generator().manual_seed(1))).double()
    fast = lambda: tied_log_prob(model.flatten(x), model.W, model.c, model.V[:, None], model.b[:, None], None,
                                 bernoulli_log_prob, block)
    assert_same_value_and_gradients(model, fast, lambda: reference_nade_log_prob(model, x), WEIGHTS[1])


def test_nade_log_prob_is_the_same_without_gradients():
    model = randomized64("nade", (1, 5, 7), {"hidden_units": 6})
    x = torch.bernoulli(torch.rand(6, 1, 5, 7, generator=torch.Generator().manual_seed(1))).double()
    with torch.no_grad():
        torch.testing.assert_close(model.log_prob(x), reference_nade_log_prob(model, x), rtol=0, atol=1e-5)


def test_nade_and_rnade_keep_full_precision_under_autocast():
    """Mixed-precision training (train.precision: bf16) leaves the one pass in float32: same numbers."""
    for name, params, levels in [("nade", {"hidden_units": 6}, 2), ("rnade", {"hidden_units": 6, "components": 3}, 256)]:
        model = randomized64(name, (1, 5, 7), params, levels).float()
        x = torch.bernoulli(torch.rand(6, 1, 5, 7, generator=torch.Generator().manual_seed(1)))
        torch.manual_seed(3)
        plain = model.log_prob(x)
        torch.manual_seed(3)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = model.log_prob(x)
        assert torch.equal(plain, mixed)


# --- cached sampling --------------------------------------------------------------

RASTER = [("pixelcnn", {"features": 3, "residual_blocks": 3, "output_features": 5}),
          ("row_lstm", {"features": 3, "layers": 3, "output_features": 5}),
          ("row_lstm", {"features": 2, "layers": 2, "kernel": 5, "output_features": 5}),
          ("diagonal_bilstm", {"features": 3, "layers": 3, "output_features": 5})]


@pytest.mark.parametrize("levels", [2, 4])
@pytest.mark.parametrize("shape", [(1, 4, 4), (1, 5, 3), (1, 3, 5)])
@pytest.mark.parametrize("name,params", RASTER)
def test_cached_step_conditionals_equal_the_full_pass_at_every_pixel(name, params, shape, levels):
    model = randomized64(name, shape, params, levels).eval()
    D = shape[1] * shape[2]
    x = torch.randint(0, levels, (3, D), generator=torch.Generator().manual_seed(2)).double() / (levels - 1)
    with torch.no_grad():
        full = model.conditionals(x)
        cache = {}
        for step in range(D):
            torch.testing.assert_close(model.step_conditionals(x, step, cache), full[:, step], rtol=1e-12,
                                       atol=1e-12, msg=f"pixel {step}")


@pytest.mark.parametrize("name,params", RASTER)
def test_cached_sampling_draws_what_the_full_pass_draws_with_the_same_seed(name, params):
    """The cached sampler and today's loop (one full pass per pixel) give the same images for a seed."""
    model = randomized64(name, (1, 4, 5), params, 4).float().eval()
    cached = model.sample(6, generator=torch.Generator().manual_seed(5))
    x, generator = torch.zeros(6, 20), torch.Generator().manual_seed(5)
    with torch.no_grad():
        for pixel in range(20):
            x[:, pixel] = model.draw(model.pixel_conditionals(x, pixel), generator)
    assert torch.equal(cached, model.unflatten(x))
    assert torch.equal(cached, model.sample(6, generator=torch.Generator().manual_seed(5)))


@pytest.mark.parametrize("name,params", RASTER)
def test_completion_through_the_cache_draws_what_the_full_pass_draws(name, params):
    """Completion asks only for the missing pixels (the cache computes the skipped ones on the way):
    the same images as today's loop with one full pass per missing pixel, for a seed."""
    model = randomized64(name, (1, 4, 5), params, 4).float().eval()
    images = torch.randint(0, 4, (6, 1, 4, 5), generator=torch.Generator().manual_seed(3)).float() / 3
    observed = torch.rand(6, 1, 4, 5, generator=torch.Generator().manual_seed(4)) < 0.5
    observed[:3] = lower_half_hidden((1, 4, 5))
    cached = complete(model, images, observed, torch.Generator().manual_seed(5))
    x, known, generator = model.flatten(images.clone()), model.flatten(observed), torch.Generator().manual_seed(5)
    with torch.no_grad():
        for pixel in range(20):
            if (~known[:, pixel]).any():
                draw = model.draw(model.pixel_conditionals(x, pixel), generator)
                x[:, pixel] = torch.where(known[:, pixel], x[:, pixel], draw)
    assert torch.equal(cached, model.unflatten(x))
