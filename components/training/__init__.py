"""Training: one loop (`fit`) for every model, its schedules, EMA and selection, and the Ray adapter.

    fit.py        the loop, its settings, callbacks and checkpoint
    schedules.py  optimizers from params, learning-rate schedules
    ema.py        exponential moving average of chosen weights
    selection.py  which epoch to keep, early stopping, sample-quality (FID) selection
    callbacks.py  progress lines, wall-clock budget
    ray_worker.py the Ray Train worker entry point around fit
"""

from components.training.fit import PRECISIONS, Callback, Run, Settings, autocast, final_weights, fit

__all__ = ["PRECISIONS", "Callback", "Run", "Settings", "autocast", "final_weights", "fit"]
