"""The common interface: registry, typed parameters, capabilities, samples."""

import pytest
import torch

from components.errors import ConfigError
from components.data.batch import Batch, DataSpec
from components.models import NotSupported, available_models, build_model, load_model, save_model

TINY = {"bernoulli": {}, "nade": {"hidden_units": 4}, "vae": {"latent_dim": 2, "hidden_units": [8]},
        "aae": {"latent_dim": 2, "hidden_units": [8], "discriminator_units": [4]},
        "gan": {"latent_dim": 3, "hidden_units": 8}, "markov_ar": {"order_k": 2},
        "pixelcnn": {"features": 2, "residual_blocks": 1, "output_features": 4},
        "row_lstm": {"features": 2, "layers": 1, "output_features": 4},
        "diagonal_bilstm": {"features": 2, "layers": 1, "output_features": 4}}


def test_the_four_foundation_models_are_registered():
    assert {"bernoulli", "nade", "vae", "gan"} <= set(available_models())


def test_unknown_model_name_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="unknown model 'pixelgan'.*bernoulli.*nade"):
        build_model("pixelgan", DataSpec.single((1, 3, 3)))


def test_unknown_parameter_and_wrong_types_fail_early():
    with pytest.raises(ConfigError, match="unknown parameter.*hidden.*valid: hidden_units"):
        build_model("nade", DataSpec.single((1, 3, 3)), {"hidden": 3})
    with pytest.raises(ConfigError, match="'hidden_units': expected int, got str"):
        build_model("nade", DataSpec.single((1, 3, 3)), {"hidden_units": "100"})
    with pytest.raises(ConfigError, match="not one of 'raster', 'random'"):
        build_model("nade", DataSpec.single((1, 3, 3)), {"ordering": "spiral"})
    with pytest.raises(ConfigError, match=r"hidden_units'\[1\]: expected int"):
        build_model("vae", DataSpec.single((1, 3, 3)), {"hidden_units": [8, 2.5]})


def test_binary_models_refuse_grayscale_data():
    with pytest.raises(ConfigError, match="models binary pixels; it was given data with 256 levels"):
        build_model("nade", DataSpec.single((1, 3, 3), 256), {})


@pytest.mark.parametrize("name", sorted(TINY))
def test_samples_have_the_right_shape_and_range_and_are_reproducible(name):
    model = build_model(name, DataSpec.single((1, 3, 4)), TINY[name]).eval()
    a = model.sample(6, generator=torch.Generator().manual_seed(5))
    b = model.sample(6, generator=torch.Generator().manual_seed(5))
    assert a.shape == (6, 1, 3, 4)
    assert a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", sorted(TINY))
def test_capabilities_are_honest(name, tmp_path):
    model = build_model(name, DataSpec.single((1, 3, 3)), TINY[name]).eval()
    x = torch.bernoulli(torch.full((4, 1, 3, 3), 0.5))
    for capability, call in (("log_prob", lambda: model.log_prob(x)), ("encode", lambda: model.encode(x))):
        if capability in model.capabilities:
            assert call().shape[0] == 4
        else:
            with pytest.raises(NotSupported):
                call()
    save_model(model, tmp_path)
    reloaded = load_model(tmp_path)
    for key, value in model.state_dict().items():
        assert torch.equal(value, reloaded.state_dict()[key])


def test_gan_alternates_two_optimizers_with_the_non_saturating_loss():
    model = build_model("gan", DataSpec.single((1, 3, 3)), TINY["gan"])
    optimizers = model.configure_optimizers(1e-3)
    assert set(optimizers) == {"discriminator", "generator"}
    g_before = [p.clone() for p in model.generator.parameters()]
    d_before = [p.clone() for p in model.discriminator.parameters()]
    out = model.training_step(Batch(torch.bernoulli(torch.full((8, 1, 3, 3), 0.5))), optimizers)
    assert {"d_loss", "g_loss"} <= set(out)
    assert any(not torch.equal(a, b) for a, b in zip(g_before, model.generator.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(d_before, model.discriminator.parameters()))


def test_registration_is_explicit_and_a_name_is_taken_once():
    from components.models import available_models
    from components.models.base import GenerativeModel, register

    before = available_models()

    class Unregistered(GenerativeModel):   # a subclass alone, as a test's toy model, stays out
        name = "test_unregistered"
        family = "explicit"

    assert available_models() == before
    with pytest.raises(TypeError, match="registered twice"):
        register(type("AnotherNade", (GenerativeModel,), {"name": "nade", "family": "explicit"}))
    assert available_models() == before
