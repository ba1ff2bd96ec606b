"""One model's Ray Train run, as both a plain training stage and a sweep trial build it."""

from __future__ import annotations

from pathlib import Path

from components.errors import repo_path
from components.training.ray_worker import read_state, train_loop
from pipelines.ray_session import gpus_available, worker_cpus

__all__ = ["loop_config", "make_trainer", "read_state", "train"]


def loop_config(key: str, name: str, arch: dict, pixels: str, settings: dict) -> dict:
    """The plain-data config every worker's `train_loop` gets (paths absolute: workers run elsewhere)."""
    return {"key": key, "model": name, "params": arch, "pixels": pixels, "settings": dict(settings),
            "data_dir": str(repo_path("data/prepared").resolve()),
            "classifier_dir": str(repo_path("models/classifier").resolve())}


def make_trainer(config: dict, settings: dict, storage: Path, ray_run: str, callbacks=()):
    """One Ray Train run with the scaling, retries and storage of `settings` (every training setting,
    defaults filled in: `dataclasses.asdict` of a `components.training.Settings`).

    A run of the same name in `storage` is resumed from its latest checkpoint."""
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    use_gpu = settings["use_gpu"]
    use_gpu = gpus_available() if use_gpu == "auto" else bool(use_gpu)
    workers = int(settings["num_workers"])
    cpus = worker_cpus(settings["cpus_per_worker"], workers)
    return TorchTrainer(
        train_loop,
        train_loop_config={**config, "threads": cpus},
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu,
                                     resources_per_worker={"CPU": cpus, **({"GPU": 1} if use_gpu else {})}),
        run_config=RunConfig(name=ray_run, storage_path=str(storage), callbacks=list(callbacks),
                             checkpoint_config=CheckpointConfig(num_to_keep=2),
                             failure_config=FailureConfig(max_failures=int(settings["max_failures"])),
                             logging_config=LoggingConfig(log_level="WARNING")),
    )


def train(config: dict, settings: dict, storage: Path, ray_run: str) -> dict:
    """Run (or resume) the training and return its last checkpoint's state."""
    trainer = make_trainer(config, settings, storage, ray_run)
    print(f"[{config['key']}] training {config['model']} on {settings['num_workers']} Ray worker(s), "
          f"{'GPU' if trainer.scaling_config.use_gpu else 'CPU'}, {settings['precision']}; "
          f"run {ray_run} in {storage}", flush=True)
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"training {config['key']} produced no checkpoint: {result.error}")
    with result.checkpoint.as_directory() as folder:
        return read_state(folder)
