"""The one training loop: `fit(model, train_data, valid_data, settings, callbacks)`.

Framework-neutral: the data arrive as factories of `Batch` iterables (each
rank's shard), the checkpoint is a plain dict (`Run.checkpoint()`, given back
as `fit(..., state=...)`), and everything around the loop (progress lines, Ray
reports, a wall-clock budget) is a `Callback`. Data-parallel gradient
averaging happens in the model's `optimize`; collective statistics in
`validate`.

Resuming is exact: the checkpoint holds the weights, optimizer states, EMA,
selection, phase and the random state, and the learning rate is a function of
the epoch, so a run restored after epoch k continues as if never stopped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from typing import Annotated, Callable, Iterable, Literal

import torch
from pydantic import Field

from components.config import PositiveFloat, PositiveInt, Seed, typed
from components.errors import ConfigError
from components.data.batch import Batch
from components.models.base import GenerativeModel, Phase, Phased
from components.training.ema import EMA
from components.training.schedules import Optimizer, Schedule, configure_optimizers, lr_factor, set_rates
from components.training.selection import SAMPLE_QUALITY, Selection

PRECISIONS = ("fp32", "bf16")
TrainData = Callable[[int, int], Iterable[Batch]]   # (epoch, batch size) -> this rank's batches
ValidData = Callable[[], Iterable[Batch]]           # () -> this rank's validation batches


@dataclasses.dataclass
class Settings:
    """A model's resolved `train` settings (params.yaml's `train`, with its entry's `training` over it):
    their one declaration, types and ranges; the schema checks params.yaml's against it. The loop reads
    most; the Ray run (pipelines/ray_train.py) the workers, CPUs, GPU, retries and storage."""
    epochs: PositiveInt
    batch_size: PositiveInt
    lr: PositiveFloat
    patience: PositiveInt
    seed: Seed = 0
    optimizers: dict[str, Optimizer] = dataclasses.field(default_factory=dict)   # by the model's names
    schedule: Schedule = dataclasses.field(default_factory=Schedule)
    ema_decay: Annotated[float, Field(gt=0, lt=1)] | None = None   # the average's decay per step (ema.py),
    ema_kimg: PositiveFloat | None = None                          # or its half-life in thousands of images,
    ema_rampup: PositiveFloat | None = None                        # at most this share of the images shown
    select_every: PositiveInt = 1                     # epochs between sample-quality measurements
    select_samples: Annotated[int, Field(ge=2)] = 500  # samples per sample-quality measurement
    num_workers: PositiveInt = 1
    cpus_per_worker: PositiveInt | Literal["auto"] = 1
    use_gpu: Literal["auto", True, False] = "auto"
    precision: Literal[PRECISIONS] = "fp32"
    max_failures: Annotated[int, Field(ge=0)] = 0
    storage_path: str | None = None

    def __post_init__(self):   # rules across settings: the schema runs them (components.config.rules)
        if self.ema_decay is not None and self.ema_kimg is not None:
            raise ValueError("set one of ema_decay (per step) and ema_kimg (a half-life in thousands of images)")
        if self.ema_rampup is not None and self.ema_kimg is None:
            raise ValueError("ema_rampup caps ema_kimg's half-life: it needs ema_kimg")

    @classmethod
    def from_dict(cls, values: dict) -> "Settings":
        """The settings of a mapping, checked as params.yaml's are (one line per bad key)."""
        return typed(cls, values, "training")

    def check(self, model: GenerativeModel) -> None:
        """Fail on settings this model cannot use, before any training."""
        if self.optimizers:  # building optimizers imports torch's compiler stack (~1 s): only to check names
            configure_optimizers(model, self.lr, self.optimizers)
        if self.averages and not model.ema_modules:
            raise ConfigError(f"training.ema_decay: {model.name} declares no weights to average (ema_modules)")

    @property
    def averages(self) -> bool:
        return self.ema_decay is not None or self.ema_kimg is not None


class Callback:
    """Hooks around the loop; set `run.stop = True` to end training after the current step."""

    def on_fit_start(self, run: "Run") -> None: ...
    def on_step_end(self, run: "Run") -> None: ...
    def on_epoch_end(self, run: "Run", record: dict) -> None: ...


