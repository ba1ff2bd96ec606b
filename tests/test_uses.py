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
