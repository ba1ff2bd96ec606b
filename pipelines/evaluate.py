"""DVC stage `evaluate@<key>`: measure one trained model on the test split.

    python -m pipelines.evaluate <key>

Writes `reports/<key>/metrics.json` (numbers only: what `dvc metrics show` shows),
`reports/<key>/evaluation.json` (what the model is, and why a figure was not measured) and
`reports/<key>/figures/`, and adds them to the model's MLflow run (reasons as tags). What is
measured and drawn follows the model's declared capabilities (sampling,
conditional sampling, likelihood, encoding, completion, translation) and its
evaluation hooks; a capability the model lacks is recorded as such, with the
reason, instead of a number.
"""

from __future__ import annotations

import json
import sys

from components.schema import checked_params, exit_on_bad_params

if __name__ == "__main__" and len(sys.argv) == 2:  # before the imports below (MLflow, torch, plots)
    exit_on_bad_params(["evaluate"], known=sys.argv[1:])

import mlflow  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from components.atomic import atomic_directory  # noqa: E402
from components.classifier import load_classifier, predict  # noqa: E402
from components.completion import lower_half_hidden  # noqa: E402
from components.errors import ConfigError, repo_path  # noqa: E402
from components.data.domains import domain_view_folder  # noqa: E402
from components.data.prepared import draw_binary, read_split  # noqa: E402
from components.data.batch import Batch, to_batch  # noqa: E402
from components.latent_figures import interpolation_grid, latent_scatter, reconstruction_grid  # noqa: E402
from components.metrics.anomaly import anomaly_auroc  # noqa: E402
from components.metrics.likelihood import bits_per_dim, per_image_log_prob  # noqa: E402
from components.metrics.representation import probe_accuracies  # noqa: E402
from components.metrics.sample_quality import SampleJudge, conditional_accuracy, sample_quality  # noqa: E402
from components.metrics.translation import translation_metrics  # noqa: E402
from components.models import load_model  # noqa: E402
from components.plots import image_grid, plt  # noqa: E402
from components.report import is_number, is_reason, write_evaluation  # noqa: E402
from pipelines import tracking  # noqa: E402

# The number each family is ranked by (lower is better) when promoting; models without a likelihood
# (GAN, adversarial autoencoder) are ranked by FID.
PROMOTION_METRIC = {"explicit": "test_nll", "latent": "test_nll", "adversarial": "fid"}


def log_likelihood(model, cfg: dict, images: torch.Tensor) -> torch.Tensor:
    """Per-image log p(x) as the model's evaluation estimator gives it (e.g. the VAE's
    importance-weighted bound with `evaluate.iwae_samples` samples)."""
    return per_image_log_prob(lambda x: model.evaluation_log_prob(x, cfg), images, batch_size=64)


def likelihood_metrics(model, test_images: torch.Tensor, cfg: dict) -> tuple[dict, torch.Tensor | None]:
    """The test NLL figures, and the per-image log-likelihoods they come from (None without a likelihood)."""
    if model.likelihood is None:
        return {"log_prob": f"not supported: {model.name} defines no likelihood"}, None
    metrics = {"likelihood": model.likelihood}
    log_p = log_likelihood(model, cfg, test_images)
    nll = float(-log_p.double().mean())
    # The mean over test images is an estimate: its standard error says which differences are real.
    standard_error = float(log_p.double().std() / len(log_p) ** 0.5) if len(log_p) > 1 else float("nan")
    metrics.update(test_nll=nll, test_nll_standard_error=standard_error,
                   test_bits_per_dim=bits_per_dim(nll, model.num_pixels))
    return metrics, log_p


def anomaly_metrics(model, test_log_prob: torch.Tensor | None, cfg: dict, folder) -> dict:
    """Density estimation used for anomaly detection: AUROC of -log p(x) separating the test
    split from each anomaly set that prepare wrote (another dataset; a held-out class)."""
    if test_log_prob is None:
        return {"anomaly_detection": f"not supported: {model.name} defines no likelihood"}
    meta = read_split(folder, "test").meta
    metrics = {"anomaly_ood_set": meta.get("ood") or "none"}
    for split, absent in (("ood", "no OOD set prepared"),
                          ("holdout", "data.holdout_class is not set: the model saw every class")):
        if not (folder / f"{split}.parquet").exists():
            metrics[f"anomaly_auroc_{split}"] = f"not measured: {absent}"
            continue
        images = torch.from_numpy(read_split(folder, split, model.data_pixels).images)
        anomalies = log_likelihood(model, cfg, images)
        metrics[f"anomaly_auroc_{split}"] = anomaly_auroc(test_log_prob.numpy(), anomalies.numpy())
    if meta.get("holdout_class") is not None:
        metrics["anomaly_holdout_class"] = meta["holdout_class"]
    return metrics


