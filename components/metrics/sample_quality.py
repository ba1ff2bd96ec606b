"""Sample-quality metrics computed in a feature space (the evaluation classifier's).

* Fréchet distance (FID, Heusel et al. 2017) between Gaussians fitted to the features, and its
  bootstrap standard error (`fid_standard_error`): which differences between two FIDs are real;
* KID (Bińkowski et al. 2018): unbiased MMD^2 with the cubic polynomial kernel,
  averaged over subsets; unbiased, so it can be slightly negative;
* precision / recall (Kynkäänniemi et al. 2019): the share of samples inside the
  real data's k-NN manifold, and of real images inside the samples' manifold;
* conditional accuracy: for a class-conditional model, the share of samples the
  classifier assigns to the class they were asked for (chance: 1 / classes);
* class coverage: the share of classes that receive at least half of their
  uniform share of samples, and the normalized entropy of the class histogram;
* per-class FID: for a class-conditional model, the FID of the samples asked
  for class k against the real images of class k, for every k;
* matched accuracy: for samples drawn with an unsupervised code value (InfoGAN's
  categorical code), the classifier's accuracy under the best one-to-one map of
  code values to classes (`SampleJudge.matched_accuracy`, components/metrics/clustering.py).

`SampleJudge` holds the evaluation classifier and the real test images' features,
so a model's evaluation hooks can measure the samples only they know how to ask for.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from scipy import linalg

from components.classifier import predict
from components.errors import ConfigError
from components.metrics.clustering import unsupervised_accuracy


def frechet_distance(real: np.ndarray, fake: np.ndarray) -> float:
    mu_r, mu_f = real.mean(0), fake.mean(0)
    cov_r, cov_f = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    with warnings.catch_warnings():  # singular products are expected with ReLU features; handled below
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(cov_r @ cov_f)
    if not np.isfinite(covmean).all():  # near-singular product: regularize, as the reference code does
        offset = np.eye(len(cov_r)) * 1e-6
        covmean = linalg.sqrtm((cov_r + offset) @ (cov_f + offset))
    covmean = covmean.real
    return float(((mu_r - mu_f) ** 2).sum() + np.trace(cov_r) + np.trace(cov_f) - 2 * np.trace(covmean))


# Bootstrap resamples behind a standard error: the error of the standard error itself is about
# 1 / sqrt(2 (B - 1)), 13% at 30, for ~30 FIDs (about 1 s of 128-dimensional features on one core).
RESAMPLES = 30


def bootstrap_standard_error(statistic, sizes, resamples: int = RESAMPLES, seed: int = 0) -> np.ndarray:
    """The bootstrap standard error (Efron & Tibshirani 1993, ch. 6) of `statistic(*indices)`: its
    standard deviation over `resamples` draws of indices, for each set of `sizes` as many indices
    drawn with replacement from it, the sets independently. Seeded by `seed` alone (its own
    generator), so it leaves every other random stream as it was."""
    rng = np.random.default_rng(seed)
    values = [statistic(*(rng.integers(0, n, n) for n in sizes)) for _ in range(resamples)]
    return np.std(np.asarray(values, dtype=np.float64), axis=0, ddof=1)


def fid_standard_error(real: np.ndarray, fake: np.ndarray, resamples: int = RESAMPLES, seed: int = 0) -> float:
    """The standard error of `frechet_distance(real, fake)` due to the finite sets of images: the
    standard deviation of the FID over `resamples` (30) bootstrap resamples of the real and of the
    generated features, each resampled with replacement at its own size. The features are fixed (the
    evaluation classifier's), so this is the spread another draw of as many test images and samples
    would give. It leaves out FID's bias at a finite size (larger the fewer the images): compare FIDs
    of equally many images."""
    return float(bootstrap_standard_error(lambda r, f: frechet_distance(real[r], fake[f]),
                                          (len(real), len(fake)), resamples, seed))


def kernel_inception_distance(real: np.ndarray, fake: np.ndarray, subsets: int = 10,
                              subset_size: int = 200, seed: int = 0) -> tuple[float, float]:
    """(mean, std) of the unbiased MMD^2 estimate over random subsets."""
    rng = np.random.default_rng(seed)
    d = real.shape[1]
    m = min(subset_size, len(real), len(fake))
    estimates = []
    for _ in range(subsets):
        x = real[rng.choice(len(real), m, replace=False)]
        y = fake[rng.choice(len(fake), m, replace=False)]
        kxx, kyy, kxy = ((x @ x.T) / d + 1) ** 3, ((y @ y.T) / d + 1) ** 3, ((x @ y.T) / d + 1) ** 3
        off_diagonal = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        estimates.append(off_diagonal - 2 * kxy.mean())
    return float(np.mean(estimates)), float(np.std(estimates))


def _distances(a: np.ndarray, b: np.ndarray, chunk: int = 1024):
    """Yield (row offset, pairwise distances) a chunk of rows of `a` at a time (bounded memory)."""
    tb = torch.from_numpy(b)
    for start in range(0, len(a), chunk):
        yield start, torch.cdist(torch.from_numpy(a[start:start + chunk]), tb)


def _knn_radii(features: np.ndarray, k: int) -> np.ndarray:
    radii = np.empty(len(features))
    for start, d in _distances(features, features):
        radii[start:start + len(d)] = d.kthvalue(k + 1, dim=1).values.numpy()  # k+1: itself is nearest
    return radii


def _inside_manifold(points: np.ndarray, support: np.ndarray, radii: np.ndarray) -> float:
    r = torch.from_numpy(radii)
    inside = sum(int((d <= r[None]).any(dim=1).sum()) for _, d in _distances(points, support))
    return inside / len(points)


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    precision = _inside_manifold(fake, real, _knn_radii(real, k))
    recall = _inside_manifold(real, fake, _knn_radii(fake, k))
    return precision, recall


def class_coverage(predicted: np.ndarray, num_classes: int) -> dict[str, float]:
    counts = np.bincount(predicted, minlength=num_classes).astype(np.float64)
    share = counts / max(counts.sum(), 1)
    nonzero = share[share > 0]
    return {"class_coverage": float((share >= 0.5 / num_classes).mean()),
            "class_entropy": float(-(nonzero * np.log(nonzero)).sum() / np.log(num_classes))}


def sample_quality(real_features: np.ndarray, fake_features: np.ndarray, fake_predictions: np.ndarray,
                   num_classes: int, seed: int = 0) -> dict[str, float]:
    real, fake = real_features.astype(np.float64), fake_features.astype(np.float64)
    kid, kid_std = kernel_inception_distance(real, fake, seed=seed)
    precision, recall = precision_recall(real, fake)
    return {"fid": frechet_distance(real, fake), "fid_standard_error": fid_standard_error(real, fake, seed=seed),
            "kid": kid, "kid_std": kid_std,
            "precision": precision, "recall": recall, **class_coverage(fake_predictions, num_classes)}


def asked_conditions(model, n: int, given) -> tuple[object, np.ndarray | None]:
    """What `n` samples of a conditional model are asked for, and the class of each: every class equally
    often (labels), else the conditions of `given` (a Batch) in turn, each of the class of the row it came
    from (None without labels); (None, None) for an unconditional model. Evaluation and selection ask alike."""
    if not model.can("conditional_sample"):
        return None, None
    if model.condition == "labels" and model.spec.num_classes:
        condition = torch.arange(n) % model.spec.num_classes
        return condition, condition.numpy()
    conditions = getattr(given, model.condition)
    if conditions is None:
        raise ConfigError(f"{model.name} samples given {model.condition}, but the data has none")
    order = torch.arange(n) % len(conditions)
    condition = (conditions[order] if isinstance(conditions, torch.Tensor)
                 else [conditions[i] for i in order.tolist()])
    return condition, None if given.labels is None else given.labels[order].numpy()


def conditional_accuracy(predicted: np.ndarray, asked: np.ndarray, num_classes: int) -> dict[str, float]:
    """How often the classifier sees the class a sample was asked for, beside chance; per asked class
    too, and the worst class's: a model may obey its condition for most classes and ignore it for one."""
    predicted, asked = np.asarray(predicted), np.asarray(asked)
    if predicted.shape != asked.shape or len(asked) == 0:
        raise ValueError(f"conditional accuracy: {predicted.shape} predictions for {asked.shape} asked classes")
    per_class = {f"conditional_accuracy_class_{k}": float((predicted[asked == k] == k).mean())
                 for k in np.unique(asked).tolist()}
    return {"conditional_accuracy": float((predicted == asked).mean()),
            "conditional_accuracy_chance": 1.0 / num_classes,
            "conditional_accuracy_worst_class": min(per_class.values()), **per_class}


def per_class_fid(real_features: np.ndarray, real_labels: np.ndarray, fake_features: np.ndarray,
                  asked: np.ndarray, num_classes: int) -> np.ndarray:
    """(num_classes,) FID of the samples asked for class k against the real images of class k; NaN
    where either side has fewer than two (no covariance)."""
    real_labels, asked = np.asarray(real_labels), np.asarray(asked)
    if len(real_labels) != len(real_features) or len(asked) != len(fake_features):
        raise ValueError(f"per-class FID: {len(real_features)} real features for {len(real_labels)} labels, "
                         f"{len(fake_features)} sample features for {len(asked)} asked classes")
    real, fake = real_features.astype(np.float64), fake_features.astype(np.float64)
    values = np.full(num_classes, np.nan)
    for k in range(num_classes):
        r, f = real[real_labels == k], fake[asked == k]
        if len(r) >= 2 and len(f) >= 2:
            values[k] = frechet_distance(r, f)
    return values


def per_class_fid_metrics(values: np.ndarray) -> dict[str, float]:
    """`fid_class_<k>` for each measured class and their mean `per_class_fid_mean`."""
    measured = {k: float(v) for k, v in enumerate(values) if np.isfinite(v)}
    if not measured:
        return {"per_class_fid": "not measured: no class has two real images and two samples"}
    return {**{f"fid_class_{k}": v for k, v in measured.items()},
            "per_class_fid_mean": float(np.mean(list(measured.values())))}


class SampleJudge:
    """The evaluation classifier and the real images samples are compared with (features and labels)."""

    def __init__(self, classifier, real_images, real_labels, num_classes: int, reference=None):
        """`reference`: (images, labels) of other real images (e.g. the training split): the floor."""
        self.classifier, self.num_classes = classifier, int(num_classes)
        self.real_features = self.features(real_images)[0]
        self.real_labels = None if real_labels is None else np.asarray(real_labels)
        self.reference = reference

    def features(self, images) -> tuple[np.ndarray, np.ndarray]:
        """(features as float64, predicted labels) of images (N, C, H, W) in [0, 1]."""
        features, labels = predict(self.classifier, torch.as_tensor(images, dtype=torch.float32).cpu())
        return features.double().numpy(), labels.numpy()

    def accuracy(self, samples, asked) -> float:
        """The share of samples the classifier puts in the class they were asked for."""
        return conditional_accuracy(self.features(samples)[1], asked, self.num_classes)["conditional_accuracy"]

    def matched_accuracy(self, samples, values) -> float:
        """How often the classifier's class of a sample is the one its code value (N,) maps to, under
        the best one-to-one map of values to classes (components/metrics/clustering.py)."""
        return unsupervised_accuracy(values, self.features(samples)[1])

    def per_class_fid(self, samples, asked) -> np.ndarray:
        if self.real_labels is None:
            raise ValueError("per-class FID needs the real images' labels")
        return per_class_fid(self.real_features, self.real_labels, self.features(samples)[0], asked,
                             self.num_classes)

    def per_class_floor(self, per_class: int) -> np.ndarray | None:
        """Per-class FID of `per_class` reference images of each class (the first ones) against the
        real images of that class: what a model drawing real images would score with as many
        samples. None without reference images and labels."""
        if self.reference is None or self.reference[1] is None or self.real_labels is None:
            return None
        images, labels = self.reference
        labels = np.asarray(labels)
        chosen = np.concatenate([np.flatnonzero(labels == k)[:per_class] for k in range(self.num_classes)])
        return self.per_class_fid(np.asarray(images)[chosen], labels[chosen])

    def fid(self, samples, real_images=None) -> float:
        """FID of samples against the real images (by default the judge's own; others, e.g. the same
        images at a lower resolution, when given)."""
        real = self.real_features if real_images is None else self.features(real_images)[0]
        return frechet_distance(real, self.features(samples)[0])
