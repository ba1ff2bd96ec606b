"""DVC stage `promote`: register every trained model and move each family's
`champion` alias to the new version only when it beats the current champion.

Each model key `k` of params.yaml is the registered model `genzoo-k`. A
version is registered once per trained model (found again by its MLflow model
id), tagged with its evaluation metric, and tagged with the decision and its
reason. Every decision is made before any alias moves, so a registry error
(anything but "does not exist") fails the stage with its message and moves no
alias. The stage also writes the comparison page (`components.report`).
"""

from __future__ import annotations

import json
import math
import sys

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from components import report
from components.atomic import atomic_directory
from components.config import load_params, repo_path
from pipelines import tracking

ALIAS = "champion"


def does_not_exist(error: MlflowException) -> bool:
    """The registry's "not found" (the registered model or version is absent); anything else is a failure."""
    return error.error_code == "RESOURCE_DOES_NOT_EXIST"


def registered_version(client: MlflowClient, name: str, logged: dict):
    """The version already registered for this trained model, else a new one."""
    try:
        for version in client.search_model_versions(f"name='{name}'"):
            if version.tags.get("genzoo.model_id") == logged["model_id"]:
                return version, False
    except MlflowException as error:
        if not does_not_exist(error):
            raise
    version = mlflow.register_model(logged["model_uri"], name, tags={"genzoo.model_id": logged["model_id"]})
    return version, True


def current_champion(client: MlflowClient, name: str):
    """The version holding the alias, or None. Read from the registered model's aliases: a missing
    alias is then no error at all (MLflow reports it as an invalid parameter, not as not found)."""
    try:
        aliases = client.get_registered_model(name).aliases
    except MlflowException as error:
        if does_not_exist(error):
            return None
        raise
    return client.get_model_version(name, aliases[ALIAS]) if ALIAS in aliases else None


def decide(metric: str, value: float | None, champion, version) -> tuple[bool, str]:
    """(promote?, why). Lower is better for every family metric."""
    if champion is None:
        return True, "first registered version: no champion yet"
    if champion.version == version.version:
        return False, f"already the champion (v{champion.version})"
    best = champion.tags.get("genzoo.metric_value")
    if value is None or not math.isfinite(value):
        return False, f"no {metric} measured; champion v{champion.version} kept"
    if best is None:
        return True, f"champion v{champion.version} has no recorded {metric}"
    if value < float(best):
        return True, f"{metric} {value:.4f} < {float(best):.4f} of champion v{champion.version}"
    return False, f"{metric} {value:.4f} does not beat {float(best):.4f} of champion v{champion.version}"


def plan_model(client: MlflowClient, key: str) -> dict:
    """Register the model's version (once) and decide whether it becomes the champion; moves nothing."""
    metrics = json.loads(repo_path(f"reports/{key}/metrics.json").read_text())
    logged = json.loads(repo_path(f"models/{key}/mlflow.json").read_text())
    name = tracking.registered_name(key)
    metric = metrics["promotion_metric"]
    value = metrics.get(metric) if isinstance(metrics.get(metric), (int, float)) else None
    version, new = registered_version(client, name, logged)
    if new:
        client.set_model_version_tag(name, version.version, "genzoo.metric", metric)
        if value is not None:
            client.set_model_version_tag(name, version.version, "genzoo.metric_value", repr(float(value)))
        version = client.get_model_version(name, version.version)
    champion = current_champion(client, name)
    promote, reason = decide(metric, value, champion, version)
    return {"key": key, "registered_model": name, "version": int(version.version), "new_version": new,
            "promoted": promote, "reason": reason,
            "champion_version": int(version.version) if promote else int(champion.version),
            "metric": metric, "value": value, "metrics": metrics}


def apply(client: MlflowClient, decision: dict) -> None:
    name, version = decision["registered_model"], decision["version"]
    if decision["promoted"]:
        client.set_registered_model_alias(name, ALIAS, str(version))
    client.set_model_version_tag(name, version, "genzoo.promotion",
                                 ("promoted: " if decision["promoted"] else "not promoted: ") + decision["reason"])
    print(f"[promote] {name} v{version}: {'PROMOTED' if decision['promoted'] else 'kept'} ({decision['reason']})")


def main() -> None:
    params = load_params()
    tracking.configure()
    client = MlflowClient()
    decisions = [plan_model(client, key) for key in params["models"]]
    for decision in decisions:
        apply(client, decision)
    card = json.loads(repo_path("data/prepared/card.json").read_text())
    with atomic_directory(repo_path("comparison")) as build:
        summary = [{k: v for k, v in d.items() if k != "metrics"} for d in decisions]
        (build / "promotion.json").write_text(json.dumps(summary, indent=2) + "\n")
        report.write(decisions, card, repo_path("reports"), build)
    print(f"[promote] comparison report: {repo_path('comparison/index.html')}")


def run() -> None:
    """The stage's entry point: a failure ends the process non-zero with its message."""
    try:
        main()
    except (FileNotFoundError, tracking.TrackingUnavailable, MlflowException) as error:
        sys.exit(f"promote failed: {error}")


if __name__ == "__main__":
    run()
