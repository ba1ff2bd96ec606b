"""Shared by the benchmarks: train a model in-process under a wall-clock budget, with the pipeline's `fit`;
what the Ray adapter adds per epoch; a seeded subset of a split; a table cell."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from components.data.batch import Batch, DataSpec  # noqa: E402
from components.models import build_model  # noqa: E402
from components.training import Callback, Settings, final_weights, fit  # noqa: E402
from components.training.callbacks import Budget, Progress  # noqa: E402
from components.training.memory import batches  # noqa: E402


def train_within(name: str, params: dict, train: torch.Tensor, valid: torch.Tensor, seconds: float,
                 batch_size: int, lr: float, device) -> dict:
    """Train until the budget is spent (checked every step); keep the weights the model's selection picks.

    Returns the model, fractional epochs, training throughput (images/s, training
    time only), the best validation value of the selection metric and `fit`'s run.
    """
    torch.manual_seed(0)
    model = build_model(name, DataSpec.single(tuple(train.shape[1:])), params).to(device)
    train_data, valid_data = Batch(train), Batch(valid)
    # Epochs and patience without limit: the budget ends training, as it did before `fit` took over.
    settings = Settings(epochs=10**9, batch_size=batch_size, lr=lr, patience=10**9)

    def train_batches(epoch: int, size: int):
        return batches(train_data, size, torch.Generator().manual_seed(epoch))

    started = time.perf_counter()
    run = fit(model, train_batches, lambda: batches(valid_data, 500), settings,
              [Budget(seconds), Progress(name, show_total=False)], device=device)
    model.load_state_dict(final_weights(run.checkpoint()))
    busy = sum(r["epoch_seconds"] for r in run.state["history"])
    return {"model": model.eval(), "epochs": run.state["images"] / len(train),
            "images_per_second": run.state["images"] / max(busy, 1e-9),
            "best_val": run.selection.best if run.selection else None,
            "seconds": time.perf_counter() - started, "run": run}


class CheckpointEachEpoch(Callback):
    """What the Ray adapter does after every epoch (components/training/ray_worker.py: RayReport)."""

    def __init__(self, path: Path):
        self.path, self.seconds = path, 0.0

    def on_epoch_end(self, run, record):
        started = time.perf_counter()
        torch.save(run.checkpoint(), self.path)
        self.seconds += time.perf_counter() - started


def fit_rate(model, train_data, settings: Settings, saver: CheckpointEachEpoch) -> tuple[float, float]:
    """`fit`'s training images per second (a checkpoint saved each epoch, as under Ray) and the
    checkpoints' share of its time."""
    saver.seconds, started = 0.0, time.perf_counter()
    run = fit(model, train_data, lambda: iter(()), settings, [saver])
    elapsed = time.perf_counter() - started
    return run.state["images"] / elapsed, saver.seconds / elapsed


def alternated_rounds(genzoo, plain, rounds: int, shares: list) -> dict[str, list[float]]:
    """Images/s of each loop per round: both once to warm up (allocator, first-call costs), then
    `rounds` rounds alternating them, so load from other work falls on both alike. `shares` (what
    `genzoo` appends to) is emptied after the warm-up."""
    genzoo(), plain()
    shares.clear()
    rates = {"genzoo": [], "plain": []}
    for _ in range(rounds):
        rates["genzoo"].append(genzoo())
        rates["plain"].append(plain())
    return rates


def seeded_subset(count: int, total: int, seed: int = 0) -> np.ndarray:
    """`count` of `total` indices, in order, the same for a seed (all of them when count is 0 or None)."""
    if not count or count >= total:
        return np.arange(total)
    return np.sort(torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:count].numpy())


def fmt(value, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, float) else "-" if value is None else str(value)
