"""What a person sees and does in MLflow's UI, against real MLflow stores: the promotion workflow
(`champion` / `challenger`, a person's choice kept), the model cards, the experiment's kind, the
prepared data's digest, and the logged pyfunc's signature."""

import json

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from PIL import Image

from pipelines import promote, tracking


class Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        return model_input


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A repository after prepare/train/evaluate of model `m`, logging to a store of its own."""
    previous = mlflow.get_tracking_uri()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    set_promote(tmp_path)
    (tmp_path / "data/prepared").mkdir(parents=True)
    (tmp_path / "data/prepared/card.json").write_text(json.dumps(
        {"source": "digits", "image_shape": [1, 8, 8], "binarization": "static"}))
    yield tmp_path
    mlflow.set_tracking_uri(previous)


def set_promote(repo, **settings) -> None:
    params = {"models": {"m": {"model": "bernoulli"}}}
    if settings:
        params["promote"] = settings
    (repo / "params.yaml").write_text(yaml.safe_dump(params))


def trained(repo, nll: float | None) -> None:
    """What train and evaluate leave for promote: a logged model and its test NLL."""
    tracking.configure()
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(name="m", python_model=Echo(), pip_requirements=["mlflow"])
    (repo / "models/m").mkdir(parents=True, exist_ok=True)
    (repo / "models/m/mlflow.json").write_text(json.dumps(
        {"model_uri": info.model_uri, "model_id": info.model_id, "paper": "Baseline (Nobody, 1900): a test model."}))
    (repo / "reports/m/figures").mkdir(parents=True, exist_ok=True)
    metrics = {"model": "bernoulli", "family": "explicit", "promotion_metric": "test_nll",
               "capabilities": ["log_prob", "sample"], "likelihood": "exact"}
    metrics.update({} if nll is None else {"test_nll": nll, "test_bits_per_dim": nll / 64})
    (repo / "reports/m/metrics.json").write_text(json.dumps(metrics))
    Image.new("L", (4, 4)).save(repo / "reports/m/figures/samples.png")


def aliases() -> dict:
    return {k: int(v) for k, v in MlflowClient().get_registered_model("genzoo-m").aliases.items()}


def promotion(version: int) -> str:
    return MlflowClient().get_model_version("genzoo-m", str(version)).tags["genzoo.promotion"]


# The decision table: mode x who set the champion x how the new version compares.
@pytest.mark.parametrize("mode, by_person, respect, better, alias", [
    ("auto", False, True, True, "champion"),
    ("auto", False, True, False, ""),
    ("auto", True, True, True, "challenger"),
    ("auto", True, True, False, ""),
    ("auto", True, False, True, "champion"),
    ("propose", False, True, True, "challenger"),
    ("propose", True, True, True, "challenger"),
    ("propose", False, True, False, ""),
    ("propose", True, False, False, ""),
])
def test_the_decision_table(mode, by_person, respect, better, alias):
    decided, why = promote.decide(better, "the reason", mode, by_person, respect)
    assert decided == alias and why.startswith("the reason")


def test_a_version_without_its_metric_never_beats_the_champion():
    class Version:
        def __init__(self, number, value=None):
            self.version, self.tags = str(number), {} if value is None else {"genzoo.metric_value": repr(value)}

    assert promote.compare("test_nll", None, Version(1, 50.0), Version(2)) == (
        False, "no test_nll measured; champion v1 kept")
    assert promote.compare("test_nll", float("nan"), Version(1, 50.0), Version(2))[0] is False
    assert promote.compare("test_nll", 40.0, Version(1, 50.0), Version(2))[0] is True
    assert promote.compare("test_nll", 40.0, None, Version(2)) == (True, "first registered version: no champion yet")


def test_a_persons_champion_is_kept_and_a_better_version_becomes_challenger(repo):
    trained(repo, 50.0)
    promote.run()
    trained(repo, 60.0)
    promote.run()
    assert aliases() == {"champion": 1}
    client = MlflowClient()
    client.set_registered_model_alias("genzoo-m", "champion", "2")   # a person, in the UI's alias editor

    trained(repo, 40.0)   # the next `dvc repro` retrains: better than the person's champion (60)
    promote.run()
    assert aliases() == {"champion": 2, "challenger": 3}
    assert promotion(3).startswith("proposed as challenger: test_nll 40.0000 < 60.0000 of champion v2")
    tags = client.get_registered_model("genzoo-m").tags
    assert tags["genzoo.champion_set_by"] == "person"
    assert "moved outside promote" in tags["genzoo.champion_reason"]

    client.set_registered_model_alias("genzoo-m", "champion", "3")   # the person accepts the challenger
    trained(repo, 45.0)
    promote.run()
    assert aliases() == {"champion": 3}   # the challenger alias is gone: it won
    assert promotion(4).startswith("not promoted: test_nll 45.0000 does not beat 40.0000 of champion v3")


def test_respect_manual_false_lets_the_pipeline_move_a_persons_champion(repo):
    trained(repo, 50.0)
    promote.run()
    trained(repo, 60.0)
    promote.run()
    MlflowClient().set_registered_model_alias("genzoo-m", "champion", "2")
    set_promote(repo, mode="auto", respect_manual=False)
    trained(repo, 40.0)
    promote.run()
    assert aliases() == {"champion": 3}
    assert MlflowClient().get_registered_model("genzoo-m").tags["genzoo.champion_set_by"] == "genzoo promote"


def test_propose_mode_only_ever_proposes(repo):
    set_promote(repo, mode="propose")
    trained(repo, 50.0)
    promote.run()
    assert aliases() == {"challenger": 1}
    MlflowClient().set_registered_model_alias("genzoo-m", "champion", "1")
    trained(repo, 40.0)
    promote.run()
    assert aliases() == {"champion": 1, "challenger": 2}
    assert "promote.mode is propose" in promotion(2)


def test_an_unknown_promote_setting_fails_the_stage(repo):
    set_promote(repo, mode="sometimes")
    trained(repo, 50.0)
    with pytest.raises(SystemExit, match="promote.mode = 'sometimes': must be one of auto, propose"):
        promote.run()


def test_registered_models_and_versions_carry_their_cards(repo):
    trained(repo, 50.0)
    promote.run()
    client = MlflowClient()
    card = client.get_registered_model("genzoo-m").description
    assert card.startswith("# genzoo-m\n")
    for fact in ("Baseline (Nobody, 1900): a test model.", "family `explicit`", "promoted on `test_nll`",
                 'mlflow.pyfunc.load_model("models:/genzoo-m@champion")',
                 "mlflow models serve -m models:/genzoo-m@champion --env-manager local"):
        assert fact in card
    version = client.get_model_version("genzoo-m", "1").description
    assert version.startswith("m v1: promoted: first registered version")
    assert "| test_nll | 50.0000 |" in version and "| test_bits_per_dim | 0.7812 |" in version
    # A card a person rewrote is theirs: the next promote leaves it.
    client.update_registered_model("genzoo-m", description="Our best baseline. Ask Ana before moving it.")
    trained(repo, 40.0)
    promote.run()
    assert client.get_registered_model("genzoo-m").description == "Our best baseline. Ask Ana before moving it."


def test_the_experiment_is_a_model_training_experiment_and_a_persons_kind_stays(repo):
    experiment_id = tracking.configure()
    client = MlflowClient()
    assert client.get_experiment(experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"
    client.set_experiment_tag(experiment_id, "mlflow.experimentKind", "genai_development")
    tracking.configure()
    assert client.get_experiment(experiment_id).tags["mlflow.experimentKind"] == "genai_development"


def test_the_dataset_digest_is_dvcs_hash_of_the_folder(tmp_path):
    folder = tmp_path / "prepared"
    (folder / "sub").mkdir(parents=True)
    (folder / "card.json").write_text('{"source": "digits"}\n')
    (folder / "sub/train.parquet").write_bytes(bytes(range(256)) * 10)
    # What `dvc add` records for exactly these two files (dvc 3.67), checked by hand once.
    entries = '[{"md5": "' + __import__("hashlib").md5(b'{"source": "digits"}\n').hexdigest() + \
        '", "relpath": "card.json"}, {"md5": "' + __import__("hashlib").md5(bytes(range(256)) * 10).hexdigest() + \
        '", "relpath": "sub/train.parquet"}]'
    assert tracking.dvc_directory_md5(folder) == __import__("hashlib").md5(entries.encode()).hexdigest() + ".dir"
    before = tracking.prepared_dataset({"source": "digits", "binarization": "static"}, folder)
    (folder / "sub/train.parquet").write_bytes(b"other data")
    after = tracking.prepared_dataset({"source": "digits", "binarization": "static"}, folder)
    assert before.name == after.name == "digits-static" and before.digest != after.digest
    with pytest.raises(FileNotFoundError, match="run the prepare stage first"):
        tracking.dvc_directory_md5(tmp_path / "absent")


def test_a_logged_pyfunc_carries_its_request_signature_and_mlflow_enforces_it(tmp_path, monkeypatch):
    import warnings
    from pathlib import Path

    import torch

    from components.data.batch import DataSpec
    from components.models import build_model, save_model
    from components.serving import GenzooPyfunc, request_signature
    from tiny_models import ClassShade, class_spec, register

    register(monkeypatch, ClassShade)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("signatures")  # not the experiment id an earlier test left active in another store
    try:
        bernoulli = build_model("bernoulli", DataSpec.single((1, 2, 2)))
        with torch.no_grad():
            bernoulli.ones.copy_(torch.tensor([1.0, 2.0, 3.0, 0.0]))
            bernoulli.count.fill_(4)
        shade = ClassShade(class_spec(classes=4), ClassShade.Params())
        loaded = {}
        for key, model in (("bernoulli", bernoulli), ("shade", shade)):
            save_model(model, tmp_path / key)
            with warnings.catch_warnings(record=True) as caught, mlflow.start_run():
                warnings.simplefilter("always")
                info = mlflow.pyfunc.log_model(
                    name=key, python_model=GenzooPyfunc(), artifacts={"model_dir": str(tmp_path / key)},
                    code_paths=[str(Path(__file__).resolve().parents[1] / "components")],
                    pip_requirements=["torch", "pandas"], signature=request_signature(model))
            assert not [w for w in caught if "type hints" in str(w.message)]
            loaded[key] = mlflow.pyfunc.load_model(info.model_uri)
    finally:
        mlflow.set_tracking_uri(previous)

    inputs = loaded["bernoulli"].metadata.signature.inputs
    assert inputs.input_names() == ["num_samples", "seed", "0", "1", "2", "3"]
    assert inputs.required_input_names() == []
    assert loaded["bernoulli"].metadata.signature.outputs.to_dict()[0]["tensor-spec"]["shape"] == (-1, 1, 2, 2)
    assert loaded["bernoulli"].predict(pd.DataFrame({"num_samples": [3], "seed": [1]})).shape == (3, 1, 2, 2)
    images = np.array([[0, 1, 1, 0], [1, 1, 1, 1]], np.float32)
    expected = bernoulli.log_prob(torch.from_numpy(images).view(2, 1, 2, 2)).detach().numpy()
    log_p = loaded["bernoulli"].predict(pd.DataFrame(images).rename(columns=str))
    np.testing.assert_allclose(log_p, expected, rtol=1e-6)
    with pytest.raises(MlflowException, match="Failed to enforce schema"):   # MLflow's own refusal
        loaded["bernoulli"].predict(pd.DataFrame({"num_samples": ["many"]}))
    # A condition is a class index or a class name: the schema takes either.
    assert "condition" in loaded["shade"].metadata.signature.inputs.input_names()
    samples = loaded["shade"].predict(pd.DataFrame({"num_samples": [1, 1], "condition": [3, 0]}))
    assert samples.reshape(2, -1)[:, 0].tolist() == [1.0, 0.0]
