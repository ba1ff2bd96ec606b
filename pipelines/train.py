"""DVC stage `train@<key>`: train one model of params.yaml under Ray Train.

    python -m pipelines.train <key>

The Ray run is named after a hash of everything that defines it (model entry,
training settings, data card), so rerunning after a crash or kill resumes from
the last epoch's checkpoint instead of starting over, while a changed config
never picks up a stale run. The best weights land in `models/<key>/`; the run,
its curves and the model (as an MLflow pyfunc) are logged to MLflow.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import sys
from pathlib import Path

from components.schema import checked_params, exit_on_bad_params

SECTIONS = ("train", "cluster")   # and the model's own entry

if __name__ == "__main__" and len(sys.argv) == 2:  # before the imports below (MLflow, Ray, plots)
    exit_on_bad_params(SECTIONS, entries=sys.argv[1:])

import mlflow  # noqa: E402

from components.atomic import atomic_directory  # noqa: E402
from components.errors import ConfigError, repo_path  # noqa: E402
from components.schema import architecture_params, model_entry, training_settings  # noqa: E402
from components.data.domains import domain_view_folder  # noqa: E402
from components.data.prepared import read_spec  # noqa: E402
from components.models import build_model, pixel_format, save_model  # noqa: E402
from components.plots import plot_history, write_history_csv  # noqa: E402
from components.serving import GenzooPyfunc, logged_metadata, request_signature  # noqa: E402
from components.training import Settings, final_weights  # noqa: E402
from pipelines import ray_train, sweep, tracking  # noqa: E402
from pipelines.ray_session import ClusterUnavailable, alive_nodes, cluster_address, ray_session  # noqa: E402

PYFUNC_REQUIREMENTS = ["torch==2.13.0", "numpy", "pandas", "pyarrow"]


def run_name(key: str, entry: dict, settings: dict, card: dict) -> str:
    identity = json.dumps({"entry": entry, "settings": settings, "data": card}, sort_keys=True)
    return f"{key}-{hashlib.sha256(identity.encode()).hexdigest()[:12]}"


def preflight(params: dict, key: str, card: dict, data_dir: Path):
    """Everything that can be wrong with the config, checked before Ray starts: the model and its
    parameters, the batch fields it requires against the data, the training settings it is given.
    Returns (model type, its parameters, its Settings, pixel format, data spec, a built model)."""
    name, arch = architecture_params(params, key)
    settings = Settings.from_dict(training_settings(params, key))
    pixels = pixel_format(name, model_entry(params, key).get("pixels"), card["binarization"])
    spec = read_spec(data_dir, pixels)
    model = build_model(name, spec, arch)  # also fails when the data lacks a field the model requires
    settings.check(model)
    return name, arch, settings, pixels, spec, model


def paper_of(model) -> str:
    """The first sentence-paragraph of the model module's docstring (its first line may wrap): the
    model and its paper, in the module's words."""
    doc = (sys.modules[type(model).__module__].__doc__ or "").strip()
    return " ".join(doc.split("\n\n")[0].split()) if doc else model.name


def log_to_mlflow(key: str, model, settings: dict, card: dict, state: dict, model_dir: Path,
                  report_dir: Path, trials: list[sweep.Trial] | None = None) -> dict:
    """The training run `train-<key>` and its logged model, named after the params key so the
    experiment's Models tab reads as a leaderboard; evaluate adds a child run with the test metrics."""
    name, arch = model.name, dataclasses.asdict(model.params)
    dataset = tracking.prepared_dataset(card)
    params = {**{f"model.{k}": v for k, v in arch.items()},
              **{f"train.{k}": v for k, v in settings.items()},
              "data.source": model.spec.source, "data.binarization": card["binarization"],
              "data.domains": ", ".join(model.spec.domain_names),
              "data.pixels": model.data_pixels, "data.levels": model.levels,
              "data.digest": dataset.digest,
              "model.parameters": sum(p.numel() for p in model.parameters())}
    tags = {"genzoo.key": key, "genzoo.model": name, "genzoo.family": model.family,
            "genzoo.paper": paper_of(model), "genzoo.likelihood": model.likelihood or "none",
            "genzoo.capabilities": ", ".join(sorted(model.capabilities))}
    with mlflow.start_run(run_name=f"train-{key}") as run:
        mlflow.set_tags({**tags, "genzoo.stage": "train"})
        mlflow.log_params(params)
        mlflow.log_input(dataset, context="training")
        tracking.log_history(state["history"])
        mlflow.log_artifacts(str(report_dir), artifact_path="training")
        if trials:  # a sweep: this run holds the best trial's model, its children every trial
            mlflow.set_tag("genzoo.sweep_trials", len(trials))
            sweep.log_trials(trials, f"val_{model.selection[0]}")
        info = mlflow.pyfunc.log_model(
            name=key, python_model=GenzooPyfunc(), artifacts={"model_dir": str(model_dir)},
            code_paths=[str(repo_path("components"))], pip_requirements=PYFUNC_REQUIREMENTS,
            signature=request_signature(model), params={k: str(v) for k, v in params.items()}, tags=tags,
            metadata=logged_metadata(model),
        )
        return {"run_id": run.info.run_id, "experiment_id": run.info.experiment_id,
                "model_uri": info.model_uri, "model_id": info.model_id, "paper": tags["genzoo.paper"]}


