"""DVC stage `promote`: register every trained model, propose or promote it, and write the
model cards.

Each model key `k` of params.yaml is the registered model `genzoo-k`. A version is registered
once per trained model (found again by its MLflow model id), tagged with its evaluation metric,
described (its key metrics and the decision), and tagged with the decision and its reason.

Who holds `champion` (params.yaml `promote`):
* `mode: auto` (default): a version that beats the champion on its family's metric (lower is
  better) becomes `champion`, unless a person set the current champion: then it gets
  `challenger` and the person's choice stays (`respect_manual: false` lets the pipeline move it).
* `mode: propose`: a better version only ever gets `challenger`; a person moves `champion`.
A person's choice is recognized without asking who: promote records the version it set itself in
the registered model's tag `genzoo.promoted_version`; a `champion` alias on any other version was
moved by someone else (the UI's alias editor, the API), and is tagged `genzoo.champion_set_by:
person`. A version no better than the champion gets no alias.

Every decision is made before any alias moves, so a registry error (anything but "does not
exist") fails the stage with its message and moves no alias. The stage also writes the
comparison page (`components.report`).
"""

from __future__ import annotations

import json
import math
import sys

from components.schema import Promote, checked_params, exit_on_bad_params

if __name__ == "__main__":  # before the imports below load MLflow: a bad value fails at once
    exit_on_bad_params(["promote", "models"], entries=[])

import mlflow  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402

from components import report  # noqa: E402
from components.atomic import atomic_directory  # noqa: E402
from components.errors import ConfigError, repo_path  # noqa: E402
from pipelines import tracking  # noqa: E402

ALIAS = "champion"
CHALLENGER = "challenger"
SET_BY_PROMOTE = "genzoo.promoted_version"   # registered-model tag: the version promote made champion
# (not "champion_version": beside a person's champion it names another version, and read as the champion)
# The numbers a version's description lists, when evaluation measured them.
KEY_METRICS = ["test_nll", "test_bits_per_dim", "test_elbo", "fid", "kid", "precision", "recall",
               "class_coverage", "conditional_accuracy", "heldout_caption_accuracy", "categorical_code_accuracy",
               "anomaly_auroc_ood", "anomaly_auroc_holdout", "linear_probe_accuracy", "knn_accuracy"]


def settings(params: dict) -> dict:
    """`promote`, checked already (components.schema.Promote), with that section's defaults filled in."""
    return Promote.model_construct(**(params.get("promote") or {})).model_dump()


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


def compare(metric: str, value: float | None, champion, version) -> tuple[bool, str]:
    """(beats the champion?, why). Lower is better for every family metric."""
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


def decide(better: bool, why: str, mode: str, set_by_person: bool, respect_manual: bool) -> tuple[str, str]:
    """(alias the version gets: "champion", "challenger" or "", why)."""
    if not better:
        return "", why
    if mode == "propose":
        return CHALLENGER, f"{why}; promote.mode is propose: a person moves champion"
    if set_by_person and respect_manual:
        return CHALLENGER, f"{why}; champion was set by a person and stays (promote.respect_manual)"
    return ALIAS, why


def champion_set_by_person(client: MlflowClient, name: str, champion) -> bool:
    """Whether the alias sits on a version promote did not put it on. A registry from before promote
    recorded its choice (no tag) counts as promote's: promote was then the only one moving it."""
    if champion is None:
        return False
    recorded = client.get_registered_model(name).tags.get(SET_BY_PROMOTE)
    return recorded is not None and recorded != str(champion.version)


def plan_model(client: MlflowClient, key: str, config: dict) -> dict:
    """Register the model's version (once) and decide which alias it gets; moves nothing."""
    metrics = report.read_evaluation(repo_path(f"reports/{key}"))
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
    by_person = champion_set_by_person(client, name, champion)
    better, why = compare(metric, value, champion, version)
    alias, reason = decide(better, why, config["mode"], by_person, config["respect_manual"])
    return {"key": key, "registered_model": name, "version": int(version.version), "new_version": new,
            "alias": alias, "promoted": alias == ALIAS, "reason": reason,
            "champion_version": int(version.version) if alias == ALIAS else (
                int(champion.version) if champion else None),
            "champion_set_by": ("genzoo promote" if alias == ALIAS else
                                "person" if by_person else "genzoo promote" if champion else None),
            "metric": metric, "value": value, "metrics": metrics, "paper": logged.get("paper"),
            "run_id": logged.get("run_id")}


