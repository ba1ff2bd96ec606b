"""Model selection: which epoch's weights to keep, and when to stop early.

A model declares `selection = (metric, "min" | "max")`. The metric is one of
its validation metrics, measured every epoch, or a sample-quality metric the
trainer measures every `select_every` epochs (`SAMPLE_QUALITY`: FID of samples
against the validation split, in the evaluation classifier's features), for
models without a likelihood. Patience counts measurements without a better
value, so it means the same for both.

A conditional model (cgan, gan_cls) is selected by `intra_fid` (Miyato & Koyama 2018): the mean over
classes of the FID of the samples asked for class k against the reference images of class k. It
includes the condition: a model whose samples ignore their condition scores badly however good their
unconditional FID. A label-conditional model is asked for every class equally; another (captions) is
asked for the validation split's own conditions in turn, each sample's class the label of the image
its condition came from. The reference images' classes are the evaluation classifier's labels (it is
~97% accurate on the digits). `conditional_accuracy` (how often the classifier sees the asked class)
is recorded beside it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from components.classifier import load_classifier, predict
from components.data.batch import Batch
from components.metrics.sample_quality import asked_conditions, conditional_accuracy, frechet_distance, per_class_fid

SAMPLE_QUALITY = ("fid", "intra_fid")


class Selection:
    def __init__(self, metric: str, direction: str, patience: int):
        self.metric, self.direction, self.patience = metric, direction, int(patience)
        self.key = f"val_{metric}"
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.bad = 0
        self.best_weights: dict | None = None

    def better(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.best is None:
            return True
        return value < self.best if self.direction == "min" else value > self.best

    def update(self, record: dict, weights: Callable[[], dict]) -> bool:
        """Take the epoch's `record`; keep `weights()` when its value is the best so far."""
        if self.key not in record:
            return False  # not measured this epoch
        value = float(record[self.key])
        if self.better(value):
            self.best, self.best_epoch, self.bad, self.best_weights = value, record["epoch"], 0, weights()
            return True
        self.bad += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.bad >= self.patience

    def describe(self) -> str:
        return f"{self.key} ({self.direction})"

    def state_dict(self) -> dict:
        return {"metric": self.metric, "direction": self.direction, "best": self.best,
                "best_epoch": self.best_epoch, "bad": self.bad, "best_weights": self.best_weights}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch, self.bad = state["best"], state["best_epoch"], state["bad"]
        self.best_weights = state["best_weights"]


class SampleQuality:
    """FID of `num_samples` model samples against `reference` images (a validation Batch: its images,
    and the conditions and labels a conditional model is asked for), in the evaluation classifier's
    features. The reference features are computed once; the samples are seeded per epoch."""

    def __init__(self, classifier, reference: Batch, num_samples: int, seed: int = 0):

        self.classifier, self.num_samples, self.seed = classifier, int(num_samples), int(seed)
        self.given = reference
        features, labels = predict(classifier, reference.images)
        self.reference, self.reference_labels = features.double().numpy(), labels.numpy()

    @torch.no_grad()
    def __call__(self, model, epoch: int) -> dict[str, float]:

        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        condition, asked = asked_conditions(model, self.num_samples, self.given)
        model.eval()
        samples = model.sample(self.num_samples, condition=condition, generator=generator).float().cpu()
        features, predicted = predict(self.classifier, samples)
        features = features.double().numpy()
        if not np.isfinite(features).all():
            return {"fid": math.inf, **({"intra_fid": math.inf} if asked is not None else {})}
        measured = {"fid": frechet_distance(self.reference, features)}
        if asked is not None:
            per_class = per_class_fid(self.reference, self.reference_labels, features, asked, model.spec.num_classes)
            measured["intra_fid"] = float(np.nanmean(per_class)) if np.isfinite(per_class).any() else math.inf
            accuracy = conditional_accuracy(predicted.numpy(), asked, model.spec.num_classes)
            measured["conditional_accuracy"] = accuracy["conditional_accuracy"]
        return measured


def sample_quality_from(folder: Path, reference: Batch, num_samples: int, seed: int):
    """A `SampleQuality` with the classifier saved in `folder`, or (None, why) when there is none."""

    if not (Path(folder) / "config.json").is_file():
        return None, f"no evaluation classifier in {folder}"
    classifier, config = load_classifier(folder)
    if classifier is None:
        return None, f"no evaluation classifier: {config.get('reason', 'the data has no labels')}"
    return SampleQuality(classifier, reference, num_samples, seed), None