def main(key: str) -> None:
    params = checked_params(SECTIONS, entries=[key])
    card = json.loads(repo_path("data/prepared/card.json").read_text())
    # A model entry's `domains`: a domain view of the prepared data, written where every Ray worker
    # reads (beside the checkpoints: train.storage_path is shared on a cluster), removed at the end.
    domains = model_entry(params, key).get("domains")
    storage = Path(training_settings(params, key).get("storage_path") or repo_path("ray_results")).resolve()
    with domain_view_folder(repo_path("data/prepared"), domains, f"models.{key}.domains", storage) as data_dir:
        train(params, key, card, data_dir, domains)


def train(params: dict, key: str, card: dict, data_dir: Path, domains: list | None) -> None:
    name, arch, typed, pixels, spec, model = preflight(params, key, card, data_dir)
    settings = training_settings(params, key)   # as written: the run's name and its MLflow params
    resolved = dataclasses.asdict(typed)        # every setting, defaults filled in: what Ray and its workers read
    sweep_spec = model_entry(params, key).get("sweep")
    plan = sweep_spec and sweep.plan(sweep_spec)
    if plan and not model.selection:
        raise ConfigError(f"models.{key}.sweep: {name} declares no selection metric to compare trials by")
    tracking.configure()

    storage = Path(typed.storage_path or repo_path("ray_results")).resolve()
    ray_run = run_name(key, {"model": name, "pixels": pixels, **arch, "sweep": sweep_spec, "domains": domains},
                       settings, card)
    config = {**ray_train.loop_config(key, name, arch, pixels, resolved), "data_dir": str(data_dir)}
    trials = None
    with ray_session(cluster_address(params)):
        if alive_nodes() > 1 and not typed.storage_path:
            raise ConfigError("the Ray cluster has several nodes: set train.storage_path to a folder (or "
                              "object-store URI) every node reaches, for checkpoints")
        if plan:
            state, best, trials = sweep.run(plan, config, resolved, model.selection, storage, ray_run)
            arch = {**arch, **best["params"]}
            settings = {**settings, **best["settings"]}
        else:
            state = ray_train.train(config, resolved, storage, ray_run)

    report_dir = repo_path(f"reports/{key}")
    report_dir.mkdir(parents=True, exist_ok=True)
    write_history_csv(state["history"], report_dir / "training.csv")
    plot_history(state["history"], report_dir / "curves.png", title=f"{key} ({name})")

    with atomic_directory(repo_path(f"models/{key}")) as build:
        model = build_model(name, spec, arch)
        save_model(model, build, state_dict=final_weights(state))
        selection = state.get("selection") or {}
        summary = {"epochs_trained": state["epoch"], "early_stopped": bool(state.get("stopped")),
                   "selected_by": state.get("selected_by") or "the last epoch (no selection metric measured)",
                   "best_val": selection.get("best"), "best_epoch": selection.get("best_epoch"),
                   "ray_run": ray_run,
                   "resumed_at_epochs": state.get("resumed_at_epochs", []), "workers": state.get("workers", [])}
        if trials:
            summary["sweep"] = {"trials": len(trials), "best": best}
        (build / "training.json").write_text(json.dumps(summary, indent=2) + "\n")
        if domains is not None:   # evaluate makes the same view from it
            (build / "domains.json").write_text(json.dumps(domains, indent=2) + "\n")
        logged = log_to_mlflow(key, model, settings, card, state, build, report_dir, trials)
        (build / "mlflow.json").write_text(json.dumps(logged, indent=2) + "\n")
    for finished in (ray_run, f"{ray_run}-runs"):  # done: a forced rerun starts fresh
        shutil.rmtree(storage / finished, ignore_errors=True)
    print(f"[{key}] done: {state['epoch']} epochs, model in models/{key}, MLflow run {logged['run_id']}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m pipelines.train <model key from params.yaml>")
    try:
        main(sys.argv[1])
    except (ConfigError, ClusterUnavailable, tracking.TrackingUnavailable, FileNotFoundError) as error:
        sys.exit(f"train failed: {error}")
