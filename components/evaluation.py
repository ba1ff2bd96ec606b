"""Evaluation as a table: for each capability a model declares, the measurements it gets.

    MEASUREMENTS: (capabilities, measurements, reasons when the model has none of them)

Each measurement is a small function of an `Evaluation` (the model, params.yaml's `evaluate`
settings, the splits, and the evaluation classifier loaded once with the test images' features)
that returns its numbers, or for a figure it cannot have, the reason ("not measured: ...", "not
available: ..."); a capability the model lacks is recorded as "not supported: <model> <why>".
components/report.py writes the numbers to metrics.json and the reasons to evaluation.json.

A model's evaluation hooks (`evaluation_metrics`, `evaluation_figures`) add what only the model knows
how to measure or draw; a name the generic table also gives is an error, not a replacement.
"""

from __future__ import annotations

import dataclasses
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from components.classifier import EvaluationClassifier
from components.completion import lower_half_hidden
from components.data.batch import Batch, Split
from components.data.prepared import draw_binary, read_split
from components.latent_figures import interpolation_grid, latent_scatter, reconstruction_grid
from components.metrics.anomaly import anomaly_auroc
from components.metrics.likelihood import bits_per_dim, per_image_log_prob
from components.metrics.representation import probe_accuracies
from components.metrics.sample_quality import SampleJudge, asked_conditions, conditional_accuracy, sample_quality
from components.metrics.translation import translation_metrics
from components.models.base import GenerativeModel
from components.plots import draw, image_grid
from components.report import promotion_metric


@dataclasses.dataclass
class Evaluation:
    """What every measurement is given. `splits`/`batches`: test, valid and train of the data the
    model was trained on, in its pixel format; `classifier`: the evaluation classifier, None when
    the data had no labels to train one (`classifier_config["reason"]` says so)."""
    model: GenerativeModel
    settings: dict                       # params.yaml's `evaluate`
    folder: Path                         # the prepared data (or the model's domain view of it)
    splits: dict[str, Split]
    batches: dict[str, Batch]
    classifier: EvaluationClassifier | None
    classifier_config: dict

    @property
    def seed(self) -> int:
        return self.settings["seed"]

    @cached_property
    def judge(self) -> SampleJudge | None:
        """The classifier with the test images' features (computed here, once), the training images as
        the real-data reference; None without a classifier."""
        if self.classifier is None:
            return None
        train = self.splits["train"]
        return SampleJudge(self.classifier, self.splits["test"].images, self.splits["test"].labels,
                           self.classifier_config["num_classes"], reference=(train.images, train.labels))

    def quality(self, images: np.ndarray) -> tuple[dict, np.ndarray | None]:
        """(sample quality of `images` against the test images, the classifier's labels of them)."""
        if self.judge is None:
            return {"sample_quality": f"not available: {self.classifier_config['reason']}"}, None
        features, labels = self.judge.features(images)
        return sample_quality(self.judge.real_features, features, labels, self.judge.num_classes, self.seed), labels

    @cached_property
    def real_data_quality(self) -> dict:
        """The same yardstick between two sets of real images (validation against test): the floor a
        perfect model would reach, `real_data_<metric>`."""
        if self.judge is None:
            return {}
        return {f"real_data_{k}": v for k, v in self.quality(self.splits["valid"].images)[0].items()}

    @cached_property
    def drawn(self) -> tuple[np.ndarray, np.ndarray | None]:
        """(the evaluation samples, the class each was asked for, or None): `num_samples` of them, drawn
        once for the measurements and the figures."""
        n = self.settings["num_samples"]
        condition, classes = asked_conditions(self.model, n, self.batches["test"])
        # A caption model's classes are measured by its own hook, per phrasing (gan_cls), not here.
        asked = classes if label_conditioned(self.model) else None
        return draw_samples(self.model, n, condition, self.seed), asked

    @cached_property
    def sample_scores(self) -> tuple[dict, np.ndarray | None]:
        """`quality` of the evaluation samples."""
        return self.quality(self.drawn[0])

    @property
    def samples(self) -> np.ndarray | None:
        """The evaluation samples (for the figures), None for a model that cannot sample."""
        return self.drawn[0] if self.model.can("sample") or self.model.can("conditional_sample") else None

    @cached_property
    def test_log_prob(self) -> torch.Tensor:
        """Per-image log p(x) of the test images."""
        return log_likelihood(self.model, self.settings, self.batches["test"].images)