@torch.no_grad()
def encoded(model, images: torch.Tensor) -> np.ndarray:
    return torch.cat([model.encode(images[start:start + 256]).cpu() for start in range(0, len(images), 256)]).numpy()


def codes_of(model, split) -> np.ndarray:
    # A dynamically binarized train split: the one fixed draw evaluation uses.
    return encoded(model, torch.from_numpy(draw_binary(split).images))


def representation_metrics(model, folder, test) -> dict:
    """Representation learning: label accuracy of a linear probe and k-NN on the codes of
    a model trained without labels (fitted on the train split, scored on the test split)."""
    if not model.can("encode"):
        return {"representation": f"not supported: {model.name} has no encoder"}
    train = read_split(folder, "train", model.data_pixels)
    if train.labels is None or test.labels is None:
        return {"representation": "not measured: the data has no labels"}
    return probe_accuracies(codes_of(model, train), train.labels, codes_of(model, test), test.labels)


def quality_metrics(samples: np.ndarray, test_images: np.ndarray, valid_images: np.ndarray, seed: int,
                    asked_labels: np.ndarray | None = None) -> dict:
    """Sample quality in the evaluation classifier's features; with `asked_labels` (the class each
    sample was asked for), also how often the classifier sees the asked class."""
    classifier, config = load_classifier(repo_path("models/classifier"))
    if classifier is None:
        return {"sample_quality": f"not available: {config['reason']}"}
    real_features, _ = predict(classifier, test_images)
    fake_features, fake_labels = predict(classifier, samples)
    metrics = sample_quality(real_features.numpy(), fake_features.numpy(), fake_labels.numpy(),
                             config["num_classes"], seed=seed)
    if asked_labels is not None:
        metrics.update(conditional_accuracy(fake_labels.numpy(), asked_labels, config["num_classes"]))
    # The same yardstick between two sets of real images: the floor a perfect model would reach.
    held_out_features, held_out_labels = predict(classifier, valid_images)
    reference = sample_quality(real_features.numpy(), held_out_features.numpy(), held_out_labels.numpy(),
                               config["num_classes"], seed=seed)
    metrics.update({f"real_data_{k}": v for k, v in reference.items()})
    return metrics


def completion_observed(model):
    """What evaluation lets a completing model see: the upper half (pixels), or nothing it did not
    pick itself (key patches: `observed` None)."""
    return lower_half_hidden(model.image_shape) if model.completes_from == "pixels" else None


def completion_metrics(model, test_images: torch.Tensor, test: np.ndarray, valid: np.ndarray, seed: int) -> dict:
    """Sample quality of completed test images (`completion_fid`, ...) against the test images."""
    completed = model.complete(test_images, completion_observed(model), torch.Generator().manual_seed(seed))
    quality = quality_metrics(completed.cpu().numpy(), test, valid, seed)
    return {f"completion_{k}" if not k.startswith("real_data") else k: v for k, v in quality.items()}


def hook_settings(model, cfg: dict, test, folder) -> dict:
    """What the model's evaluation hooks get: params.yaml's `evaluate` settings and `judge`, the
    evaluation classifier with the test images' features (and, as a real-data reference, the
    training images'), or None for a model that cannot sample or without a classifier: to measure
    samples only the model knows how to ask for."""
    judge = None
    if model.can("sample") or model.can("conditional_sample"):
        classifier, config = load_classifier(repo_path("models/classifier"))
        if classifier is not None:
            train = read_split(folder, "train", model.data_pixels)
            judge = SampleJudge(classifier, test.images, test.labels, config["num_classes"],
                                reference=(train.images, train.labels))
    return {**cfg, "judge": judge}


