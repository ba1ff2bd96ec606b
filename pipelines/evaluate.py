"""DVC stage `evaluate@<key>`: measure one trained model on the test split.

    python -m pipelines.evaluate <key>

Writes `reports/<key>/metrics.json` (numbers only: what `dvc metrics show` shows),
`reports/<key>/evaluation.json` (what the model is, and why a figure was not measured) and
`reports/<key>/figures/`, and adds them to the model's MLflow run (reasons as tags). What is
measured and drawn follows the model's declared capabilities (components/evaluation.py:
MEASUREMENTS) and its evaluation hooks; a capability the model lacks is recorded as such, with the
reason, instead of a number.
"""

from __future__ import annotations

import json
import sys

from components.schema import checked_params, exit_on_bad_params

if __name__ == "__main__":  # before the imports below (MLflow, torch, plots)
    if len(sys.argv) != 2:
        sys.exit("usage: python -m pipelines.evaluate <model key from params.yaml>")
    exit_on_bad_params(["evaluate"], known=sys.argv[1:])

import mlflow  # noqa: E402
import torch  # noqa: E402

from components.atomic import atomic_directory  # noqa: E402
from components.classifier import load_classifier  # noqa: E402
from components.data.batch import to_batch  # noqa: E402
from components.data.domains import domain_view_folder  # noqa: E402
from components.data.prepared import read_split  # noqa: E402
from components.errors import ConfigError, repo_path  # noqa: E402
from components.evaluation import Evaluation, described, figures_of, hook_settings, measure  # noqa: E402
from components.models import load_model  # noqa: E402
from components.plots import plt  # noqa: E402
from components.report import is_number, is_reason, write_evaluation  # noqa: E402
from pipelines import tracking  # noqa: E402


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
    splits = {split: read_split(folder, split, model.data_pixels) for split in ("test", "valid", "train")}
    torch.manual_seed(cfg["seed"])   # before the classifier: building it draws initial weights
    classifier, classifier_config = load_classifier(repo_path("models/classifier"))
    ev = Evaluation(model, cfg, folder, splits, {name: to_batch(split) for name, split in splits.items()},
                    classifier, classifier_config)
    print(f"[{key}] evaluating on {len(splits['test'].images)} test images")
    metrics = {**described(model), **measure(ev)}
    figures = figures_of(model, key, ev.batches["test"], ev.samples, hook_settings(ev))

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
    try:
        main(sys.argv[1])
    except (ConfigError, FileNotFoundError, tracking.TrackingUnavailable) as error:
        sys.exit(f"evaluate failed: {error}")
