"""The thin Ray Train adapter around `fit`: one Ray Train worker's entry point.

Ray gives the rank, world size and device; each worker reads the prepared
Parquet itself and trains on its own shard, so no data passes through the
driver. Every epoch ends with `ray.train.report` and a checkpoint (the plain
dict of `Run.checkpoint()`, written by rank 0); a restarted run continues from
`ray.train.get_checkpoint()`.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import tempfile
from pathlib import Path

import numpy as np
import torch

from components.data.prepared import read_spec
from components.data.streaming import eval_batches, stream_batches
from components.models import build_model
from components.training.callbacks import Progress
from components.training.fit import Callback, Run, Settings, fit
from components.training.selection import SAMPLE_QUALITY, sample_quality_from

CHECKPOINT_FILE = "state.pt"


def plain(value, where: str = "state"):
    """`value` as tensors and plain Python values only, so `read_state` can load it with
    `weights_only=True`: a checkpoint in shared storage must not be able to run code when read."""
    if isinstance(value, np.generic):   # before float: np.float64 is one
        return value.item()
    if isinstance(value, torch.Tensor) or value is None or isinstance(value, (bool, int, float, str, bytes)):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    if isinstance(value, dict):
        return type(value)((k, plain(v, f"{where}[{k!r}]")) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v, f"{where}[{i}]") for i, v in enumerate(value))
    raise TypeError(f"{where}: a {type(value).__name__} cannot go into a checkpoint (tensors and plain "
                    "values only: it is read with torch.load(weights_only=True))")


def save_state(state: dict, folder: str | Path) -> None:
    torch.save(plain(state), Path(folder) / CHECKPOINT_FILE)


def read_state(folder: str | Path) -> dict:
    return torch.load(Path(folder) / CHECKPOINT_FILE, map_location="cpu", weights_only=True)


def placement(rank: int, world: int) -> list[dict]:
    """Where every worker runs (node, host, pid, torch threads), gathered on all ranks: the run's record
    of its layout."""
    import ray

    me = {"rank": rank, "node_id": ray.get_runtime_context().get_node_id(), "host": socket.gethostname(),
          "pid": os.getpid(), "threads": torch.get_num_threads()}
    if world == 1:
        return [me]
    everyone = [None] * world
    torch.distributed.all_gather_object(everyone, me)
    return everyone


class RayReport(Callback):
    """Every epoch: the record (and, from rank 0, the checkpoint) to Ray Train, on every rank.

    Each report also carries `selected`, the best value of the selection metric so far (the worst
    possible before the first measurement), so a sweep compares trials on every epoch; and the
    workers' placement group, for a sweep to release when Tune stops the run (pipelines/sweep.py)."""

    def __init__(self, rank: int, world: int):
        import ray.util

        self.rank, self.world = rank, world
        group = ray.util.get_current_placement_group()
        self.extra = {"placement_group": group.id.hex()} if group else {}

    def on_fit_start(self, run: Run) -> None:
        run.state["workers"] = placement(self.rank, self.world)

    def on_epoch_end(self, run: Run, record: dict) -> None:
        import ray.train

        selected, declared = {}, run.model.selection
        if declared:  # even when nothing can measure it here: Tune needs the key in every report
            best = run.selection.best if run.selection else None
            selected = {"selected": best if best is not None else math.inf if declared[1] == "min" else -math.inf}
        with tempfile.TemporaryDirectory() as folder:
            checkpoint = None
            if self.rank == 0:
                save_state(run.checkpoint(), folder)
                checkpoint = ray.train.Checkpoint.from_directory(folder)
            ray.train.report({**record, **selected, **self.extra}, checkpoint=checkpoint)


def worker_device() -> torch.device:
    """This worker's GPU, as Ray Train assigns it; else the CPU, without importing Ray Train's torch
    utilities (up to a second on two cores) that only the GPU and multi-worker paths use."""
    import ray

    if not ray.get_gpu_ids():
        return torch.device("cpu")
    import ray.train.torch

    return ray.train.torch.get_device()


def train_loop(config: dict) -> None:
    """Ray Train worker entry point. `config` is plain data (see pipelines/ray_train.py)."""
    import ray.train

    # Ray Train logs every report at INFO through the root logger; progress is our own prints.
    logging.getLogger().setLevel(logging.WARNING)
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    device = worker_device()
    torch.set_num_threads(max(1, int(config.get("threads", 1))))
    settings = Settings.from_dict(config["settings"])
    torch.manual_seed(settings.seed)  # same seed on every rank: identical initial weights

    data_dir, pixels = Path(config["data_dir"]), config["pixels"]
    model = build_model(config["model"], read_spec(data_dir, pixels), config["params"]).to(device)
    quality = None
    if model.selection and model.selection[0] in SAMPLE_QUALITY:
        # The whole validation split as one batch: its images, and the conditions a conditional model is asked for
        reference = next(eval_batches(data_dir, "valid", pixels, batch_size=1 << 62))
        quality, _ = sample_quality_from(Path(config["classifier_dir"]), reference, settings.select_samples,
                                         settings.seed)

    state = None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as folder:
            state = read_state(folder)

    callbacks = ([Progress(config["key"])] if rank == 0 else []) + [RayReport(rank, world)]
    train_data, valid_data = batch_factories(data_dir, pixels, settings, rank, world, model.unpaired_domains)
    fit(model, train_data, valid_data, settings, callbacks, state=state, device=device, world=world,
        quality=quality)


def batch_factories(data_dir: Path, pixels: str, settings: Settings, rank: int = 0, world: int = 1,
                    per_domain: bool = False):
    """`fit`'s two batch factories over a prepared folder: (epoch, batch_size) -> this rank's shard of
    the train split, streamed (dynamic binarization drawn per epoch inside the reader), and () -> its
    part of the valid split, in order."""
    def train_data(epoch: int, batch_size: int):
        return stream_batches(data_dir, "train", pixels, batch_size, rank, world, seed=settings.seed, epoch=epoch,
                              per_domain=per_domain)

    def valid_data():
        return eval_batches(data_dir, "valid", pixels, settings.batch_size, rank, world)

    return train_data, valid_data
