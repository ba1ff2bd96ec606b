"""The image-to-image family through the real pipeline: `dvc repro` in a temporary copy of the
repository with a tiny config holding only cyclegan, stargan and puzzle_gan (real DVC, Ray Train and
MLflow). cyclegan and stargan train on domain views of the one prepared single-domain dataset."""

import json

import pytest
import yaml

from components.report import read_evaluation

from tiny_pipeline import REPO, checkout, run, tiny_params as tiny_pipeline_params

pytestmark = pytest.mark.integration
KEYS = ("cyclegan", "stargan", "puzzle_gan")
TINY = {"width": 8, "residual_blocks": 1, "discriminator_width": 8, "pixels": "grayscale"}


def tiny_params() -> dict:
    models = yaml.safe_load((REPO / "params.yaml").read_text())["models"]
    return tiny_pipeline_params({
        "cyclegan": {**TINY, "model": "cyclegan", "domains": models["cyclegan"]["domains"], "known_mapping": "thicken"},
        "stargan": {**TINY, "model": "stargan", "domains": models["stargan"]["domains"], "labels": "attributes",
                    "n_critic": 2},
        "puzzle_gan": {"model": "puzzle_gan", "pixels": "grayscale", "width": 8, "code_dim": 16},
    }, examples=(240, 60, 80), batch_size=32, ood_count=50)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    copy = checkout(tmp_path_factory.mktemp("genzoo-i2i"), tiny_params())
    first = run(["dvc", "repro"], copy)
    (copy / "first-repro.log").write_text(first.stdout + first.stderr)
    return copy


def test_all_three_are_trained_evaluated_and_registered_with_a_champion(repo):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    expected_metric = {"cyclegan": "translation_fid", "stargan": "target_classification_error",
                       "puzzle_gan": "patch_l1"}
    for key in KEYS:
        champion = client.get_model_version_by_alias(f"genzoo-{key}", "champion")
        metrics = read_evaluation(repo / f"reports/{key}")
        assert metrics["promotion_metric"] == expected_metric[key]
        assert champion.tags["genzoo.metric"] == expected_metric[key]
        assert float(champion.tags["genzoo.metric_value"]) == pytest.approx(metrics[expected_metric[key]])
        assert (repo / f"reports/{key}/figures/{'completions' if key == 'puzzle_gan' else 'translations'}.png"
                ).stat().st_size > 0
        logged = json.loads((repo / f"models/{key}/mlflow.json").read_text())
        metadata = client.get_logged_model(logged["model_id"])
        assert metadata.name == key
    # The views: the model was built for the entry's domains, evaluated on them, and says so.
    for key, names in (("cyclegan", ["plain", "thick"]), ("stargan", ["plain", "thick", "thin", "rotated"])):
        spec = json.loads((repo / f"models/{key}/config.json").read_text())["spec"]
        assert [d["name"] for d in spec["domains"]] == names
        metrics = json.loads((repo / f"reports/{key}/metrics.json").read_text())
        for name in ("translation_fid", "translation_fid_of_identity", "label_preservation",
                     "target_classification_error", "target_classification_error_of_real"):
            assert isinstance(metrics[name], float), (key, name, metrics.get(name))
    cyclegan = json.loads((repo / "reports/cyclegan/metrics.json").read_text())
    assert {"known_mapping_error", "known_mapping_error_of_identity", "cycle_error_x"} <= set(cyclegan)
    stargan = json.loads((repo / "reports/stargan/metrics.json").read_text())
    assert {"target_accuracy", "reconstruction_error"} <= set(stargan)
    puzzle = json.loads((repo / "reports/puzzle_gan/metrics.json").read_text())
    assert {"mask_iou", "patch_l1", "completion_fid"} <= set(puzzle)
    # The served model's metadata lists its domains and image shape.
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{repo / 'mlflow.db'}")
    info = mlflow.models.get_model_info("models:/genzoo-cyclegan@champion")
    assert [d["name"] for d in info.metadata["domains"]] == ["plain", "thick"]
    assert info.metadata["image_shape"] == [1, 8, 8]
    # No view is left behind beside the checkpoints.
    assert not list((repo / "ray_results").glob("domain-view-*"))


def test_changing_a_models_domains_reruns_that_model_alone(repo):
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["models"]["cyclegan"]["domains"][1] = {"name": "thin", "transform": "thin"}
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = run(["dvc", "status", "--json"], repo)
    changed = set(json.loads(status.stdout))
    # promote reads every model's params; evaluate@cyclegan follows from train@cyclegan's new output
    assert changed == {"train@cyclegan", "promote"}, changed
