"""Callbacks of `fit` that any caller may use: progress lines and a wall-clock budget."""

from __future__ import annotations

import time

from components.training.fit import Callback, Run


class Progress(Callback):
    """One line per epoch: `[key] epoch 3/30: train_loss=..., val_nll=...`."""

    def __init__(self, key: str, show_total: bool = True):
        self.key, self.show_total = key, show_total

    def on_fit_start(self, run: Run) -> None:
        if run.state["resumed_at_epochs"]:
            print(f"[{self.key}] resuming from the checkpoint of epoch {run.state['epoch']}", flush=True)
        if run.model.selection and run.selection is None:
            print(f"[{self.key}] {run.model.name} is selected by {run.model.selection[0]}, which nothing can "
                  "measure here (no evaluation classifier): keeping the last epoch", flush=True)

    def on_epoch_end(self, run: Run, record: dict) -> None:
        shown = ", ".join(f"{k}={v:.4g}" for k, v in record.items() if k not in ("epoch", "epoch_seconds"))
        note = ""
        if run.state["stopped"] and run.selection and run.selection.should_stop:
            note = f" (early stop: no better {run.selection.key} for {run.selection.patience} measurements)"
        total = f"/{run.settings.epochs}" if self.show_total else ""
        print(f"[{self.key}] epoch {record['epoch']}{total}: {shown}{note}", flush=True)


class Budget(Callback):
    """Stop training once `seconds` of wall-clock time are spent (checked after every step)."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.started = time.perf_counter()

    def on_fit_start(self, run: Run) -> None:
        self.started = time.perf_counter()

    def on_step_end(self, run: Run) -> None:
        if time.perf_counter() - self.started >= self.seconds:
            run.stop = True
