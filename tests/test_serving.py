"""The registered model's pyfunc: what a request asks for (samples, samples of a condition,
translations, log-likelihoods) is served from the model's declared capabilities, and a request
it cannot serve is refused with what the model can do."""

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.exceptions import MlflowException

from components.data.batch import DataSpec
from components.models import build_model, save_model
from components.serving import GenzooPyfunc, Limits, ServingError, request_signature, serve
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


@pytest.mark.parametrize("request_, message", [
    ({"num_samples": [1], "condition": [2.9]}, r"condition of row 0 \(a class index or name\) must be a whole number; got 2\.9"),
    ({"num_samples": [1, 1], "condition": [1, None]}, r"condition of row 1 .* must be a whole number; got (None|nan)"),
    ({"num_samples": [1], "condition": [float("nan")]}, r"condition of row 0 .* must be a whole number; got nan"),
    ({"num_samples": [1], "condition": [[1, 2]]}, r"condition of row 0 .* must be a whole number; got \[1, 2\]"),
    ({"num_samples": [1], "condition": [True]}, r"condition of row 0 .* must be a whole number; got True"),
    ({"num_samples": [2.5], "condition": [1]}, r"num_samples \(row 0\) must be a whole number; got 2\.5"),
    ({"num_samples": [1, -1], "condition": [1, 1]}, r"num_samples \(row 1\) must be >= 0; got -1"),
    ({"num_samples": [1], "seed": [float("nan")]}, r"seed must be a whole number; got nan"),
])
def test_bad_sample_requests_are_refused_naming_the_value(shade, request_, message):
    with pytest.raises(ServingError, match=message):
        serve(shade, pd.DataFrame(request_))


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), 1.5, -0.25, 1e300])
def test_non_finite_or_out_of_range_pixels_are_refused(value):
    bernoulli = build_model("bernoulli", DataSpec.single((1, 2, 2)))
    images = np.full((3, 4), 0.5)
    images[2, 1] = value
    with pytest.raises(ServingError, match=r"pixel 1 of row 2 is .*: pixels must be finite numbers in \[0, 1\]"):
        serve(bernoulli, pd.DataFrame(images).rename(columns=str))
    with pytest.raises(ServingError, match="pixels must be numbers in"):
        serve(bernoulli, pd.DataFrame([["a", 0, 0, 0]]).rename(columns=str))
    assert np.isfinite(serve(bernoulli, pd.DataFrame(images[:2]).rename(columns=str))).all()


def test_a_refusal_is_an_invalid_parameter_mlflow_error_that_the_scoring_server_answers_with_400(shade):
    with pytest.raises(MlflowException) as refused:
        serve(shade, pd.DataFrame({"num_samples": [1], "condition": [2.9]}))
    assert refused.value.error_code == "INVALID_PARAMETER_VALUE" and refused.value.get_http_status_code() == 400


class Counting:
    """A model's `sample`, recording how many samples each call asked for."""
    def __init__(self, model):
        self.model, self.calls = model, []
        self.original = model.sample
        model.sample = self

    def __call__(self, n, condition=None, generator=None):
        self.calls.append(n)
        return self.original(n, condition=condition, generator=generator)


def test_samples_are_capped_per_request_and_drawn_in_batches_in_row_order(shade):
    counting = Counting(shade)
    with pytest.raises(ServingError, match="asks for 10001 samples; at most 10000 per request"):
        serve(shade, pd.DataFrame({"num_samples": [10_000, 1], "condition": [0, 1]}))
    with pytest.raises(ServingError, match=r"asks for 1000000000000 samples; at most 10000"):
        serve(shade, pd.DataFrame({"num_samples": [10**12]}))
    assert counting.calls == []   # refused before drawing anything
    samples = serve(shade, pd.DataFrame({"num_samples": [2, 3, 2], "condition": [0, 1, 2]}),
                    Limits(batch_size=3))
    assert counting.calls == [3, 3, 1] and shades(samples) == [0, 0, 1, 1, 1, 2, 2]
    assert len(serve(shade, pd.DataFrame({"num_samples": [10_000]}))) == 10_000
    assert max(counting.calls[3:]) == Limits().batch_size
    with pytest.raises(ServingError, match="asks for 6 samples; at most 5 per request"):
        serve(shade, pd.DataFrame({"num_samples": [6]}), Limits(max_samples=5))


def test_rows_are_capped_per_request():
    bernoulli = build_model("bernoulli", DataSpec.single((1, 2, 2)))
    images = pd.DataFrame(np.full((11, 4), 0.5)).rename(columns=str)
    with pytest.raises(ServingError, match="the request has 11 rows; at most 10 per request"):
        serve(bernoulli, images, Limits(max_rows=10))
    assert serve(bernoulli, images, Limits(max_rows=11, batch_size=4)).shape == (11,)
    np.testing.assert_allclose(serve(bernoulli, images, Limits(batch_size=4)), serve(bernoulli, images))


def test_limits_come_from_the_model_config_and_bad_ones_are_named():
    assert Limits.from_config(None) == Limits() and Limits().max_samples == 10_000
    assert Limits.from_config({"max_samples": 5}).max_samples == 5
    with pytest.raises(ValueError, match=r"unknown serving limit\(s\) \['max_sample'\]"):
        Limits.from_config({"max_sample": 5})
    with pytest.raises(ValueError, match="max_rows = 0 is not a positive integer"):
        Limits.from_config({"max_rows": 0})


def test_mlflow_models_serve_answers_bad_input_with_400_and_the_message(tmp_path):
    """A real `mlflow models serve` process on a small saved model, its limit set by model_config."""
    from tiny_pipeline import free_port, post, server

    spec = DataSpec.single((1, 4, 4), 2, class_names=tuple(f"c{k}" for k in range(3)), fields=("labels",))
    cgan = build_model("cgan", spec, {"latent_dim": 2, "noise_units": 4, "label_units": 4, "hidden_units": 4,
                                      "discriminator_image_units": 4, "discriminator_label_units": 4,
                                      "discriminator_hidden_units": 4, "maxout_pieces": 2})
    save_model(cgan, tmp_path / "weights")
    mlflow.pyfunc.save_model(tmp_path / "served", python_model=GenzooPyfunc(),
                             artifacts={"model_dir": str(tmp_path / "weights")}, code_paths=[str(REPO / "components")],
                             pip_requirements=["torch", "pandas"], signature=request_signature(cgan),
                             model_config={"max_samples": 50})
    port = free_port()
    command = ["mlflow", "models", "serve", "-m", str(tmp_path / "served"), "--env-manager", "local",
               "-h", "127.0.0.1", "-p", str(port)]
    with server(command, tmp_path, port, "/ping", timeout=120) as url:
        def ask(columns, data):
            return post(f"{url}/invocations", {"dataframe_split": {"columns": columns, "data": data}})

        status, answer = ask(["num_samples", "condition", "seed"], [[2, 1, 0], [1, "c2", 0]])
        assert status == 200 and np.asarray(answer["predictions"]).shape == (3, 1, 4, 4)
        for data, message in [([[1, 2.9]], "must be a whole number; got 2.9"),
                              ([[1, None]], "must be a whole number; got None"),
                              ([[1, [1, 2]]], "must be a whole number; got [1, 2]"),
                              ([[1, 3]], "class index 3 is outside 0..2"),
                              ([[51, 1]], "asks for 51 samples; at most 50 per request")]:
            status, answer = ask(["num_samples", "condition"], data)
            assert status == 400 and answer["error_code"] == "INVALID_PARAMETER_VALUE", (data, status, answer)
            assert message in answer["message"], (data, answer)
