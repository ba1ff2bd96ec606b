"""Conditional models obey their condition: cGAN's paper optimizer and its selection by a metric that
includes the label, StarGAN's schedule, and the round trip of translating models."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

from components.classifier import predict, train_classifier
from components.schema import training_settings
from components.data.batch import Batch, DataSpec, DomainSpec
from components.metrics.translation import round_trip_metrics
from components.models import build_model, model_class
from components.training import Settings
from components.training.schedules import configure_optimizers, lr_factor
from components.training.selection import SAMPLE_QUALITY, SampleQuality

TOY_SPEC = DataSpec.single((1, 8, 8), 256, class_names=("left", "right"), fields=("labels",))
TINY_CGAN = {"latent_dim": 4, "noise_units": 16, "label_units": 16, "hidden_units": 32,
             "discriminator_image_units": 16, "discriminator_label_units": 8, "discriminator_hidden_units": 16,
             "maxout_pieces": 3}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def params():
    return yaml.safe_load(open("params.yaml"))


@pytest.fixture(scope="module")
def digits_classifier():
    from sklearn.datasets import load_digits

    data = load_digits()
    images = (data.images / 16.0).astype(np.float32)[:, None]
    classifier, _ = train_classifier(images[:1200], data.target[:1200], images[1200:], data.target[1200:],
                                     num_classes=10, epochs=2, batch_size=64, lr=1e-3, seed=0, log=lambda *_: None)
    return classifier, images[1200:], data.target[1200:]


def test_cgan_generator_output_changes_with_the_label_alone():
    model = build_model("cgan", TOY_SPEC, {**TINY_CGAN, "generator_dropout": 0.5}).eval()
    z = torch.randn(8, 4)
    left, right = (model.generator(z, model.one_hot(torch.full((8,), k))) for k in (0, 1))
    assert (left - right).abs().mean() > 1e-3
    # eval mode: no dropout, so the same z and label give the same image
    assert torch.equal(left, model.generator(z, model.one_hot(torch.zeros(8))))


def test_cgan_trains_with_the_papers_sgd_and_rising_momentum():
    model = build_model("cgan", TOY_SPEC, {**TINY_CGAN, "optimizer": "sgd", "momentum_saturate": 4})
    optimizers = model.configure_optimizers(0.1)
    assert all(isinstance(o, torch.optim.SGD) for o in optimizers.values())
    assert optimizers["generator"].param_groups[0]["momentum"] == pytest.approx(0.5)
    batch = Batch(torch.rand(8, 1, 8, 8), labels=torch.randint(2, (8,)))
    seen = []
    for _ in range(6):
        model.training_step(batch, optimizers)
        seen.append(optimizers["discriminator"].param_groups[0]["momentum"])
    assert seen[:5] == pytest.approx([0.5, 0.55, 0.6, 0.65, 0.7]) and seen[5] == pytest.approx(0.7)


def test_cgan_entry_uses_the_papers_optimizer(params):
    entry = params["models"]["cgan"]
    assert entry["optimizer"] == "sgd"
    settings = training_settings(params, "cgan")
    assert settings["lr"] == pytest.approx(0.1)
    # exponential decay by 1.00004 per update, applied per epoch (updates per epoch of the digits' split)
    schedule = settings["schedule"]
    assert schedule["kind"] == "step" and schedule["step_epochs"] == 1
    assert 0.998 < schedule["gamma"] < 1


def test_conditional_models_are_selected_by_a_metric_that_includes_the_label(digits_classifier):
    model = build_model("cgan", DataSpec.single((1, 8, 8), 256, class_names=tuple("0123456789"),
                                                fields=("labels",)), {})
    assert model.selection == ("intra_fid", "min") and model.selection[0] in SAMPLE_QUALITY
    classifier, images, _ = digits_classifier
    predicted = predict(classifier, images)[1].numpy()
    by_class = {k: torch.from_numpy(images[predicted == k]) for k in range(10)}

    class Drawer:
        """Samples real images: of the asked class (obeys) or of the next one (ignores the label)."""
        capabilities, condition, spec = {"conditional_sample"}, "labels", model.spec

        def __init__(self, shift):
            self.shift = shift

        def can(self, capability):
            return capability in self.capabilities

        def eval(self):
            return self

        def sample(self, n, condition, generator):
            picks = [by_class[(int(k) + self.shift) % 10] for k in condition]
            return torch.stack([p[int(torch.randint(len(p), (), generator=generator))] for p in picks])

    quality = SampleQuality(classifier, Batch(torch.from_numpy(images)), num_samples=300, seed=0)
    obeys, ignores = quality(Drawer(0), 1), quality(Drawer(1), 1)
    assert obeys["conditional_accuracy"] == 1.0 and ignores["conditional_accuracy"] == 0.0
    # both draw real digits (low unconditional FID); only the one obeying its label has a low intra-FID
    assert obeys["intra_fid"] < 0.5 * ignores["intra_fid"]
    assert ignores["intra_fid"] - obeys["intra_fid"] > abs(ignores["fid"] - obeys["fid"])

    # A caption-conditional model is asked for the reference batch's own captions, each sample's class the
    # label of the image its caption came from.
    class CaptionDrawer(Drawer):
        condition = "captions"

        def sample(self, n, condition, generator):
            return super().sample(n, [int(c.split()[-1]) for c in condition], generator)

    labels = torch.from_numpy(predicted)
    captions = [f"a picture of {k}" for k in predicted.tolist()]
    quality = SampleQuality(classifier, Batch(torch.from_numpy(images), labels=labels, captions=captions),
                            num_samples=300, seed=0)
    obeys, ignores = quality(CaptionDrawer(0), 1), quality(CaptionDrawer(1), 1)
    assert obeys["conditional_accuracy"] == 1.0 and ignores["conditional_accuracy"] == 0.0
    assert obeys["intra_fid"] < 0.5 * ignores["intra_fid"]
    assert model_class("gan_cls").selection == ("intra_fid", "min")


def test_stargan_entry_follows_the_authors_code(params):
    settings = training_settings(params, "stargan")
    epochs = settings["epochs"]
    # lr constant for the first half, then linearly towards 0 (the authors' num_iters_decay = num_iters / 2)
    factors = [lr_factor(Settings.from_dict(settings).schedule, e, epochs) for e in range(1, epochs + 1)]
    half = epochs // 2
    assert factors[:half] == [1.0] * half
    steps = np.diff(factors[half - 1:])
    assert (steps < 0).all() and np.allclose(steps, steps[0]) and factors[-1] < 0.1
    spec = DataSpec("synthetic", tuple(DomainSpec(n, (1, 8, 8), 256) for n in ("plain", "thick")),
                    fields=("domains",))
    model = build_model("stargan", spec, {"width": 4, "residual_blocks": 1, "discriminator_width": 4})
    optimizers = configure_optimizers(model, settings["lr"], Settings.from_dict(settings).optimizers)
    for optimizer in optimizers.values():
        assert optimizer.param_groups[0]["betas"] == (0.5, 0.999)
    assert model.params.n_critic == 5 and model.params.lambda_cls == 1 and model.params.lambda_rec == 10
    assert model.params.lambda_gp == 10


def test_round_trip_keeps_the_label_only_if_the_translations_do(digits_classifier):
    classifier, images, labels = digits_classifier
    n = len(images)
    test = Batch(torch.from_numpy(images), labels=torch.from_numpy(labels),
                 domains=torch.tensor([0, 1] * (n // 2) + [0] * (n % 2)))
    spec = SimpleNamespace(domain_names=["plain", "other"])
    identity = SimpleNamespace(spec=spec, translate=lambda x, target: x)
    metrics = round_trip_metrics(identity, test, classifier)
    assert metrics["round_trip_label_preservation"] == pytest.approx(
        metrics["round_trip_label_preservation_of_identity"]) and metrics["round_trip_label_preservation"] > 0.8
    blank = SimpleNamespace(spec=spec, translate=lambda x, target: torch.zeros_like(x))   # loses the digit
    assert round_trip_metrics(blank, test, classifier)["round_trip_label_preservation_via_other"] < 0.2