def promotion_text(decision: dict) -> str:
    label = {ALIAS: "promoted", CHALLENGER: "proposed as challenger", "": "not promoted"}[decision["alias"]]
    return f"{label}: {decision['reason']}"


def model_description(decision: dict) -> str:
    """The registered model's card: what it is, how it is judged and promoted, how to use it."""
    name, metrics = decision["registered_model"], decision["metrics"]
    return "\n".join([
        f"# {name}",
        "",
        f"**{decision.get('paper') or metrics['model']}**",
        "",
        f"* params.yaml key `{decision['key']}`, model `{metrics['model']}`, family `{metrics['family']}`, "
        f"likelihood: {metrics.get('likelihood', 'none')}",
        f"* can: {', '.join(metrics.get('capabilities', [])) or 'nothing'}",
        f"* promoted on `{decision['metric']}` (lower is better): `promote` moves `champion` to a better "
        "version unless a person set it; otherwise the better version gets `challenger`. Move `champion` "
        "here (Aliases) to choose by hand; the pipeline keeps your choice.",
        f"* load: `mlflow.pyfunc.load_model(\"models:/{name}@champion\")`",
        f"* serve: `mlflow models serve -m models:/{name}@champion --env-manager local -p 5001`",
    ])


def version_description(decision: dict) -> str:
    metrics = decision["metrics"]
    rows = [f"| {k} | {metrics[k]:.4f} |" for k in KEY_METRICS
            if isinstance(metrics.get(k), (int, float)) and not isinstance(metrics.get(k), bool)]
    return "\n".join([f"{decision['key']} v{decision['version']}: {promotion_text(decision)}", "",
                      "| metric | value |", "|---|---|", *rows, "",
                      "Sample grid and training curves: the source run's artifacts (samples.png, training/)."])


def apply(client: MlflowClient, decision: dict) -> None:
    name, version, alias = decision["registered_model"], decision["version"], decision["alias"]
    if alias == ALIAS:
        client.set_registered_model_alias(name, ALIAS, str(version))
        client.set_registered_model_tag(name, SET_BY_PROMOTE, str(version))
        client.set_registered_model_tag(name, "genzoo.champion_set_by", "genzoo promote")
        client.set_registered_model_tag(name, "genzoo.champion_reason", decision["reason"])
    elif alias == CHALLENGER:
        client.set_registered_model_alias(name, CHALLENGER, str(version))
    aliases = client.get_registered_model(name).aliases
    if CHALLENGER in aliases and aliases[CHALLENGER] == aliases.get(ALIAS):  # the challenger won: done
        client.delete_registered_model_alias(name, CHALLENGER)
    if decision["champion_set_by"] == "person":
        client.set_registered_model_tag(name, "genzoo.champion_set_by", "person")
        client.set_registered_model_tag(
            name, "genzoo.champion_reason",
            f"champion v{decision['champion_version']} was moved outside promote; promote keeps it")
    if decision["new_version"]:
        client.set_model_version_tag(name, version, "genzoo.promotion", promotion_text(decision))
        client.update_model_version(name, str(version), description=version_description(decision))
    described = client.get_registered_model(name).description or ""
    if not described or described.startswith(f"# {name}\n"):  # a card a person rewrote stays theirs
        client.update_registered_model(name, description=model_description(decision))
    shown = {ALIAS: "PROMOTED", CHALLENGER: "CHALLENGER", "": "kept"}[alias]
    print(f"[promote] {name} v{version}: {shown} ({decision['reason']})")


def main() -> None:
    params = checked_params(["promote", "models"], entries=[])
    config = settings(params)
    tracking.configure()
    client = MlflowClient()
    decisions = [plan_model(client, key, config) for key in params["models"]]
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
    except (FileNotFoundError, ConfigError, tracking.TrackingUnavailable, MlflowException) as error:
        sys.exit(f"promote failed: {error}")


if __name__ == "__main__":
    run()
