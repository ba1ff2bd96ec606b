import itertools

import pytest
import torch

from components.completion import complete, lower_half_hidden
from components.data.batch import DataSpec
from components.models import build_model

MODELS = [("nade", {"hidden_units": 5}), ("markov_ar", {"order_k": 2}),
          ("pixelcnn", {"features": 2, "residual_blocks": 1, "output_features": 4}),
          ("row_lstm", {"features": 2, "layers": 1, "output_features": 4}),
          ("diagonal_bilstm", {"features": 2, "layers": 1, "output_features": 4})]


@pytest.mark.parametrize("name,params", MODELS)
def test_completion_keeps_observed_pixels_and_samples_the_exact_conditional(name, params):
    torch.manual_seed(0)
    model = build_model(name, DataSpec.single((1, 2, 2)), params).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 1.0)
    upper = torch.tensor([1.0, 0.0])
    observed = lower_half_hidden((1, 2, 2))
    images = torch.cat([upper, torch.zeros(2)]).reshape(1, 1, 2, 2).repeat(4000, 1, 1, 1)
    done = complete(model, images, observed, torch.Generator().manual_seed(1)).reshape(4000, 4)
    assert torch.all(done[:, :2] == upper)
    # p(lower | upper) from the model's exact joint, against the completion frequencies.
    lowers = torch.tensor(list(itertools.product([0.0, 1.0], repeat=2)))
    joint = model.log_prob(torch.cat([upper.expand(4, 2), lowers], 1).reshape(4, 1, 2, 2)).exp()
    expected = joint / joint.sum()
    for lower, p in zip(lowers, expected):
        frequency = (done[:, 2:] == lower).all(1).float().mean()
        assert abs(frequency - p) < 0.03, (lower, frequency, p)
