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

import mlflow
import torch

from components.atomic import atomic_directory
from components.config import (ConfigError, architecture_params, load_params, model_entry, repo_path,
                               training_settings)
from components.data.prepared import read_split
from components.models import build_model, pixel_format, save_model
from components.plots import plot_history, write_history_csv
from components.serving import GenzooPyfunc
from components.training import CHECKPOINT_FILE, final_weights, train_loop
from pipelines import tracking
from pipelines.ray_session import ClusterUnavailable, gpus_available, ray_session

PYFUNC_REQUIREMENTS = ["torch==2.13.0", "numpy", "pandas", "pyarrow"]


def run_name(key: str, entry: dict, settings: dict, card: dict) -> str:
    identity = json.dumps({"entry": entry, "settings": settings, "data": card}, sort_keys=True)
    return f"{key}-{hashlib.sha256(identity.encode()).hexdigest()[:12]}"


def fit(key: str, name: str, arch: dict, pixels: str, settings: dict, storage: Path, ray_run: str):
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    use_gpu = settings.get("use_gpu", "auto")
    use_gpu = gpus_available() if use_gpu == "auto" else bool(use_gpu)
    cpus = int(settings.get("cpus_per_worker", 1))
    config = {"key": key, "model": name, "params": arch, "pixels": pixels,
              "data_dir": str(repo_path("data/prepared")),
              "seed": int(settings["seed"]), "lr": float(settings["lr"]), "epochs": int(settings["epochs"]),
              "batch_size": int(settings["batch_size"]), "patience": int(settings["patience"]), "threads": cpus}
    trainer = TorchTrainer(
        train_loop,
        train_loop_config=config,
        scaling_config=ScalingConfig(num_workers=int(settings["num_workers"]), use_gpu=use_gpu,
                                     resources_per_worker={"CPU": cpus}),
        run_config=RunConfig(name=ray_run, storage_path=str(storage),
                             checkpoint_config=CheckpointConfig(num_to_keep=2),
                             failure_config=FailureConfig(max_failures=int(settings.get("max_failures", 0))),
                             logging_config=LoggingConfig(log_level="WARNING")),
    )
    print(f"[{key}] training {name} on {settings['num_workers']} Ray worker(s), "
          f"{'GPU' if use_gpu else 'CPU'}; run {ray_run} in {storage}", flush=True)
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"training {key} produced no checkpoint: {result.error}")
    with result.checkpoint.as_directory() as folder:
        return torch.load(Path(folder) / CHECKPOINT_FILE, map_location="cpu", weights_only=False)


def log_to_mlflow(key: str, model, settings: dict, card: dict, state: dict, model_dir: Path,
                  report_dir: Path) -> dict:
    name, arch = model.name, dataclasses.asdict(model.params)
    with mlflow.start_run(run_name=f"train-{key}") as run:
        mlflow.set_tags({"genzoo.key": key, "genzoo.model": name, "genzoo.family": model.family,
                         "genzoo.stage": "train"})
        mlflow.log_params({**{f"model.{k}": v for k, v in arch.items()},
                           **{f"train.{k}": v for k, v in settings.items()},
                           "data.source": card["source"], "data.binarization": card["binarization"],
                           "data.pixels": model.data_pixels, "data.levels": model.levels})
        for record in state["history"]:
            mlflow.log_metrics({k: v for k, v in record.items() if k != "epoch"}, step=record["epoch"])
        mlflow.log_artifacts(str(report_dir), artifact_path="training")
        info = mlflow.pyfunc.log_model(
            name="model", python_model=GenzooPyfunc(), artifacts={"model_dir": str(model_dir)},
            code_paths=[str(repo_path("components"))], pip_requirements=PYFUNC_REQUIREMENTS,
            metadata={"genzoo_model": name, "likelihood": model.likelihood or "none",
                      "capabilities": model.capabilities(), "image_shape": card["image_shape"]},
        )
        return {"run_id": run.info.run_id, "model_uri": info.model_uri, "model_id": info.model_id}


def main(key: str) -> None:
    params = load_params()
    name, arch = architecture_params(params, key)
    settings = training_settings(params, key)
    card = json.loads(repo_path("data/prepared/card.json").read_text())
    # Fail on a bad config before Ray starts.
    pixels = pixel_format(name, model_entry(params, key).get("pixels"), card["binarization"])
    levels = read_split(repo_path("data/prepared"), "valid", pixels).meta["levels"]
    build_model(name, card["image_shape"], arch, levels=levels)
    tracking.configure()

    storage = Path(settings.get("storage_path") or repo_path("ray_results")).resolve()
    ray_run = run_name(key, {"model": name, "pixels": pixels, **arch}, settings, card)
    with ray_session():
        state = fit(key, name, arch, pixels, settings, storage, ray_run)

    report_dir = repo_path(f"reports/{key}")
    report_dir.mkdir(parents=True, exist_ok=True)
    write_history_csv(state["history"], report_dir / "training.csv")
    plot_history(state["history"], report_dir / "curves.png", title=f"{key} ({name})")

    with atomic_directory(repo_path(f"models/{key}")) as build:
        model = build_model(name, card["image_shape"], arch, levels=levels)
        save_model(model, build, state_dict=final_weights(state))
        summary = {"epochs_trained": state["epoch"], "early_stopped": bool(state.get("stopped")),
                   "best_val": None if state["best_metric"] == float("inf") else state["best_metric"],
                   "monitor": model.monitor, "ray_run": ray_run}
        (build / "training.json").write_text(json.dumps(summary, indent=2) + "\n")
        logged = log_to_mlflow(key, model, settings, card, state, build, report_dir)
        (build / "mlflow.json").write_text(json.dumps(logged, indent=2) + "\n")
    shutil.rmtree(storage / ray_run, ignore_errors=True)  # done: a forced rerun starts fresh
    print(f"[{key}] done: {state['epoch']} epochs, model in models/{key}, MLflow run {logged['run_id']}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m pipelines.train <model key from params.yaml>")
    try:
        main(sys.argv[1])
    except (ConfigError, ClusterUnavailable, tracking.TrackingUnavailable, FileNotFoundError) as error:
        sys.exit(f"train failed: {error}")