def completion_grid(model, test_images: torch.Tensor, seed: int):
    """Rows: 10 test images, their upper halves, then three completions of the lower half."""
    originals = test_images[:10]
    observed = lower_half_hidden(model.image_shape)
    generator = torch.Generator().manual_seed(seed)
    rows = [originals, torch.where(observed, originals, torch.full_like(originals, 0.5))]
    rows += [model.complete(originals, observed, generator) for _ in range(3)]
    return image_grid(torch.cat(rows).numpy(), columns=10)


def label_conditioned(model) -> bool:
    return model.can("conditional_sample") and model.condition == "labels"


def sample_conditions(model, n: int, test: Batch):
    """What a conditional model's evaluation samples are asked for: every class equally often
    (labels), else the test split's own conditions in turn; None for an unconditional model."""
    if not model.can("conditional_sample"):
        return None
    if label_conditioned(model) and model.spec.num_classes:
        return torch.arange(n) % model.spec.num_classes
    given = getattr(test, model.condition)
    if given is None:
        raise ConfigError(f"{model.name} samples given {model.condition}, but the test split has none")
    order = [i % len(given) for i in range(n)]
    return given[torch.tensor(order)] if isinstance(given, torch.Tensor) else [given[i] for i in order]


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


def figures_of(model, key: str, test: Batch, samples: np.ndarray | None, cfg: dict) -> dict:
    """File name -> picture (PIL image or matplotlib figure), one for each capability the model declares;
    a picture the model draws itself (its evaluation hook) replaces the generic one of that name."""
    seed = cfg["seed"]
    own = model.evaluation_figures(test, cfg)
    figures = {}
    if samples is not None:
        figures["samples.png"] = image_grid(samples[:100], columns=10)
    if label_conditioned(model) and model.spec.num_classes:
        figures["class_samples.png"] = class_grid(model, seed)
    if model.can("complete") and "completions.png" not in own:
        figures["completions.png"] = completion_grid(model, test.images, seed)
    if model.can("translate") and "translations.png" not in own:
        figures["translations.png"] = translation_grid(model, test)
    if model.can("encode") and model.can("decode"):
        figures["reconstructions.png"] = reconstruction_grid(model, test.images)
        figures["interpolations.png"] = interpolation_grid(model, test.images)
        labels = None if test.labels is None else test.labels.numpy()
        figures["latent_scatter.png"] = latent_scatter(encoded(model, test.images), labels,
                                                       f"{key}: test codes by label")
    figures.update(own)
    return figures


# Numbers in metrics.json that describe the evaluation or the model rather than measure it: MLflow
# params, so charts and the Models tab compare measurements only.
SETTINGS = {"levels", "parameters", "iwae_samples", "num_samples", "anomaly_holdout_class",
            "conditional_accuracy_chance"}


def split_for_mlflow(metrics: dict) -> tuple[dict, dict, dict]:
    """(measurements, descriptions, reasons): the numbers to compare, what describes the evaluation as
    param strings, and why a figure is missing as tags."""
    measured, described, reasons = {}, {}, {}
    for name, value in metrics.items():
        if is_number(value) and name not in SETTINGS:
            measured[name] = float(value)
        elif is_reason(value):
            reasons[f"genzoo.not_measured.{name}"] = value[:5000]
        else:
            described[f"eval.{name}"] = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
    return measured, described, reasons


def log_evaluation(key: str, metrics: dict, figures: dict, cfg: dict) -> None:
    """Evaluation as its own run `evaluate-<key>`, a child of the training run: its metrics are also
    the logged model's (the Models tab's columns) against the prepared dataset. The sample grid goes
    on the training run too: that run is the registered version's, where a person looks."""
    tracking.configure()
    logged = json.loads(repo_path(f"models/{key}/mlflow.json").read_text())
    card = json.loads(repo_path("data/prepared/card.json").read_text())
    dataset = tracking.prepared_dataset(card)
    measured, described, reasons = split_for_mlflow(metrics)
    with mlflow.start_run(run_name=f"evaluate-{key}", parent_run_id=logged["run_id"],
                          tags={"genzoo.key": key, "genzoo.model": metrics["model"],
                                "genzoo.family": metrics["family"], "genzoo.stage": "evaluate", **reasons}):
        mlflow.log_input(dataset, context="evaluation", model=mlflow.entities.LoggedModelInput(logged["model_id"]))
        mlflow.log_params({**described, **{f"evaluate.{k}": v for k, v in cfg.items()}})
        mlflow.log_metrics(measured, model_id=logged["model_id"], dataset=dataset)
        for name, picture in figures.items():
            if isinstance(picture, plt.Figure):
                mlflow.log_figure(picture, f"evaluation/{name}")
            else:
                mlflow.log_image(picture, f"evaluation/{name}")
        mlflow.log_dict(metrics, "evaluation/metrics.json")
    client = mlflow.MlflowClient()
    if "samples.png" in figures and not isinstance(figures["samples.png"], plt.Figure):
        client.log_image(logged["run_id"], figures["samples.png"], "samples.png")
    client.set_tag(logged["run_id"], "genzoo.evaluated", "true")