def autocast(device: torch.device, precision: str):
    """bf16 mixed precision where the device supports it (CPU and recent GPUs); else full precision."""
    if precision != "bf16":
        return contextlib.nullcontext()
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


@torch.no_grad()
def validate(model: GenerativeModel, batches: Iterable[Batch], device) -> dict[str, float]:
    """Per-image averages of the model's validation metrics over all workers' shards."""
    model.eval()
    totals: dict[str, float] = {}
    count = 0
    for x in batches:
        for key, value in model.validation_metrics(x.to(device)).items():
            totals[key] = totals.get(key, 0.0) + value * len(x)
        count += len(x)
    keys = sorted(totals)
    summed = model.all_reduce_sum(torch.tensor([totals[k] for k in keys] + [float(count)],
                                               dtype=torch.float64, device=device))
    return {k: float(v / summed[-1]) for k, v in zip(keys, summed[:-1])}


class Run:
    """The state of one training run; `checkpoint()` is all a restart needs."""

    def __init__(self, model: GenerativeModel, settings: Settings, device, world: int, quality=None):
        self.model, self.settings, self.device, self.world = model, settings, torch.device(device), world
        self.optimizers = configure_optimizers(model, settings.lr, settings.optimizers)
        self.ema = (EMA(model, model.ema_modules, settings.ema_decay, settings.ema_kimg, settings.ema_rampup)
                    if settings.averages else None)
        self.phased = isinstance(model, Phased)   # the phase hooks below are called for these only
        self.phases = model.phases() if self.phased else [Phase("train")]
        metric = model.selection
        self.quality = quality
        if metric and metric[0] in SAMPLE_QUALITY and quality is None:
            metric = None  # nothing can measure it: the last epoch is kept
        self.selection = Selection(*metric, settings.patience) if metric else None
        self.state = {"epoch": 0, "step": 0, "images": 0, "phase": 0, "phase_images": 0, "history": [],
                      "stopped": False, "resumed_at_epochs": []}
        self.stop = False

    @property
    def phase(self) -> Phase:
        return self.phases[self.state["phase"]]

    def weights(self) -> dict:
        """The weights to use now: the live ones with the EMA's averages in place."""
        weights = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        return self.ema.weights(weights) if self.ema else weights

    def averaged(self):
        return self.ema.applied(self.model) if self.ema else contextlib.nullcontext()

    def checkpoint(self) -> dict:
        return {**self.state, "model": self.model.state_dict(),
                "optimizers": {n: o.state_dict() for n, o in self.optimizers.items()},
                "ema": self.ema.state_dict() if self.ema else None,
                "selection": self.selection.state_dict() if self.selection else None,
                "selected_by": self.selection.describe() if self.selection else None,
                "records": list(self.model.records) if self.phased else [],
                "rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state() if self.device.type == "cuda" else None}

    def restore(self, saved: dict) -> None:
        saved = dict(saved)
        self.model.load_state_dict(saved.pop("model"))
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(saved["optimizers"][name])
        if self.ema and saved.get("ema"):
            self.ema.load_state_dict(saved["ema"])
        if self.selection and saved.get("selection"):
            self.selection.load_state_dict(saved["selection"])
        torch.set_rng_state(saved["rng"])
        if saved.get("cuda_rng") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(saved["cuda_rng"])
        self.state.update({k: saved[k] for k in self.state if k in saved})
        self.state["resumed_at_epochs"] = [*saved.get("resumed_at_epochs", []), saved["epoch"]]

    def should_measure_quality(self, epoch: int) -> bool:
        every = self.settings.select_every
        return self.quality is not None and (epoch % every == 0 or epoch == self.settings.epochs or self.stop)


def fit(model: GenerativeModel, train_data: TrainData, valid_data: ValidData, settings: Settings,
        callbacks: Iterable[Callback] = (), state: dict | None = None, device="cpu", world: int = 1,
        quality=None) -> Run:
    """Train `model` (already on `device`) for `settings.epochs` epochs, or until selection stops it
    or a callback does. `state`: a checkpoint of an earlier run to continue. `quality(model, epoch)`:
    the sample-quality metrics (e.g. FID) of a model selected by one. Returns the finished `Run`."""
    callbacks = list(callbacks)
    run = Run(model, settings, device, world, quality)
    if state is not None:
        run.restore(state)
    for callback in callbacks:
        callback.on_fit_start(run)
    precision = autocast(run.device, settings.precision)
    entered = None
    while run.state["epoch"] < settings.epochs and not run.state["stopped"]:
        epoch = run.state["epoch"] + 1
        if run.phased and entered != run.state["phase"]:
            model.on_phase_start(run.phase)
            entered = run.state["phase"]
        rates = set_rates(run.optimizers, lr_factor(settings.schedule, epoch, settings.epochs))
        model.train()
        model.on_epoch_start()
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}   # images of the steps that reported each figure (a GAN's G trains every k-th)
        seen, started = 0, time.perf_counter()
        for batch in train_data(epoch, run.phase.batch_size or settings.batch_size):
            with precision:
                step = model.training_step(batch.to(run.device), run.optimizers)
            if run.ema:
                run.ema.update(model, len(batch) * world, run.state["images"] + (seen + len(batch)) * world)
            run.state["step"] += 1
            model.on_step(run.state["step"])
            for key, value in step.items():
                sums[key] = sums.get(key, 0.0) + value * len(batch)
                counts[key] = counts.get(key, 0) + len(batch)
            seen += len(batch)
            for callback in callbacks:
                callback.on_step_end(run)
            if run.stop:
                break
        seconds = time.perf_counter() - started
        record = {"epoch": epoch, **{f"train_{k}": v / counts[k] for k, v in sums.items()}}
        with run.averaged():
            record.update({f"val_{k}": v for k, v in validate(model, valid_data(), run.device).items()})
            if run.should_measure_quality(epoch):
                record.update({f"val_{k}": v for k, v in quality(model, epoch).items()})
        record.update({f"lr_{name}": rate for name, rate in rates.items()})
        record["images_per_second"] = seen * world / max(seconds, 1e-9)
        record["epoch_seconds"] = seconds
        eligible = not run.phased or model.selectable()   # the model this epoch trained, before the next phase starts
        end_phase(run, seen * world)
        if run.selection and eligible:
            run.selection.update(record, run.weights)
        run.state.update(epoch=epoch, images=run.state["images"] + seen * world,
                         stopped=run.stop or bool(run.selection and run.selection.should_stop))
        if epoch >= settings.epochs or run.state["stopped"]:   # training ends, and with it the phase
            phase_ended(run)
        run.state["history"].append(record)
        for callback in callbacks:
            callback.on_epoch_end(run, record)
    return run


