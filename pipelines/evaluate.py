"""DVC stage `evaluate@<key>`: measure one trained model on the test split.

    python -m pipelines.evaluate <key>

Writes `reports/<key>/metrics.json` (read by `dvc metrics show`) and the
sample grid, and adds both to the model's MLflow run. A capability the model
lacks is recorded as such, with the reason, instead of a number.
"""

from __future__ import annotations

import json
import sys

import mlflow
import numpy as np
import torch

from components.atomic import atomic_directory, write_text_atomically
from components.classifier import load_classifier, predict
from components.completion import complete, is_autoregressive, lower_half_hidden
from components.config import ConfigError, load_params, repo_path
from components.data.prepared import read_split
from components.metrics.likelihood import bits_per_dim, mean_nll
from components.metrics.sample_quality import sample_quality
from components.models import load_model
from components.plots import image_grid
from pipelines import tracking

# The number each family is ranked by (lower is better) when promoting.
PROMOTION_METRIC = {"explicit": "test_nll", "latent": "test_nll", "adversarial": "fid"}


def likelihood_metrics(model, test_images: torch.Tensor, cfg: dict) -> dict:
    if model.likelihood is None:
        return {"log_prob": f"not supported: {model.name} defines no likelihood"}
    metrics = {"likelihood": model.likelihood}
    if hasattr(model, "elbo_terms"):  # latent-variable model: report the ELBO split too
        reconstruction, kl = [], []
        with torch.no_grad():
            for start in range(0, len(test_images), 256):
                r, k = model.elbo_terms(test_images[start:start + 256])
                reconstruction.append(r)
                kl.append(k)
        reconstruction, kl = torch.cat(reconstruction).mean().item(), torch.cat(kl).mean().item()
        metrics.update(test_elbo=reconstruction - kl, test_reconstruction=reconstruction, test_kl=kl,
                       iwae_samples=cfg["iwae_samples"])
        nll = mean_nll(lambda x: model.iwae_log_prob(x, cfg["iwae_samples"]), test_images, batch_size=64)
    else:
        nll = mean_nll(model.log_prob, test_images)
    metrics.update(test_nll=nll, test_bits_per_dim=bits_per_dim(nll, model.num_pixels))
    return metrics


def quality_metrics(samples: np.ndarray, test_images: np.ndarray, valid_images: np.ndarray, seed: int) -> dict:
    classifier, config = load_classifier(repo_path("models/classifier"))
    if classifier is None:
        return {"sample_quality": f"not available: {config['reason']}"}
    real_features, _ = predict(classifier, test_images)
    fake_features, fake_labels = predict(classifier, samples)
    metrics = sample_quality(real_features.numpy(), fake_features.numpy(), fake_labels.numpy(),
                             config["num_classes"], seed=seed)
    # The same yardstick between two sets of real images: the floor a perfect model would reach.
    held_out_features, held_out_labels = predict(classifier, valid_images)
    reference = sample_quality(real_features.numpy(), held_out_features.numpy(), held_out_labels.numpy(),
                               config["num_classes"], seed=seed)
    metrics.update({f"real_data_{k}": v for k, v in reference.items()})
    return metrics


def completion_grid(model, test_images: torch.Tensor, seed: int):
    """Rows: 10 test images, their upper halves, then three completions of the lower half."""
    originals = test_images[:10]
    observed = lower_half_hidden(model.image_shape)
    generator = torch.Generator().manual_seed(seed)
    rows = [originals, torch.where(observed, originals, torch.full_like(originals, 0.5))]
    rows += [complete(model, originals, observed, generator) for _ in range(3)]
    return image_grid(torch.cat(rows).numpy(), columns=10)


def main(key: str) -> None:
    params = load_params()
    if key not in (params.get("models") or {}):
        raise ConfigError(f"no model {key!r} in params.yaml models; configured: {', '.join(params['models'])}")
    cfg = params["evaluate"]
    model = load_model(repo_path(f"models/{key}"))
    folder = repo_path("data/prepared")
    test, valid = (read_split(folder, split, model.data_pixels) for split in ("test", "valid"))
    test_images = torch.from_numpy(test.images)
    torch.manual_seed(cfg["seed"])

    metrics = {"model": model.name, "family": model.family, "capabilities": model.capabilities(),
               "promotion_metric": PROMOTION_METRIC[model.family], "pixels": model.data_pixels,
               "levels": model.levels, "parameters": sum(p.numel() for p in model.parameters())}
    if hasattr(model, "parameter_counts"):  # AR(k): its count beside the fully independent and dependent ones
        counts = model.parameter_counts(model.num_pixels, model.params.order_k, model.levels)
        metrics.update({f"parameters_{k}": v for k, v in counts.items() if k != model.name})
    print(f"[{key}] evaluating on {len(test_images)} test images")
    metrics.update(likelihood_metrics(model, test_images, cfg))
    with torch.no_grad():
        samples = model.sample(cfg["num_samples"], generator=torch.Generator().manual_seed(cfg["seed"])).numpy()
    if samples.shape[1:] != tuple(model.image_shape) or samples.min() < 0 or samples.max() > 1:
        raise RuntimeError(f"{key}: samples have shape {samples.shape} and range "
                           f"[{samples.min()}, {samples.max()}], expected (n, *{model.image_shape}) in [0, 1]")
    metrics.update(quality_metrics(samples, test.images, valid.images, cfg["seed"]))
    metrics["encode"] = "supported" if "encode" in model.capabilities() else f"not supported: {model.name} has no encoder"

    grid = image_grid(samples[:100], columns=10)
    completions = completion_grid(model, test_images, cfg["seed"]) if is_autoregressive(model) else None
    tracking.configure()
    run_id = json.loads(repo_path(f"models/{key}/mlflow.json").read_text())["run_id"]
    with mlflow.start_run(run_id=run_id):
        mlflow.log_metrics({f"eval_{k}": float(v) for k, v in metrics.items()
                            if isinstance(v, (int, float)) and not isinstance(v, bool)})
        mlflow.log_image(grid, "evaluation/samples.png")
        if completions is not None:
            mlflow.log_image(completions, "evaluation/completions.png")
        mlflow.log_dict(metrics, "evaluation/metrics.json")
        mlflow.set_tag("genzoo.evaluated", "true")
    # Files last: a failure above leaves the previous outputs, not a mix.
    report_dir = repo_path(f"reports/{key}")
    report_dir.mkdir(parents=True, exist_ok=True)
    with atomic_directory(report_dir / "figures") as figures:
        grid.save(figures / "samples.png")
        if completions is not None:
            completions.save(figures / "completions.png")
    write_text_atomically(report_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    shown = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, float))
    print(f"[{key}] {shown}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m pipelines.evaluate <model key from params.yaml>")
    try:
        main(sys.argv[1])
    except (ConfigError, FileNotFoundError, tracking.TrackingUnavailable) as error:
        sys.exit(f"evaluate failed: {error}")
