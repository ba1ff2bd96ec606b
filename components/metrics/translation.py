"""Translation quality: how well a translating model (CycleGAN, StarGAN) moves images into a domain.

Measured by pipelines/evaluate.py on the test split and by benchmarks/image_to_image.py on MNIST,
so both report the same numbers; the caller supplies the evaluation classifier (evaluate: the one
trained on the prepared data, models/classifier; the benchmark: one trained on MNIST).
"""

from __future__ import annotations

import numpy as np
import torch

from components.classifier import predict, train_classifier
from components.data.batch import Batch
from components.metrics.sample_quality import bootstrap_standard_error, frechet_distance

# A domain classifier (the evaluation classifier's network, trained on the real train images of each
# domain) judges whether a translation reached its target, as the StarGAN paper's classifier does.
DOMAIN_CLASSIFIER = {"epochs": 5, "batch_size": 64, "lr": 1e-3}


@torch.no_grad()
def translation_metrics(model, test: Batch, valid: Batch, train: Batch, seed: int, classifier,
                        unavailable: str = "no evaluation classifier") -> dict:
    """For every target domain t, the test images of the other domains translated into t, against
    t's real test images: FID in the evaluation classifier's features, how often the classifier's
    label of a translation is its source's label (label preservation), and the error of a domain
    classifier asked whether the translation is of domain t (target classification error, and its
    complement `target_accuracy`: a network the model never trained against, unlike StarGAN's own
    D_cls); averaged over targets. Beside each, what doing nothing (the untranslated sources) scores,
    and the FID and error of real images of t (valid against test: the floor); each averaged FID with
    its bootstrap standard error (`translation_fid_standard_error`, ...: `fid_standard_errors`). Then the round trip
    (`round_trip_metrics`). `classifier`: the evaluation classifier, or None (then `unavailable` says
    why the FID is missing)."""
    names = model.spec.domain_names
    if test.domains is None or len(names) < 2:
        return {"translation_quality": "not measured: the data has fewer than 2 domains"}
    with torch.enable_grad():
        domain_classifier, _ = train_classifier(train.images, train.domains, valid.images, valid.domains, len(names),
                                                seed=seed, log=lambda line: None, **DOMAIN_CLASSIFIER)
    totals: dict[str, list[float]] = {}
    compared: dict[str, list] = {}   # FID suffix -> per target, what `fid_standard_errors` resamples
    for t, target in enumerate(names):
        source_rows, target_rows = test.domains != t, test.domains == t
        if not source_rows.any() or not target_rows.any():
            continue
        sources, real = test.images[source_rows], test.images[target_rows]
        moved = model.translate(sources, target).cpu().float()
        measured = {}
        for suffix, images in (("", moved), ("_of_identity", sources), ("_of_real", valid.images[valid.domains == t])):
            predicted = predict(domain_classifier, images)[1]
            measured[f"target_classification_error{suffix}"] = float((predicted != t).float().mean())
        if classifier is not None:
            real_features = predict(classifier, real)[0].double().numpy()
            for suffix, images, (split, rows) in (("", moved, ("test", source_rows)),
                                                  ("_of_identity", sources, ("test", source_rows)),
                                                  ("_of_real", valid.images[valid.domains == t],
                                                   ("valid", valid.domains == t))):
                features, labels = predict(classifier, images)
                measured[f"translation_fid{suffix}"] = frechet_distance(real_features, features.double().numpy())
                compared.setdefault(suffix, []).append(
                    (real_features, target_rows.numpy(), features.double().numpy(), split, rows.numpy()))
                if suffix != "_of_real" and test.labels is not None:
                    measured[f"label_preservation{suffix}"] = float(
                        (labels == test.labels[source_rows]).float().mean())
        for name, value in measured.items():
            totals.setdefault(name, []).append(value)
    metrics = {name: sum(values) / len(values) for name, values in totals.items()}
    if "target_classification_error" in metrics:
        metrics["target_accuracy"] = 1 - metrics["target_classification_error"]
    if compared:
        metrics.update(fid_standard_errors(compared, len(test.images), len(valid.images), seed))
    if classifier is not None and test.labels is not None:
        metrics.update(round_trip_metrics(model, test, classifier))
    if classifier is None:
        metrics["translation_fid"] = f"not available: {unavailable}"
    elif test.labels is None:
        metrics["label_preservation"] = "not measured: the data has no labels"
    return metrics


def _within(rows: np.ndarray, drawn: np.ndarray) -> np.ndarray:
    """Where the drawn indices of a split that fall in `rows` (a mask of it) are within those rows."""
    return (np.cumsum(rows) - 1)[drawn[rows[drawn]]]


def fid_standard_errors(compared: dict[str, list], test_size: int, valid_size: int, seed: int) -> dict:
    """The bootstrap standard error of each target-averaged translation FID (components/metrics/
    sample_quality.py: bootstrap_standard_error): the test and the validation images are resampled as
    a whole and every target's sets are the resampled images that belong to them, so the sources one
    target shares with another (every image not of t is a source for t) move together, as they would
    with another draw of test images. `compared`: FID suffix -> per target (real features, their test
    rows, compared features, the split they are of, their rows)."""
    def averages(test_drawn, valid_drawn):
        drawn = {"test": test_drawn, "valid": valid_drawn}
        return [np.mean([frechet_distance(real[_within(real_rows, test_drawn)], other[_within(rows, drawn[split])])
                         for real, real_rows, other, split, rows in targets]) for targets in compared.values()]

    errors = bootstrap_standard_error(averages, (test_size, valid_size), seed=seed)
    return {f"translation_fid{suffix}_standard_error": float(e) for suffix, e in zip(compared, errors)}


@torch.no_grad()
def round_trip_metrics(model, test: Batch, classifier) -> dict:
    """The test images of the first domain (the untransformed images in params.yaml's views, the ones
    the evaluation classifier reads) translated into each other domain t and back: how often the
    evaluation classifier's label of the returned image is the source's true label
    (`round_trip_label_preservation_via_<t>`, their mean `round_trip_label_preservation`), beside its
    accuracy on the untouched sources (`..._of_identity`, the ceiling). Unlike the one-way label
    preservation, this does not ask the classifier to read a rotated or thickened digit."""
    names = model.spec.domain_names
    rows = test.domains == 0
    if not rows.any():
        return {}
    sources, labels = test.images[rows], test.labels[rows]
    metrics = {"round_trip_label_preservation_of_identity": float((predict(classifier, sources)[1] == labels)
                                                                  .float().mean())}
    kept = []
    for target in names[1:]:
        back = model.translate(model.translate(sources, target), names[0]).cpu().float()
        kept.append(float((predict(classifier, back)[1] == labels).float().mean()))
        metrics[f"round_trip_label_preservation_via_{target}"] = kept[-1]
    metrics["round_trip_label_preservation"] = sum(kept) / len(kept)
    return metrics