def main(key: str) -> None:
    cfg = checked_params(["evaluate"], known=[key])["evaluate"]
    # A model trained on a domain view of the prepared data (its entry's `domains`) is measured on the same view.
    recorded = repo_path(f"models/{key}/domains.json")
    domains = json.loads(recorded.read_text()) if recorded.is_file() else None
    with domain_view_folder(repo_path("data/prepared"), domains, f"models.{key}.domains") as folder:
        evaluate(cfg, key, folder)


def evaluate(cfg: dict, key: str, folder) -> None:
    model = load_model(repo_path(f"models/{key}"))
    test, valid = (read_split(folder, split, model.data_pixels) for split in ("test", "valid"))
    test_images = torch.from_numpy(test.images)
    torch.manual_seed(cfg["seed"])

    metrics = {"model": model.name, "family": model.family, "capabilities": sorted(model.capabilities),
               "promotion_metric": model.promotion_metric or (PROMOTION_METRIC[model.family] if model.likelihood
                                                              else "fid"),
               "pixels": model.data_pixels,
               "levels": model.levels, "parameters": sum(p.numel() for p in model.parameters())}
    if model.condition:
        metrics["condition"] = model.condition
    test_batch = to_batch(test)
    hooks = hook_settings(model, cfg, test, folder)
    metrics.update(model.evaluation_metrics(test_batch, hooks))
    if model.can("translate"):
        train = read_split(folder, "train", model.data_pixels)
        classifier, config = load_classifier(repo_path("models/classifier"))
        metrics.update(translation_metrics(model, test_batch, to_batch(valid), to_batch(train), cfg["seed"], classifier,
                                           config.get("reason", "")))
    if model.can("complete"):
        metrics.update(completion_metrics(model, test_images, test.images, valid.images, cfg["seed"]))
    print(f"[{key}] evaluating on {len(test_images)} test images")
    likelihood, test_log_prob = likelihood_metrics(model, test_images, cfg)
    metrics.update(likelihood)
    metrics.update(anomaly_metrics(model, test_log_prob, cfg, folder))
    samples = None
    if model.can("sample") or model.can("conditional_sample"):
        condition = sample_conditions(model, cfg["num_samples"], test_batch)
        samples = draw_samples(model, cfg["num_samples"], condition, cfg["seed"])
        asked = condition.numpy() if label_conditioned(model) and condition is not None else None
        metrics.update(quality_metrics(samples, test.images, valid.images, cfg["seed"], asked))
    else:
        metrics["sample_quality"] = f"not supported: {model.name} cannot sample"
    metrics["encode"] = "supported" if model.can("encode") else f"not supported: {model.name} has no encoder"
    metrics.update(representation_metrics(model, folder, test))
    figures = figures_of(model, key, test_batch, samples, hooks)

    log_evaluation(key, metrics, figures, cfg)
    # Files last: a failure above leaves the previous outputs, not a mix.
    report_dir = repo_path(f"reports/{key}")
    report_dir.mkdir(parents=True, exist_ok=True)
    with atomic_directory(report_dir / "figures") as written:
        for name, picture in figures.items():
            if isinstance(picture, plt.Figure):
                picture.savefig(written / name, dpi=90)
                plt.close(picture)
            else:
                picture.save(written / name)
    write_evaluation(report_dir, metrics)
    shown = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, float))
    print(f"[{key}] {shown}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m pipelines.evaluate <model key from params.yaml>")
    try:
        main(sys.argv[1])
    except (ConfigError, FileNotFoundError, tracking.TrackingUnavailable) as error:
        sys.exit(f"evaluate failed: {error}")
