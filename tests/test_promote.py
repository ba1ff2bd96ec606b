"""`promote` against a real MLflow registry (a temporary sqlite store): which registry errors mean
"nothing registered yet" and which fail the stage, and the comparison page it writes."""

import json

import mlflow
import pytest
import yaml
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import (INTERNAL_ERROR, INVALID_PARAMETER_VALUE, PERMISSION_DENIED,
                                          RESOURCE_DOES_NOT_EXIST)
from PIL import Image

from components import report
from pipelines import promote


class Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A repository after prepare/train/evaluate of model `m`, logging to a store of its own (the
    process's previous store restored afterwards)."""
    previous = mlflow.get_tracking_uri()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"models": {"m": {"model": "bernoulli"}}}))
    (tmp_path / "data/prepared").mkdir(parents=True)
    (tmp_path / "data/prepared/card.json").write_text(json.dumps(
        {"source": "digits", "image_shape": [1, 8, 8], "binarization": "static"}))
    yield tmp_path
    mlflow.set_tracking_uri(previous)


def trained(repo, nll: float) -> None:
    """What train and evaluate leave for promote: a logged model and its test NLL."""
    from pipelines import tracking

    tracking.configure()
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(name="model", python_model=Echo(), pip_requirements=["mlflow"])
    (repo / "models/m").mkdir(parents=True, exist_ok=True)
    (repo / "models/m/mlflow.json").write_text(json.dumps({"model_uri": info.model_uri, "model_id": info.model_id}))
    (repo / "reports/m/figures").mkdir(parents=True, exist_ok=True)
    (repo / "reports/m/metrics.json").write_text(json.dumps(
        {"model": "bernoulli", "family": "explicit", "promotion_metric": "test_nll", "test_nll": nll}))
    Image.new("L", (4, 4)).save(repo / "reports/m/figures/samples.png")


def champion(repo) -> str:
    return str(MlflowClient().get_model_version_by_alias("genzoo-m", "champion").version)


def test_the_champion_moves_only_to_a_better_version(repo):
    trained(repo, 50.0)
    promote.run()
    assert champion(repo) == "1"
    trained(repo, 60.0)
    promote.run()
    assert champion(repo) == "1"
    version = MlflowClient().get_model_version("genzoo-m", "2")
    assert version.tags["genzoo.promotion"].startswith("not promoted: test_nll 60.0000 does not beat 50.0000")
    trained(repo, 40.0)
    promote.run()
    assert champion(repo) == "3"
    summary = json.loads((repo / "comparison/promotion.json").read_text())
    assert summary[0]["champion_version"] == 3 and summary[0]["promoted"]


def failing(code: int, message: str):
    def fail(*args, **kwargs):
        raise MlflowException(message, error_code=code)
    return fail


def test_a_registry_error_fails_promote_with_its_message_and_moves_no_alias(repo, monkeypatch):
    trained(repo, 50.0)
    promote.run()
    trained(repo, 10.0)   # would be promoted, were the registry readable

    class Locked(MlflowClient):   # the client promote uses; MLflow's internal calls stay real
        search_model_versions = failing(INTERNAL_ERROR, "database is locked")

    monkeypatch.setattr(promote, "MlflowClient", Locked)
    with pytest.raises(SystemExit) as failure:
        promote.run()
    assert "database is locked" in str(failure.value.code)
    assert champion(repo) == "1"
    assert [str(v.version) for v in MlflowClient().search_model_versions("name='genzoo-m'")] == ["1"]


def test_not_found_means_nothing_registered_yet_and_promotes(repo, monkeypatch):
    trained(repo, 50.0)

    class Empty(MlflowClient):   # a registry that answers "not found" to the search
        search_model_versions = failing(RESOURCE_DOES_NOT_EXIST, "Registered Model with name=genzoo-m not found")

    monkeypatch.setattr(promote, "MlflowClient", Empty)
    promote.run()
    assert champion(repo) == "1"
    assert MlflowClient().get_model_version("genzoo-m", "1").tags["genzoo.promotion"] == (
        "promoted: first registered version: no champion yet")


class Registry:
    """Just the registry call `current_champion` makes, failing as told."""
    def __init__(self, error=None):
        self.error = error

    def get_registered_model(self, name):
        raise self.error


def test_only_does_not_exist_means_no_champion():
    absent = MlflowException("Registered Model with name=x not found", error_code=RESOURCE_DOES_NOT_EXIST)
    assert promote.current_champion(Registry(absent), "x") is None
    for code in (INTERNAL_ERROR, INVALID_PARAMETER_VALUE, PERMISSION_DENIED):
        with pytest.raises(MlflowException, match="boom"):
            promote.current_champion(Registry(MlflowException("boom", error_code=code)), "x")


def test_the_page_shows_every_figure_and_only_columns_some_model_has(tmp_path):
    reports = tmp_path / "reports"
    for key, names in (("a", ["samples.png", "class_samples.png", "zebra.png"]), ("b", ["translations.png"])):
        (reports / key / "figures").mkdir(parents=True)
        for name in names:
            Image.new("L", (2, 2)).save(reports / key / "figures" / name)
    Image.new("L", (2, 2)).save(reports / "a" / "curves.png")
    results = [{"key": "a", "version": 1, "champion_version": 1, "reason": "first",
                "metrics": {"model": "x", "family": "adversarial", "capabilities": ["conditional_sample", "sample"],
                            "fid": 3.0, "conditional_accuracy": 0.9, "anomaly_detection": "not supported: none"}},
               {"key": "b", "version": 2, "champion_version": 1, "reason": "worse",
                "metrics": {"model": "y", "family": "adversarial", "capabilities": ["translate"]}}]
    card = {"source": "digits", "image_shape": [1, 8, 8], "binarization": "static"}
    page = report.write(results, card, reports, tmp_path / "out").read_text()
    shown = ["a/samples.png", "a/class_samples.png", "a/zebra.png", "a/curves.png", "b/translations.png"]
    assert page.count("<img") == len(shown)
    assert all(f'src="{p}"' in page and (tmp_path / "out" / p).is_file() for p in shown)
    # Known figures in their order, unknown ones after them, captioned by name.
    assert page.index("a/samples.png") < page.index("a/class_samples.png") < page.index("a/zebra.png")
    assert "one row per class" in page and "<figcaption>zebra</figcaption>" in page
    assert "<th>conditional_accuracy</th>" in page and "<th>test_nll</th>" not in page
    assert "not supported: none" in page   # a use the model lacks shows its reason