def end_phase(run: Run, shown: int) -> None:
    """Count the epoch's images towards the phase; move to the next phase once it has shown enough."""
    run.state["phase_images"] += shown
    limit = run.phase.images
    if limit is not None and run.state["phase_images"] >= limit and run.state["phase"] + 1 < len(run.phases):
        phase_ended(run)
        run.state.update(phase=run.state["phase"] + 1, phase_images=0)


def phase_ended(run: Run) -> None:
    """The model's `on_phase_end` with the live weights, then with what validation and selection see."""
    if not run.phased:
        return
    run.model.on_phase_end(run.phase, averaged=False)
    with run.averaged():
        run.model.on_phase_end(run.phase, averaged=True)


def final_weights(checkpoint: dict) -> dict:
    """The weights to keep: the selected epoch's, else the last epoch's (with EMA averages, if any)."""
    selected = (checkpoint.get("selection") or {}).get("best_weights")
    if selected is not None:   # the run's records as the last epoch left them (Phased.records)
        return {**selected, **{k: checkpoint["model"][k].detach().cpu() for k in checkpoint.get("records", ())}}
    weights = {k: v.detach().cpu() for k, v in checkpoint["model"].items()}
    if checkpoint.get("ema"):
        weights.update({k: v.detach().cpu() for k, v in checkpoint["ema"]["shadow"].items()})
    return weights
