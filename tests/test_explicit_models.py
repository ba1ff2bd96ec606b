"""Facts every exact-likelihood model must satisfy, on a 3x3 grid."""

import pytest
import torch

from components.data.batch import Batch, DataSpec
from components.models import build_model

EXPLICIT = [
    ("bernoulli", {}),
    ("nade", {"hidden_units": 7}),
    ("nade", {"hidden_units": 7, "ordering": "random", "ordering_seed": 3}),
    ("markov_ar", {"order_k": 1}),
    ("markov_ar", {"order_k": 3, "ordering": "random"}),
    ("pixelcnn", {"features": 4, "residual_blocks": 2, "output_features": 8}),
    ("row_lstm", {"features": 3, "layers": 2, "output_features": 8}),
    ("diagonal_bilstm", {"features": 3, "layers": 2, "output_features": 8}),
]
AUTOREGRESSIVE = [(n, p) for n, p in EXPLICIT if n != "bernoulli"]


def randomized(name, params, shape=(1, 3, 3)):
    """A model with random (non-trivial) parameters and statistics."""
    model = build_model(name, DataSpec.single(shape), params)
    if name == "bernoulli":
        model.training_step(Batch(torch.bernoulli(torch.rand(50, *shape))), {})
    else:
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0, 0.5 if name in ("pixelcnn", "row_lstm", "diagonal_bilstm") else 1.5)
    return model.eval()


@pytest.mark.parametrize("name,params", EXPLICIT)
def test_probabilities_sum_to_one_over_all_binary_images(name, params, all_binary_images):
    model = randomized(name, params)
    total = torch.logsumexp(model.log_prob(all_binary_images).double(), dim=0).exp()
    assert abs(total.item() - 1.0) < 1e-5


@pytest.mark.parametrize("name,params", AUTOREGRESSIVE)
def test_conditional_ignores_current_and_later_pixels(name, params):
    model = randomized(name, params)
    order = model.order.tolist()
    uses_the_past = 0
    for x in torch.bernoulli(torch.full((4, 1, 9), 0.5)):  # several inputs: ReLUs can hide a path in one
        x.requires_grad_(True)
        for d, pixel in enumerate(order):
            (grad,) = torch.autograd.grad(model.conditionals(x)[0, pixel], x)
            later = order[d:]  # the pixel itself and everything after it in the ordering
            assert torch.all(grad[0, later] == 0), f"pixel {pixel} depends on {later}"
            uses_the_past += d > 0 and bool(grad[0, order[:d]].abs().sum() > 0)
    assert uses_the_past >= 0.75 * 4 * (len(order) - 1)  # and the conditionals do use earlier pixels


def test_markov_ar_sees_exactly_the_k_previous_pixels():
    model = randomized("markov_ar", {"order_k": 2})
    x = torch.bernoulli(torch.full((1, 9), 0.5)).requires_grad_(True)
    for d in range(9):
        (grad,) = torch.autograd.grad(model.conditionals(x)[0, d], x)
        assert set(torch.nonzero(grad[0]).flatten().tolist()) == set(range(max(0, d - 2), d))
    counts = model.parameter_counts(784, 2)
    assert counts["markov_ar"] == 784 * 3 and counts["fully_independent"] == 784


def test_nade_log_prob_matches_its_sampling_conditionals():
    """log_prob (running sum, a block of pixels at a time) and ancestral sampling (step by step)
    compute the same conditionals; 6x6 = 36 pixels spans several blocks."""
    model = randomized("nade", {"hidden_units": 5, "ordering": "random"}, (1, 6, 6)).double()
    assert model.num_pixels > 2 * model.BLOCK
    g = torch.Generator().manual_seed(1)
    x = model.sample(3, generator=g).reshape(3, 36).double()
    a = model.c.expand(3, -1).clone()
    expected = torch.zeros(3, dtype=torch.float64)
    for d in range(36):
        p = torch.sigmoid(torch.sigmoid(a) @ model.V[d] + model.b[d])
        xd = x[:, model.order[d]]
        expected += torch.log(torch.where(xd == 1, p, 1 - p))
        a += xd[:, None] * model.W[:, d]
    assert torch.allclose(model.log_prob(x), expected, atol=1e-5)


def test_bernoulli_closed_form_fit_is_the_mle():
    data = torch.bernoulli(torch.rand(1, 1, 3, 3).expand(200, -1, -1, -1))
    model = build_model("bernoulli", DataSpec.single((1, 3, 3)), {"pseudocount": 0.0})
    model.on_epoch_start()
    for batch in data.split(64):
        model.training_step(Batch(batch), {})
    mean = data.reshape(200, 9).mean(0).clamp(1e-6, 1 - 1e-6)
    assert torch.allclose(torch.sigmoid(model.logits()), mean, atol=1e-5)
    # The MLE maximizes the training likelihood: any perturbation lowers it.
    best = model.log_prob(data).sum()
    model.ones += 1.0
    assert model.log_prob(data).sum() < best
