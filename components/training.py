"""The training loop every model shares; it runs inside each Ray Train worker.

Each worker reads the prepared Parquet itself and takes its own shard (rank
r of w takes every w-th image), so no data passes through the driver. Every
epoch ends with a checkpoint (model, optimizers, early-stopping state and
history) reported to Ray Train; a restarted run picks up from the latest one.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import tempfile
import time
from pathlib import Path

import torch

from components.data.batch import Batch
from components.data.prepared import Split, read_split
from components.models import GenerativeModel, build_model

CHECKPOINT_FILE = "state.pt"


def shard(split: Split, rank: int, world: int) -> Batch:
    """Rank's share of the images; every rank gets the same count, so collective ops stay in step."""
    per_rank = len(split.images) // world
    labels = None if split.labels is None else torch.from_numpy(split.labels[rank::world][:per_rank])
    return Batch(torch.from_numpy(split.images[rank::world][:per_rank]), labels=labels)


def batches(data: Batch, batch_size: int, generator: torch.Generator | None = None):
    order = torch.randperm(len(data), generator=generator) if generator is not None else torch.arange(len(data))
    for start in range(0, len(data), batch_size):
        yield data.select(order[start:start + batch_size])


@torch.no_grad()
def validate(model: GenerativeModel, images: torch.Tensor, batch_size: int, device) -> dict[str, float]:
    """Per-image averages of the model's validation metrics over all workers' shards."""
    model.eval()
    totals: dict[str, float] = {}
    for x in batches(images, batch_size):
        for key, value in model.validation_metrics(x.to(device)).items():
            totals[key] = totals.get(key, 0.0) + value * len(x)
    keys = sorted(totals)
    summed = model.all_reduce_sum(torch.tensor([totals[k] for k in keys] + [float(len(images))],
                                               dtype=torch.float64, device=device))
    return {k: float(v / summed[-1]) for k, v in zip(keys, summed[:-1])}


def placement(rank: int, world: int) -> list[dict]:
    """Where every worker runs (node, host, pid), gathered on all ranks: the run's record of its layout."""
    import ray

    me = {"rank": rank, "node_id": ray.get_runtime_context().get_node_id(), "host": socket.gethostname(),
          "pid": os.getpid()}
    if world == 1:
        return [me]
    everyone = [None] * world
    torch.distributed.all_gather_object(everyone, me)
    return everyone


def autocast(device: torch.device, precision: str):
    """bf16 mixed precision where the device supports it (CPU and recent GPUs); else full precision."""
    if precision != "bf16":
        return contextlib.nullcontext()
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def train_loop(config: dict) -> None:
    """Ray Train worker entry point. `config` is plain data (see pipelines/train.py)."""
    import ray.train
    import ray.train.torch
    import ray.util

    # Ray Train logs every report at INFO through the root logger; progress is our own prints.
    logging.getLogger().setLevel(logging.WARNING)
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()
    torch.set_num_threads(max(1, int(config.get("threads", 1))))
    torch.manual_seed(config["seed"])  # same seed on every rank: identical initial weights

    data_dir = Path(config["data_dir"])
    train_split, valid_split = (read_split(data_dir, split, config["pixels"]) for split in ("train", "valid"))
    model = build_model(config["model"], train_split.spec, config["params"])
    model.to(device)
    optimizers = model.configure_optimizers(config["lr"])

    state = {"epoch": 0, "best_metric": math.inf, "best_state": None, "bad_epochs": 0, "history": [],
             "resumed_at_epochs": []}
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as folder:
            saved = torch.load(Path(folder) / CHECKPOINT_FILE, map_location=device, weights_only=False)
        model.load_state_dict(saved.pop("model"))
        for name, optimizer in optimizers.items():
            optimizer.load_state_dict(saved["optimizers"][name])
        state.update({k: v for k, v in saved.items() if k != "optimizers"})
        state["resumed_at_epochs"] = [*state.get("resumed_at_epochs", []), state["epoch"]]
        if rank == 0:
            print(f"[{config['key']}] resuming from the checkpoint of epoch {state['epoch']}", flush=True)

    state["workers"] = placement(rank, world)
    # The workers' placement group, for a sweep to release when Tune stops this run (pipelines/sweep.py).
    group = ray.util.get_current_placement_group()
    reported = {"placement_group": group.id.hex()} if group else {}
    precision = autocast(device, config.get("precision", "fp32"))
    train_images, valid_images = shard(train_split, rank, world), shard(valid_split, rank, world)
    stochastic = bool(train_split.meta.get("stochastic_binarization"))
    epochs, patience, monitor = config["epochs"], config["patience"], model.monitor
    stop = state["bad_epochs"] >= patience if monitor else False

    while state["epoch"] < epochs and not stop:
        epoch = state["epoch"] + 1
        model.train()
        model.on_epoch_start()
        shuffle = torch.Generator().manual_seed(config["seed"] * 100_003 + epoch * 101 + rank)
        sums: dict[str, float] = {}
        seen, started = 0, time.perf_counter()
        for x in batches(train_images, config["batch_size"], shuffle):
            if stochastic:  # dynamic binarization: a fresh draw every time an image is seen
                x.images = torch.bernoulli(x.images, generator=shuffle)
            with precision:
                step = model.training_step(x.to(device), optimizers)
            for key, value in step.items():
                sums[key] = sums.get(key, 0.0) + value * len(x)
            seen += len(x)
        seconds = time.perf_counter() - started
        record = {"epoch": epoch, **{f"train_{k}": v / max(seen, 1) for k, v in sums.items()}}
        record.update({f"val_{k}": v for k, v in validate(model, valid_images, config["batch_size"], device).items()})
        record["images_per_second"] = seen * world / max(seconds, 1e-9)
        record["epoch_seconds"] = seconds

        if monitor:
            current = record[f"val_{monitor}"]
            if current < state["best_metric"]:
                state.update(best_metric=current, bad_epochs=0,
                             best_state={k: v.detach().cpu().clone() for k, v in model.state_dict().items()})
            else:
                state["bad_epochs"] += 1
            stop = state["bad_epochs"] >= patience
        state["epoch"] = epoch
        state["history"].append(record)

        if rank == 0:
            shown = ", ".join(f"{k}={v:.4g}" for k, v in record.items() if k not in ("epoch", "epoch_seconds"))
            note = f" (early stop: no better val_{monitor} for {patience} epochs)" if stop else ""
            print(f"[{config['key']}] epoch {epoch}/{epochs}: {shown}{note}", flush=True)
        with tempfile.TemporaryDirectory() as folder:
            checkpoint = None
            if rank == 0:
                torch.save({**state, "model": model.state_dict(),
                            "optimizers": {n: o.state_dict() for n, o in optimizers.items()},
                            "stopped": stop}, Path(folder) / CHECKPOINT_FILE)
                checkpoint = ray.train.Checkpoint.from_directory(folder)
            ray.train.report({**record, **reported}, checkpoint=checkpoint)


def final_weights(checkpoint_state: dict) -> dict:
    """The weights to keep: the best validated epoch's, or the last epoch's when nothing is monitored."""
    return checkpoint_state["best_state"] or checkpoint_state["model"]

