"""The registered model's pyfunc: what a request asks for (samples, samples of a condition,
translations, log-likelihoods) is served from the model's declared capabilities, and a request
it cannot serve is refused with what the model can do."""

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

from components.data.batch import DataSpec
from components.models import build_model, save_model
from components.serving import GenzooPyfunc, ServingError, serve
from tiny_models import ClassShade, Inverter, class_spec, day_night_spec, register

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def shade():
    return ClassShade(class_spec(classes=4), ClassShade.Params()).eval()


def shades(samples: np.ndarray) -> list[float]:
    """The one intensity of each ClassShade sample (its class / 3)."""
    assert np.ptp(samples.reshape(len(samples), -1), axis=1).max() == 0
    return [round(float(v) * 3, 6) for v in samples.reshape(len(samples), -1)[:, 0]]


def test_one_condition_for_every_sample_of_a_row(shade):
    samples = serve(shade, pd.DataFrame({"num_samples": [5], "condition": [2]}))
    assert samples.shape == (5, 1, 2, 2) and samples.dtype == np.float32
    assert shades(samples) == [2] * 5


def test_one_condition_per_row_in_row_order_by_index_or_class_name(shade):
    samples = serve(shade, pd.DataFrame({"num_samples": [1, 2, 1], "condition": [3, 0, "c1"]}))
    assert shades(samples) == [3, 0, 0, 1]


def test_unconditional_samples_of_a_conditional_model_follow_the_seed(shade):
    def draw(seed):
        return shades(serve(shade, pd.DataFrame({"num_samples": [40], "seed": [seed]})))
    assert draw(1) == draw(1) and draw(1) != draw(2)
    assert set(draw(1)) == {0, 1, 2, 3}


def test_a_condition_outside_the_classes_is_refused_naming_them(shade):
    with pytest.raises(ServingError, match=r"class index 4 is outside 0\.\.3"):
        serve(shade, pd.DataFrame({"num_samples": [1], "condition": [4]}))
    with pytest.raises(ServingError, match="unknown class 'dog'; classes: c0, c1, c2, c3"):
        serve(shade, pd.DataFrame({"num_samples": [1], "condition": ["dog"]}))


def test_requests_a_model_cannot_serve_are_refused_with_what_it_can_do(shade):
    bernoulli = build_model("bernoulli", DataSpec.single((1, 2, 2)))
    gan = build_model("gan", DataSpec.single((1, 2, 2)), {"latent_dim": 2, "hidden_units": 4})
    images = pd.DataFrame(np.zeros((3, 4), np.float32))
    with pytest.raises(ServingError, match=r"bernoulli cannot serve a `condition`.*declares log_prob, sample"):
        serve(bernoulli, pd.DataFrame({"num_samples": [2], "condition": [1]}))
    with pytest.raises(ServingError, match=r"gan cannot serve log-likelihoods of images: it declares sample$"):
        serve(gan, images)
    with pytest.raises(ServingError, match=r"test_class_shade cannot serve log-likelihoods.*conditional_sample, sample"):
        serve(shade, images)
    with pytest.raises(ServingError, match=r"bernoulli cannot serve a `target`"):
        serve(bernoulli, images.assign(target="night"))
    inverter = Inverter(day_night_spec(), Inverter.Params())
    with pytest.raises(ServingError, match=r"test_inverter cannot serve unconditional samples: it declares translate"):
        serve(inverter, pd.DataFrame({"num_samples": [1]}))


def test_log_likelihoods_are_the_models(shade):
    bernoulli = build_model("bernoulli", DataSpec.single((1, 2, 2)))
    with torch.no_grad():
        bernoulli.ones.copy_(torch.tensor([1.0, 2.0, 3.0, 0.0]))   # pixel counts of 4 training images
        bernoulli.count.fill_(4)
    images = np.array([[0, 1, 1, 0], [1, 1, 1, 1]], np.float32)
    expected = bernoulli.log_prob(torch.from_numpy(images).view(2, 1, 2, 2)).detach().numpy()
    np.testing.assert_allclose(serve(bernoulli, pd.DataFrame(images)), expected)
    np.testing.assert_allclose(serve(bernoulli, images), expected)
    with pytest.raises(ServingError, match=r"4 columns \(image shape \(1, 2, 2\)\)"):
        serve(bernoulli, np.zeros((2, 5), np.float32))


def test_images_with_a_target_column_are_translated_row_by_row():
    inverter = Inverter(day_night_spec(), Inverter.Params())
    images = np.array([[0, 0, 1, 1], [1, 0, 0, 0], [0.25, 0.5, 0.75, 1]], np.float32)
    out = serve(inverter, pd.DataFrame(images).assign(target=["night", "day", "night"]))
    assert out.shape == (3, 1, 2, 2)
    np.testing.assert_allclose(out.reshape(3, 4), [1 - images[0], images[1], 1 - images[2]])
    with pytest.raises(ServingError, match="unknown target domain.*'dusk'.*domains: day, night"):
        serve(inverter, pd.DataFrame(images).assign(target="dusk"))


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A temporary MLflow store, the process's previous one restored afterwards."""
    previous = mlflow.get_tracking_uri()
    monkeypatch.chdir(tmp_path)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    yield tmp_path
    mlflow.set_tracking_uri(previous)


def test_a_logged_conditional_model_serves_conditions_after_a_registry_round_trip(store, monkeypatch):
    register(monkeypatch, ClassShade)
    tmp_path = store
    mlflow.set_experiment("serving")
    save_model(ClassShade(class_spec(classes=4), ClassShade.Params()), tmp_path / "model")
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(name="model", python_model=GenzooPyfunc(),
                                       artifacts={"model_dir": str(tmp_path / "model")},
                                       code_paths=[str(REPO / "components")], pip_requirements=["torch", "pandas"],
                                       registered_model_name="tiny-conditional")
    loaded = mlflow.pyfunc.load_model("models:/tiny-conditional/1")
    samples = loaded.predict(pd.DataFrame({"num_samples": [2, 1], "condition": [1, 3]}))
    assert shades(np.asarray(samples)) == [1, 1, 3]
    with pytest.raises(Exception, match=r"cannot serve log-likelihoods.*conditional_sample, sample"):
        loaded.predict(pd.DataFrame(np.zeros((2, 4), np.float32)))