# --- the measurements -------------------------------------------------------------------------------

def log_likelihood(model, settings: dict, images: torch.Tensor) -> torch.Tensor:
    """Per-image log p(x) as the model's evaluation estimator gives it (e.g. the VAE's
    importance-weighted bound with `evaluate.iwae_samples` samples)."""
    return per_image_log_prob(lambda x: model.evaluation_log_prob(x, settings), images, batch_size=64)


def likelihood(ev: Evaluation) -> dict:
    """The test NLL in nats and bits per dimension, with the standard error of the mean over images
    (which differences between models are real)."""
    log_p = ev.test_log_prob.double()
    nll = float(-log_p.mean())
    standard_error = float(log_p.std() / len(log_p) ** 0.5) if len(log_p) > 1 else float("nan")
    return {"likelihood": ev.model.likelihood, "test_nll": nll, "test_nll_standard_error": standard_error,
            "test_bits_per_dim": bits_per_dim(nll, ev.model.num_pixels)}


def anomaly(ev: Evaluation) -> dict:
    """Density estimation used for anomaly detection: AUROC of -log p(x) separating the test split
    from each anomaly set that prepare wrote (another dataset; a held-out class)."""
    meta = ev.splits["test"].meta
    metrics = {"anomaly_ood_set": meta.get("ood") or "none"}
    for split, absent in (("ood", "no OOD set prepared"),
                          ("holdout", "data.holdout_class is not set: the model saw every class")):
        if not (ev.folder / f"{split}.parquet").exists():
            metrics[f"anomaly_auroc_{split}"] = f"not measured: {absent}"
            continue
        images = torch.from_numpy(read_split(ev.folder, split, ev.model.data_pixels).images)
        anomalies = log_likelihood(ev.model, ev.settings, images)
        metrics[f"anomaly_auroc_{split}"] = anomaly_auroc(ev.test_log_prob.numpy(), anomalies.numpy())
    if meta.get("holdout_class") is not None:
        metrics["anomaly_holdout_class"] = meta["holdout_class"]
    return metrics


def samples(ev: Evaluation) -> dict:
    """Sample quality in the evaluation classifier's features (FID with its standard error, KID,
    precision/recall, class coverage), beside real data's."""
    return {**ev.sample_scores[0], **ev.real_data_quality}


def conditional(ev: Evaluation) -> dict:
    """For samples asked for a class: how often the evaluation classifier sees the class asked for."""
    labels, asked = ev.sample_scores[1], ev.drawn[1]
    if asked is None or labels is None:
        return {}
    return conditional_accuracy(labels, asked, ev.judge.num_classes)


def translation(ev: Evaluation) -> dict:
    """Translations into each domain against its real images (components/metrics/translation.py)."""
    return translation_metrics(ev.model, ev.batches["test"], ev.batches["valid"], ev.batches["train"], ev.seed,
                               ev.classifier, ev.classifier_config.get("reason", ""))


def completion_observed(model):
    """What evaluation lets a completing model see: the upper half (pixels), or nothing it did not
    pick itself (key patches: `observed` None)."""
    return lower_half_hidden(model.image_shape) if model.completes_from == "pixels" else None


