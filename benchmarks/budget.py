"""Shared by the benchmarks: train a model in-process under a wall-clock budget."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from components.data.batch import Batch, DataSpec
from components.models import build_model  # noqa: E402


def train_within(name: str, params: dict, train: torch.Tensor, valid: torch.Tensor, seconds: float,
                 batch_size: int, lr: float, device) -> dict:
    """Train until the budget is spent (checked every batch); keep the best-validated weights.

    Returns the model, fractional epochs, training throughput (images/s, training
    time only) and the best validation value of the model's monitored metric.
    """
    torch.manual_seed(0)
    model = build_model(name, DataSpec.single(tuple(train.shape[1:])), params).to(device)
    optimizers = model.configure_optimizers(lr)
    best, best_state, seen, busy = math.inf, None, 0, 0.0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        model.train()
        model.on_epoch_start()  # the interface's per-epoch hook (closed-form statistics, KL warm-up)
        tick = time.perf_counter()
        for x in train[torch.randperm(len(train))].split(batch_size):
            model.training_step(Batch(x.to(device)), optimizers)
            seen += len(x)
            if time.perf_counter() - started >= seconds:
                break
        busy += time.perf_counter() - tick
        model.eval()
        with torch.no_grad():  # nothing monitored (adversarial models): the latest weights count as best
            metric = -seen if model.monitor is None else sum(
                model.validation_metrics(Batch(v.to(device)))[model.monitor] * len(v) for v in valid.split(500)) / len(valid)
        if metric < best:
            best, best_state = metric, {k: v.detach().clone() for k, v in model.state_dict().items()}
        print(f"  {name}: {seen / len(train):.2f} epochs, {time.perf_counter() - started:.0f}s, "
              f"val {model.monitor} {metric:.2f}", flush=True)
    model.load_state_dict(best_state)
    return {"model": model.eval(), "epochs": seen / len(train), "images_per_second": seen / busy,
            "best_val": best, "seconds": time.perf_counter() - started}
