"""MLflow wiring: where runs go, and a fast, clear failure when that place is unreachable."""

from __future__ import annotations

import logging
import os

import mlflow

from components.config import repo_path

EXPERIMENT = "genzoo"


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
    except Exception as error:  # any transport or database error: say where, not a traceback
        raise TrackingUnavailable(
            f"cannot reach the MLflow tracking store {uri}: {error.__class__.__name__}: {error}. "
            "Start the server or unset MLFLOW_TRACKING_URI to use the local sqlite store."
        ) from error
    return experiment.experiment_id


def registered_name(key: str) -> str:
    return f"genzoo-{key}"