def completion(ev: Evaluation) -> dict:
    """Sample quality of completed test images (`completion_fid`, ...) against the test images."""
    completed = ev.model.complete(ev.batches["test"].images, completion_observed(ev.model),
                                  torch.Generator().manual_seed(ev.seed))
    quality = ev.quality(completed.cpu().numpy())[0]
    return {**{f"completion_{k}": v for k, v in quality.items()}, **ev.real_data_quality}


@torch.no_grad()
def encoded(model, images: torch.Tensor) -> np.ndarray:
    return torch.cat([model.encode(images[start:start + 256]).cpu() for start in range(0, len(images), 256)]).numpy()


def codes_of(model, split: Split) -> np.ndarray:
    # A dynamically binarized train split: the one fixed draw evaluation uses.
    return encoded(model, torch.from_numpy(draw_binary(split).images))


def representation(ev: Evaluation) -> dict:
    """Representation learning: label accuracy of a linear probe and k-NN on the codes of a model
    trained without labels (fitted on the train split, scored on the test split)."""
    train, test = ev.splits["train"], ev.splits["test"]
    if train.labels is None or test.labels is None:
        return {"encode": "supported", "representation": "not measured: the data has no labels"}
    return {"encode": "supported", **probe_accuracies(codes_of(ev.model, train), train.labels,
                                                      codes_of(ev.model, test), test.labels)}


# Capabilities -> the measurements a model with any of them gets, in the order they run (they share
# the global torch generator, seeded once per evaluation, so the order is part of the result), and
# what is recorded instead, as "not supported: <model> <why>", when it has none.
MEASUREMENTS = [
    (("translate",), [translation], {}),
    (("complete",), [completion], {}),
    (("log_prob",), [likelihood, anomaly],
     {"log_prob": "defines no likelihood", "anomaly_detection": "defines no likelihood"}),
    (("sample", "conditional_sample"), [samples, conditional], {"sample_quality": "cannot sample"}),
    (("encode",), [representation], {"encode": "has no encoder", "representation": "has no encoder"}),
]


def measure(ev: Evaluation) -> dict:
    """The model's own measurements (its `evaluation_metrics` hook), then the table's: name -> number,
    description or reason."""
    own = ev.model.evaluation_metrics(ev.batches["test"], hook_settings(ev))
    metrics = dict(own)
    for capabilities, measurements, unsupported in MEASUREMENTS:
        if any(ev.model.can(c) for c in capabilities):
            measured = {k: v for measurement in measurements for k, v in measurement(ev).items()}
        else:
            measured = {k: f"not supported: {ev.model.name} {why}" for k, why in unsupported.items()}
        clash = own.keys() & measured.keys()
        if clash:
            raise ValueError(f"{ev.model.name}'s evaluation_metrics reports {sorted(clash)}, which evaluation "
                             "measures for every model that can; a model's own figures take names of their own")
        metrics.update(measured)
    return metrics


def described(model) -> dict:
    """What the model is, recorded beside its measurements."""
    return {"model": model.name, "family": model.family, "capabilities": sorted(model.capabilities),
            "promotion_metric": promotion_metric(type(model)), "pixels": model.data_pixels, "levels": model.levels,
            "parameters": sum(p.numel() for p in model.parameters()),
            **({"condition": model.condition} if model.condition else {})}


def hook_settings(ev: Evaluation) -> dict:
    """What the model's evaluation hooks get: params.yaml's `evaluate` settings and `judge` (the
    evaluation classifier with the test images' features, the training images as the real-data
    reference; None without a classifier), to measure samples only the model knows how to ask for."""
    return {**ev.settings, "judge": ev.judge}


# --- samples and figures ---------------------------------------------------------------------------

def label_conditioned(model) -> bool:
    return model.can("conditional_sample") and model.condition == "labels"


