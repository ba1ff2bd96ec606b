"""InfoGAN's averaged generator: what the trainer averages, and that the default entry samples from it."""

import math

import pytest
import torch

from components.data.batch import Batch, DataSpec
from components.models import build_model
from components.training.ema import EMA

pytestmark = pytest.mark.usefixtures("one_thread")

SPEC = DataSpec.single((1, 8, 8), 256, class_names=("left", "right"), fields=("labels",))
TINY = {"latent_dim": 4, "categorical": 2, "continuous": 2, "width": 8, "q_units": 16}


def test_only_the_generator_is_averaged_and_the_average_is_what_samples():
    torch.manual_seed(0)
    model = build_model("infogan", SPEC, TINY)
    ema = EMA(model, model.ema_modules, kimg=0.1)
    generator = {f"generator.{n}" for n, _ in model.generator.named_parameters()}
    assert set(ema.names) == generator   # every generator weight, no discriminator or Q weight
    optimizers = model.configure_optimizers(1e-2)
    images = torch.rand(16, 1, 8, 8)
    for step in range(1, 4):
        model.training_step(Batch(images, labels=torch.arange(16) % 2), optimizers)
        ema.update(model, shown=16, seen=16 * step)
    live = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.eval()
    codes = torch.zeros(4, dtype=torch.long), torch.zeros(4, 2)
    z = torch.randn(4, 4)
    live_samples = model.sample_with_codes(*codes, z=z)
    with ema.applied(model):
        averaged = dict(model.named_parameters())
        for name, value in live.items():
            # the generator's weights are the average (a step of lr 1e-2 moved them), the rest live
            assert torch.equal(averaged[name], ema.shadow[name] if name in generator else value), name
        assert not torch.allclose(model.sample_with_codes(*codes, z=z), live_samples)


def test_default_entry_trains_an_averaged_generator_at_the_authors_rates():
    from components.config import load_params
    from components.schema import architecture_params, training_settings
    from components.training.fit import Settings

    params = load_params()
    name, arch = architecture_params(params, "infogan")
    settings = Settings.from_dict(training_settings(params, "infogan"))
    model = build_model(name, DataSpec.single((1, 8, 8), 17, class_names=tuple("0123456789"),
                                              fields=("labels",)), arch)
    assert settings.averages and model.ema_modules == ("generator",)
    # The average that is evaluated is of trained weights (ProGAN's lesson, issue 23): the digits' 1347
    # training images are 22 steps of 64 per epoch, and by the last epoch the initial weights' share is nil.
    steps = settings.epochs * math.ceil(1347 / settings.batch_size)
    assert settings.ema_decay ** steps < 1e-3
