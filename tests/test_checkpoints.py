"""Ray checkpoints live in shared storage (train.storage_path): they are written as tensors and plain
values only and read with torch.load(weights_only=True), so a planted state.pt cannot run code."""

import pickle

import numpy as np
import pytest
import torch

from components.training.ray_worker import CHECKPOINT_FILE, read_state, save_state
from test_training import fit_prepared, phased, prepared, settings


class NumpyMetric:
    """A callback adding numpy values to every epoch's record, as a metric computed with numpy may."""
    def on_fit_start(self, run): ...
    def on_step_end(self, run): ...

    def on_epoch_end(self, run, record):
        record.update(val_numpy=np.float64(0.5), val_count=np.int64(3), val_curve=np.arange(3.0))


def test_a_checkpoint_is_read_with_weights_only_and_resumes_the_run(tmp_path):
    folder = prepared(tmp_path / "prepared")
    run = fit_prepared(phased(), folder, settings(epochs=2), [NumpyMetric()])
    save_state(run.checkpoint(), tmp_path)
    with open(tmp_path / CHECKPOINT_FILE, "rb") as handle:
        assert torch.serialization.get_unsafe_globals_in_checkpoint(handle) == []
    state = read_state(tmp_path)
    for name, value in run.model.state_dict().items():
        assert torch.equal(state["model"][name], value), name
    last = state["history"][-1]
    assert type(last["val_numpy"]) is float and type(last["val_count"]) is int
    assert torch.equal(last["val_curve"], torch.arange(3.0, dtype=torch.float64))
    resumed = fit_prepared(phased(seed=7), folder, settings(epochs=3), state=state)
    assert resumed.state["resumed_at_epochs"] == [2] and resumed.state["epoch"] == 3


class Planted:
    """Unpickling it opens (creates) a file: any code a pickle may run."""
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return open, (str(self.path), "w")


def test_a_planted_state_pt_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    torch.save({"epoch": 3, "model": Planted(marker)}, tmp_path / CHECKPOINT_FILE)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        read_state(tmp_path)
    assert not marker.exists()
    torch.load(tmp_path / CHECKPOINT_FILE, weights_only=False)   # what the plant does when trusted
    assert marker.exists()


def test_what_a_checkpoint_cannot_hold_is_named_when_saved(tmp_path):
    with pytest.raises(TypeError, match=r"state\['history'\]\[0\]\['bad'\]: a object cannot go into a checkpoint"):
        save_state({"history": [{"fine": 1.0, "bad": object()}]}, tmp_path)
