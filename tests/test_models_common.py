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


@pytest.mark.parametrize("name, values, key, expected", [
    ("nade", {"hidden": 3}, "hidden", "unknown key; valid keys: hidden_units, ordering, ordering_seed"),
    ("nade", {"hidden_units": "100"}, "hidden_units = '100'", "must be an integer >= 1"),
    ("nade", {"ordering": "spiral"}, "ordering = 'spiral'", "must be one of raster, random"),
    ("vae", {"hidden_units": [8, 2.5]}, "hidden_units[1] = 2.5", "must be an integer >= 1"),
    ("vae", {"iwae_chunk": 0}, "iwae_chunk = 0", "must be an integer >= 1"),   # a range, not only a type
    ("progan", {"fade_fraction": 0.0}, "fade_fraction = 0.0", "must be a number in (0, 1]"),
    ("vae", {"train_samples": 5, "beta": 2.0}, None,   # a rule across parameters: the entry's
     "beta and kl_warmup_epochs weight the ELBO's KL term; the IWAE objective (train_samples > 1) has none"),
])
def test_a_model_built_from_a_dict_gets_the_schemas_one_line_per_bad_key(name, values, key, expected):
    """build_model checks a dict as params.yaml's entries are checked: the same schema, the same words."""
    from components.schema import problems

    with pytest.raises(ConfigError) as error:
        build_model(name, DataSpec.single((1, 8, 8)), values)
    assert str(error.value) == f"model {name!r}: " + (f"{key}: " if key else "") + expected
    entry = problems({"models": {"probe": {"model": name, **values}}}, sections=("models",))
    # (an entry's valid keys are the model's parameters and the keys every entry has)
    assert len(entry) == 1 and entry[0].startswith(
        "params.yaml: models.probe" + (f".{key}: " if key else ": ") + expected.split("; valid keys")[0])


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


def test_a_conditional_sampler_requires_its_condition_field():
    from components.models.base import GenerativeModel, REGISTRY

    assert REGISTRY["cgan"].requires == {"labels"} and REGISTRY["gan_cls"].requires == {"captions"}
    assert REGISTRY["infogan"].requires == frozenset()   # its codes are its own, not a batch field
    conditional = type("ByAttributes", (GenerativeModel,), {"family": "adversarial", "condition": "attributes",
                                                             "requires": {"labels"}})
    assert conditional.requires == {"labels", "attributes"}
