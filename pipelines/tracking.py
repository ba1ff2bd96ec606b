"""MLflow wiring: where runs go, a fast, clear failure when that place is unreachable, and the
prepared data as the dataset every run is linked to."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import mlflow
import yaml

from components.errors import repo_path

EXPERIMENT = "genzoo"
# The experiment tag MLflow's UI reads for an experiment's kind (its values: "genai_development",
# "custom_model_development", ...): genzoo's experiment is one of model training, not GenAI. MLflow
# 3.17's UI also has a global "GenAI | Model training" switch in its sidebar that wins over the tag.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"


class TrackingUnavailable(RuntimeError):
    pass


def tracking_uri() -> str:
    # An absolute sqlite path: a stage run from a temporary copy still logs to the same store.
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{repo_path('mlflow.db')}"


def configure() -> str:
    """Point MLflow at the store, create the experiment once, and return its id."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # genzoo logs its own pyfunc class by design (loaded with its bundled code).
    logging.getLogger("mlflow.pyfunc").setLevel(logging.ERROR)
    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        experiment = mlflow.set_experiment(EXPERIMENT)
        if EXPERIMENT_KIND_TAG not in experiment.tags:  # a kind a person chose in the UI stays
            mlflow.MlflowClient().set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG,
                                                     EXPERIMENT_KIND)
    except Exception as error:  # any transport or database error: say where, not a traceback
        raise TrackingUnavailable(
            f"cannot reach the MLflow tracking store {uri}: {error.__class__.__name__}: {error}. "
            "Start the server or unset MLFLOW_TRACKING_URI to use the local sqlite store."
        ) from error
    return experiment.experiment_id


def log_history(history: list[dict]) -> None:
    """Every epoch's record as metrics of the active run, stepped by its epoch, in batched writes
    (a `log_metrics` per epoch is a transaction each: 100 epochs took 0.9 s on sqlite, one batch 0.1 s)."""
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [Metric(key, float(value), now, int(record["epoch"]))
               for record in history for key, value in record.items() if key != "epoch"]
    mlflow.MlflowClient().log_batch(mlflow.active_run().info.run_id, metrics=metrics)


def registered_name(key: str) -> str:
    return f"genzoo-{key}"


def dvc_directory_md5(folder: Path) -> str:
    """DVC 3's hash of a directory output (as dvc.lock records it): the md5 of the JSON list of
    {"md5", "relpath"} of its files, sorted by path, with ".dir" appended."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} does not exist: run the prepare stage first")
    entries = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        entries.append({"md5": hashlib.md5(path.read_bytes()).hexdigest(),
                        "relpath": path.relative_to(folder).as_posix()})
    entries.sort(key=lambda e: e["relpath"])
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode("utf-8")).hexdigest() + ".dir"


def prepared_digest(folder: Path | None = None) -> str:
    """The hash DVC gives `data/prepared`, computed as DVC computes it from the folder as it is now
    (so a stage run outside `dvc repro` is linked to its real data); a dvc.lock that records
    another hash is reported."""
    folder = folder or repo_path("data/prepared")
    computed = dvc_directory_md5(folder)
    try:  # dvc.lock only cross-checks: a stage running beside another may find it mid-write
        # libyaml's parser where PyYAML has it: the whole pipeline's 142 KB lock took 0.46 s in Python, 0.06 s so
        lock = yaml.load(repo_path("dvc.lock").read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        stage = (lock or {}).get("stages", {}).get("prepare", {})
        recorded = [o.get("md5") for o in stage.get("outs", []) if o.get("path") == "data/prepared"]
    except (OSError, yaml.YAMLError, AttributeError):
        recorded = []
    if recorded and recorded[0] != computed:
        logging.getLogger(__name__).warning(
            "data/prepared differs from dvc.lock's %s; linking runs to its actual hash %s", recorded[0], computed)
    return computed


def prepared_dataset(card: dict, folder: Path | None = None):
    """The prepared data as an MLflow dataset: runs on different data carry different digests."""
    import warnings

    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    folder = (folder or repo_path("data/prepared")).resolve()
    name = f"{card['source']}-{card.get('binarization', 'none')}"
    with warnings.catch_warnings():  # MLflow registers its local source twice and says so; both are the same class
        warnings.simplefilter("ignore", UserWarning)
        source = resolve_dataset_source(str(folder))
    return MetaDataset(source=source, name=name, digest=prepared_digest(folder))