@torch.no_grad()
def draw_samples(model, n: int, condition, seed: int) -> np.ndarray:
    samples = model.sample(n, condition=condition, generator=torch.Generator().manual_seed(seed)).cpu().numpy()
    if samples.shape != (n, *model.image_shape) or samples.min() < 0 or samples.max() > 1:
        raise RuntimeError(f"{model.name}: samples have shape {samples.shape} and range "
                           f"[{samples.min()}, {samples.max()}], expected ({n}, *{model.image_shape}) in [0, 1]")
    return samples


def class_grid(model, seed: int, columns: int = 10):
    """One row per class: `columns` samples asked for that class."""
    classes = torch.arange(model.spec.num_classes).repeat_interleave(columns)
    return image_grid(draw_samples(model, len(classes), classes, seed), columns=columns)


def completion_grid(model, test_images: torch.Tensor, seed: int):
    """Rows: 10 test images, their upper halves, then three completions of the lower half."""
    originals = test_images[:10]
    observed = lower_half_hidden(model.image_shape)
    generator = torch.Generator().manual_seed(seed)
    rows = [originals, torch.where(observed, originals, torch.full_like(originals, 0.5))]
    rows += [model.complete(originals, observed, generator) for _ in range(3)]
    return image_grid(torch.cat(rows).numpy(), columns=10)


def domain_sources(test: Batch, count: int, per_domain: int) -> torch.Tensor:
    """Indices of the first `per_domain` test images of each of `count` domains, domain by domain."""
    return torch.cat([torch.nonzero(test.domains == d).flatten()[:per_domain] for d in range(count)])


@torch.no_grad()
def translation_grid(model, test: Batch, columns: int = 12):
    """Columns: test images of every domain in turn. Rows: the sources; then, per target domain, the
    sources translated into it and those translations translated back into each source's own domain."""
    names = model.spec.domain_names
    if test.domains is None or len(names) < 2:
        sources, own = test.images[:columns], [names[0]] * min(columns, len(test.images))
    else:
        index = domain_sources(test, len(names), max(1, columns // len(names)))
        sources, own = test.images[index], [names[int(d)] for d in test.domains[index]]
    rows = [sources]
    for target in names:
        moved = model.translate(sources, target).cpu()
        back = torch.empty_like(moved)
        for name in dict.fromkeys(own):
            where = torch.tensor([o == name for o in own])
            back[where] = model.translate(moved[where], name).cpu()
        rows += [moved, back]
    return image_grid(torch.cat(rows).numpy(), columns=len(sources))


def figures_of(model, key: str, test: Batch, samples: np.ndarray | None, settings: dict) -> dict:
    """File name -> picture (PIL image or matplotlib figure): one for each capability the model
    declares, and those its `evaluation_figures` hook describes (components/pictures.py), drawn here,
    which may not reuse a generic one's name."""
    seed = settings["seed"]
    own = {name: draw(picture) for name, picture in model.evaluation_figures(test, settings).items()}
    figures = {}
    if samples is not None:
        figures["samples.png"] = image_grid(samples[:100], columns=10)
    if label_conditioned(model) and model.spec.num_classes:
        figures["class_samples.png"] = class_grid(model, seed)
    # The generic grid shows a model the upper half; one that picks its key patches itself draws what
    # it was given (its hook).
    if model.can("complete") and model.completes_from == "pixels":
        figures["completions.png"] = completion_grid(model, test.images, seed)
    if model.can("translate"):
        figures["translations.png"] = translation_grid(model, test)
    if model.can("encode") and model.can("decode"):
        figures["reconstructions.png"] = reconstruction_grid(model, test.images)
        figures["interpolations.png"] = interpolation_grid(model, test.images)
        labels = None if test.labels is None else test.labels.numpy()
        figures["latent_scatter.png"] = latent_scatter(encoded(model, test.images), labels,
                                                       f"{key}: test codes by label")
    clash = figures.keys() & own.keys()
    if clash:
        raise ValueError(f"{model.name}'s evaluation_figures draws {sorted(clash)}, which evaluation draws "
                         "for every model that can; a model's own figures take names of their own")
    return {**figures, **own}
