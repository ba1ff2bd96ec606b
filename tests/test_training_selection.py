"""Through `fit` on the bundled digits: a label-conditional model, FID selection, and a model that
needs labels refused on unlabeled data before Ray starts."""

import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from components.classifier import predict, train_classifier
from components.errors import ConfigError
from components.data.batch import Batch, DataSpec
from components.data.prepared import write_split
from components.models import build_model
from components.models.base import GenerativeModel
from components.training import Settings, final_weights, fit
from components.training.ray_worker import batch_factories
from components.training.selection import SampleQuality


class ConditionalBernoulli(GenerativeModel):
    """p(x | y) = prod_i Bernoulli(x_i; sigmoid(theta_{y,i})), fitted by gradient steps."""
    name = "test_conditional_bernoulli"
    family = "explicit"
    likelihood = "exact"
    pixels = "binary"
    capabilities = {"sample", "conditional_sample", "log_prob"}
    requires = {"labels"}
    condition = "labels"
    selection = ("nll", "min")

    def __init__(self, spec, params):
        super().__init__(spec, params)
        self.theta = nn.Parameter(torch.zeros(spec.num_classes, self.num_pixels))

    def log_prob(self, x, labels=None):
        return -F.binary_cross_entropy_with_logits(self.theta[labels], self.flatten(x), reduction="none").sum(1)

    def training_step(self, batch, optimizers):
        loss = -self.log_prob(batch.images, batch.labels).mean()
        self.optimize(optimizers["model"], loss)
        return {"loss": loss.item()}

    @torch.no_grad()
    def validation_metrics(self, batch):
        return {"nll": float(-self.log_prob(batch.images, batch.labels).mean())}

    @torch.no_grad()
    def sample(self, n, condition=None, generator=None):
        probs = torch.sigmoid(self.theta[torch.as_tensor(condition)])
        return self.unflatten(torch.bernoulli(probs, generator=generator))


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """The bundled digits, binarized, as a prepared folder (train: 1500 images, valid: 297), the valid
    images, a classifier of them and the data spec."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images = (data.images / 16.0 > 0.5).astype(np.float32)[:, None]
    order = np.random.default_rng(0).permutation(len(images))
    train, valid = order[:1500], order[1500:]
    classifier, _ = train_classifier(images[train], data.target[train], images[valid], data.target[valid],
                                     num_classes=10, epochs=3, batch_size=64, lr=1e-3, seed=0, log=lambda *_: None)
    spec = DataSpec.single((1, 8, 8), 2, source="digits", class_names=tuple(map(str, range(10))), fields=("labels",))
    folder = tmp_path_factory.mktemp("digits")
    meta = {"source": "digits", "image_shape": [1, 8, 8], "levels": 2, "binarization": "static", "threshold": 0.5,
            "seed": 0, "class_names": list(spec.class_names), "has_labels": True}
    for name, rows in (("train", train), ("valid", valid)):
        write_split(folder / f"{name}.parquet", images[rows], data.target[rows], {**meta, "split": name})
    return folder, images[valid], classifier, spec


def settings(**changes):
    return Settings.from_dict({"epochs": 5, "batch_size": 64, "lr": 0.1, "patience": 5, **changes})


def fit_prepared(model, folder, settings, **kwargs):
    """`fit` on a prepared folder through the Ray worker's own batch factories (stream and eval readers)."""
    return fit(model, *batch_factories(folder, "binary", settings), settings, **kwargs)


def test_samples_asked_for_class_k_are_classified_as_k(digits, monkeypatch):
    from tiny_models import register

    folder, _, classifier, spec = digits
    torch.manual_seed(0)
    register(monkeypatch, ConditionalBernoulli)
    model = build_model("test_conditional_bernoulli", spec)
    run = fit_prepared(model, folder, settings())
    model.load_state_dict(final_weights(run.checkpoint()))
    asked = torch.arange(500) % 10
    samples = model.sample(500, condition=asked, generator=torch.Generator().manual_seed(0))
    accuracy = float((predict(classifier, samples)[1] == asked).float().mean())
    assert accuracy >= 0.7, accuracy    # chance: 0.1


def test_a_model_needing_labels_is_refused_on_unlabeled_data_before_ray_starts(tmp_path, digits, monkeypatch):
    import ray
    from tiny_models import register

    from pipelines.train import preflight

    register(monkeypatch, ConditionalBernoulli)

    _, valid, *_ = digits
    meta = {"source": "natural_image_patches", "image_shape": [1, 8, 8], "levels": 2, "binarization": "static",
            "threshold": 0.5, "split": "train", "seed": 0}
    write_split(tmp_path / "train.parquet", valid[:20], None, meta)
    params = yaml.safe_load(open("params.yaml"))
    params["models"] = {"conditional": {"model": "test_conditional_bernoulli"}}
    with pytest.raises(ConfigError) as error:
        preflight(params, "conditional", {"binarization": "static"}, tmp_path)
    message = str(error.value)
    assert "'test_conditional_bernoulli'" in message and "labels" in message and "'natural_image_patches'" in message
    assert not ray.is_initialized()


def test_a_gan_is_selected_by_fid_every_n_epochs(digits):
    folder, valid, classifier, spec = digits
    torch.manual_seed(0)
    model = build_model("gan", DataSpec.single((1, 8, 8), 2), {"latent_dim": 8, "hidden_units": 32})
    quality = SampleQuality(classifier, Batch(torch.from_numpy(valid)), num_samples=200, seed=0)
    started = time.perf_counter()
    quality(model, 0)
    print(f"one FID measurement (200 samples, 8x8): {time.perf_counter() - started:.3f} s")
    run = fit_prepared(model, folder, settings(epochs=3, lr=2e-4, select_every=2, ema_decay=0.9), quality=quality)
    measured = [r["epoch"] for r in run.state["history"] if "val_fid" in r]
    assert measured == [2, 3]           # every 2 epochs, and the last
    fids = {r["epoch"]: r["val_fid"] for r in run.state["history"] if "val_fid" in r}
    assert run.selection.best_epoch == min(fids, key=fids.get)
    # The kept weights are the selected epoch's (with the generator's average): they score its FID.
    model.load_state_dict(final_weights(run.checkpoint()))
    assert quality(model, run.selection.best_epoch)["fid"] == pytest.approx(fids[run.selection.best_epoch])
