"""The three uses measured in `evaluate`: anomaly detection (AUROC of log-likelihoods),
representation learning (linear probe, k-NN), and the data they need (OOD set, held-out class)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from components.data.ood import natural_image_patches
from components.data.prepared import read_split
from components.metrics.anomaly import anomaly_auroc
from components.metrics.representation import probe_accuracies

REPO = Path(__file__).resolve().parents[1]


def test_auroc_is_one_when_every_anomaly_is_less_likely_and_a_half_when_nothing_differs():
    rng = np.random.default_rng(0)
    assert anomaly_auroc(rng.normal(0, 1, 300), rng.normal(-10, 1, 300)) == 1.0
    assert anomaly_auroc(rng.normal(0, 1, 2000), rng.normal(0, 1, 2000)) == pytest.approx(0.5, abs=0.03)
    # A model that finds the anomalies *more* likely scores below chance.
    assert anomaly_auroc(rng.normal(0, 1, 300), rng.normal(10, 1, 300)) == 0.0


def test_auroc_refuses_empty_or_non_finite_scores():
    with pytest.raises(ValueError, match="both"):
        anomaly_auroc(np.array([]), np.array([1.0]))
    with pytest.raises(ValueError, match="NaN"):
        anomaly_auroc(np.array([0.0, np.nan]), np.array([1.0]))


def test_probes_read_separable_labels_perfectly_and_random_labels_at_chance():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 800)
    centres = rng.normal(0, 10, (4, 5))
    codes = centres[labels] + rng.normal(0, 0.5, (800, 5))
    separable = probe_accuracies(codes[:600], labels[:600], codes[600:], labels[600:])
    assert separable["linear_probe_accuracy"] == 1.0 and separable["knn_accuracy"] == 1.0
    noise = rng.normal(0, 1, (800, 5))
    chance = probe_accuracies(noise[:600], labels[:600], noise[600:], labels[600:])
    assert abs(chance["linear_probe_accuracy"] - 0.25) < 0.1 and abs(chance["knn_accuracy"] - 0.25) < 0.1
    assert chance["majority_class_accuracy"] < 0.4


def test_natural_image_patches_have_the_data_shape_and_levels():
    patches = natural_image_patches(40, (1, 8, 8), levels=17, seed=3)
    assert patches.shape == (40, 1, 8, 8) and patches.min() >= 0 and patches.max() <= 1
    np.testing.assert_allclose(patches * 16, np.round(patches * 16), atol=1e-5)
    np.testing.assert_array_equal(patches, natural_image_patches(40, (1, 8, 8), levels=17, seed=3))
    assert natural_image_patches(4, (3, 5, 6), levels=256).shape == (4, 3, 5, 6)


def run_prepare(folder: Path, data: dict) -> subprocess.CompletedProcess:
    (folder / "params.yaml").write_text(json.dumps({"data": data}))
    return subprocess.run([sys.executable, "-m", "pipelines.prepare"], cwd=folder, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def test_prepare_holds_a_class_out_of_training_and_writes_the_anomaly_sets(tmp_path):
    result = run_prepare(tmp_path, {"source": "digits", "binarize": "static", "holdout_class": 3,
                                    "ood": {"source": "natural_image_patches", "count": 50}})
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "data/prepared"
    for split in ("train", "valid", "test"):
        assert 3 not in read_split(folder, split).labels
    holdout = read_split(folder, "holdout", "binary")
    assert len(holdout.images) > 0 and (holdout.labels == 3).all() and np.isin(holdout.images, (0, 1)).all()
    ood = read_split(folder, "ood", "grayscale")
    assert ood.images.shape == (50, 1, 8, 8) and ood.labels is None and ood.meta["levels"] == 17
    card = json.loads((folder / "card.json").read_text())
    assert card["ood"] == "natural_image_patches" and card["holdout_class"] == 3


def test_prepare_refuses_a_class_the_source_does_not_have(tmp_path):
    result = run_prepare(tmp_path, {"source": "digits", "binarize": "static", "holdout_class": 12})
    assert result.returncode != 0 and "holdout_class" in result.stderr
    assert not (tmp_path / "data/prepared").exists()


@pytest.fixture(scope="module")
def prepared_digits(tmp_path_factory):
    folder = tmp_path_factory.mktemp("prepared")
    result = run_prepare(folder, {"source": "digits", "binarize": "static", "holdout_class": 0,
                                  "ood": {"count": 60}, "max_examples": {"train": 300, "test": 80}})
    assert result.returncode == 0, result.stderr
    return folder / "data/prepared"


def evaluation_of(model, folder: Path):
    """An Evaluation of `model` on the prepared data in `folder`, without an evaluation classifier."""
    from components.data.batch import to_batch
    from components.evaluation import Evaluation

    splits = {split: read_split(folder, split, model.data_pixels) for split in ("test", "valid", "train")}
    return Evaluation(model, {"seed": 0, "num_samples": 20, "iwae_samples": 10}, folder, splits,
                      {name: to_batch(split) for name, split in splits.items()}, None,
                      {"reason": "no classifier in this test"})


@pytest.mark.parametrize("name, params", [
    ("vae", {"latent_dim": 2, "hidden_units": [16]}),
    ("aae", {"latent_dim": 2, "hidden_units": [16], "discriminator_units": [8]}),
    ("gan", {"latent_dim": 2, "hidden_units": 8}),
    ("nade", {"hidden_units": 8}),
])
def test_evaluation_measures_each_use_the_model_supports_and_names_the_rest(prepared_digits, name, params):
    import torch
    from sklearn.metrics import roc_auc_score

    from components.data.batch import DataSpec
    from components.evaluation import measure
    from components.latent_figures import interpolation_grid, latent_scatter, reconstruction_grid
    from components.models import build_model

    test = read_split(prepared_digits, "test", "binary")
    model = build_model(name, DataSpec.single(test.image_shape), params).eval()
    test_images = torch.from_numpy(test.images)
    ev = evaluation_of(model, prepared_digits)
    measured = measure(ev)
    if model.likelihood is None:
        assert measured["anomaly_detection"] == f"not supported: {name} defines no likelihood"
    else:
        test_log_prob = ev.test_log_prob
        assert len(test_log_prob) == len(test_images)
        assert measured["test_nll"] == pytest.approx(-test_log_prob.double().mean().item())
        assert measured["test_nll_standard_error"] == pytest.approx(
            test_log_prob.double().std().item() / len(test_log_prob) ** 0.5)
        # Each anomaly set is scored against the test split, the less likely image the more anomalous.
        torch.manual_seed(0)
        for split in ("ood", "holdout"):
            images = torch.from_numpy(read_split(prepared_digits, split, "binary").images)
            with torch.no_grad():
                scores = -torch.cat([test_log_prob, model.evaluation_log_prob(images, {"iwae_samples": 10})])
            truth = np.r_[np.zeros(len(test_log_prob)), np.ones(len(images))]
            tolerance = 0.05 if model.likelihood != "exact" else 1e-9   # a stochastic bound is redrawn
            assert measured[f"anomaly_auroc_{split}"] == pytest.approx(roc_auc_score(truth, scores), abs=tolerance)
        assert measured["anomaly_ood_set"] == "natural_image_patches" and measured["anomaly_holdout_class"] == 0
    if model.can("encode"):
        # Fitted on the training split's codes, scored on the test split's, against the true labels.
        train = read_split(prepared_digits, "train", "binary")
        with torch.no_grad():
            codes = [model.encode(torch.from_numpy(split.images)).numpy() for split in (train, test)]
        probes = probe_accuracies(codes[0], train.labels, codes[1], test.labels)
        assert {k: measured[k] for k in ("encode", *probes)} == {"encode": "supported", **probes}
        assert measured["linear_probe_accuracy"] > measured["majority_class_accuracy"]
    else:
        assert measured["representation"] == f"not supported: {name} has no encoder"
    assert (model.can("encode") and model.can("decode")) == (name in ("vae", "aae"))
    if model.can("decode"):
        assert reconstruction_grid(model, test_images).size == ((10 * 9 + 1) * 4, (4 * 9 + 1) * 4)
        assert interpolation_grid(model, test_images).size == ((12 * 9 + 1) * 4, (8 * 9 + 1) * 4)
        assert latent_scatter(model.encode(test_images).numpy(), test.labels, name).axes


def test_a_density_fitted_to_digits_finds_photo_patches_anomalous(prepared_digits):
    """The independent-pixel MLE of the digits gives natural-image patches far lower likelihood."""
    import torch

    from components.data.batch import Batch, DataSpec
    from components.evaluation import anomaly
    from components.models import build_model

    train = read_split(prepared_digits, "train", "binary")
    model = build_model("bernoulli", DataSpec.single(train.image_shape))
    model.on_epoch_start()
    model.training_step(Batch(torch.from_numpy(train.images)), {})
    assert anomaly(evaluation_of(model, prepared_digits))["anomaly_auroc_ood"] > 0.9
