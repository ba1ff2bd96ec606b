"""One model's Ray Train run, as both a plain training stage and a sweep trial build it."""

from __future__ import annotations

from pathlib import Path

from components.config import repo_path
from components.training.ray_worker import read_state, train_loop
from pipelines.ray_session import dashboard_running, gpus_available, worker_cpus

__all__ = ["loop_config", "make_trainer", "read_state", "train", "trainer_class"]


def loop_config(key: str, name: str, arch: dict, pixels: str, settings: dict) -> dict:
    """The plain-data config every worker's `train_loop` gets (paths absolute: workers run elsewhere)."""
    return {"key": key, "model": name, "params": arch, "pixels": pixels, "settings": dict(settings),
            "data_dir": str(repo_path("data/prepared").resolve()),
            "classifier_dir": str(repo_path("models/classifier").resolve())}


def trainer_class(distributed: bool = True):
    """Ray Train's TorchTrainer without two helper actors that do nothing for this project; for one
    CPU worker (`distributed=False`), Ray Train's plain data-parallel trainer.

    Every run otherwise starts, besides its controller, workers and synchronization actor, a
    `DatasetManager` (for Ray Data datasets: the workers here read Parquet themselves) and a
    `PlacementGroupCleaner` (removes the workers' placement group if the controller dies; it asks
    the State API, which needs the dashboard: without one it never cleans and only logs
    "Failed to query Ray Train Controller actor state", or dies of "Found multiple active Ray
    instances" where several Rays share a machine). Each is a fresh Python process importing Ray
    Train and Ray Data, started while the worker starts: on two cores they slow the worker's start
    (benchmarks/scaling.py --part overhead). The cleaner stays where a dashboard answers.

    TorchTrainer's backend sets up a torch.distributed process group even for a single worker, and
    its config makes the controller import torch before it starts the worker; one worker needs
    neither (the model all-reduces only when a process group exists, components/models/base.py)."""
    from ray.train.torch import TorchTrainer
    from ray.train.v2._internal.callbacks.datasets import DatasetsCallback
    from ray.train.v2._internal.callbacks.placement_group_callback import PlacementGroupCleanerCallback
    from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

    class LeanTrainer(TorchTrainer if distributed else DataParallelTrainer):
        def _create_default_callbacks(self):
            unused = (() if self.datasets else (DatasetsCallback,)) + (
                () if dashboard_running() else (PlacementGroupCleanerCallback,))
            return [c for c in super()._create_default_callbacks() if not isinstance(c, unused)]

    return LeanTrainer


def make_trainer(config: dict, settings: dict, storage: Path, ray_run: str, callbacks=()):
    """One Ray Train run with the scaling, retries and storage of `settings`.

    A run of the same name in `storage` is resumed from its latest checkpoint."""
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig

    use_gpu = settings.get("use_gpu", "auto")
    use_gpu = gpus_available() if use_gpu == "auto" else bool(use_gpu)
    workers = int(settings["num_workers"])
    cpus = worker_cpus(settings.get("cpus_per_worker", 1), workers)
    return trainer_class(distributed=workers > 1 or use_gpu)(
        train_loop,
        train_loop_config={**config, "threads": cpus},
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu,
                                     resources_per_worker={"CPU": cpus, **({"GPU": 1} if use_gpu else {})}),
        run_config=RunConfig(name=ray_run, storage_path=str(storage), callbacks=list(callbacks),
                             checkpoint_config=CheckpointConfig(num_to_keep=2),
                             failure_config=FailureConfig(max_failures=int(settings.get("max_failures", 0))),
                             logging_config=LoggingConfig(log_level="WARNING")),
    )


def train(config: dict, settings: dict, storage: Path, ray_run: str) -> dict:
    """Run (or resume) the training and return its last checkpoint's state."""
    trainer = make_trainer(config, settings, storage, ray_run)
    print(f"[{config['key']}] training {config['model']} on {settings['num_workers']} Ray worker(s), "
          f"{'GPU' if trainer.scaling_config.use_gpu else 'CPU'}, {settings.get('precision', 'fp32')}; "
          f"run {ray_run} in {storage}", flush=True)
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"training {config['key']} produced no checkpoint: {result.error}")
    with result.checkpoint.as_directory() as folder:
        return read_state(folder)
