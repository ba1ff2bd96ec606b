"""The training loop: schedules, EMA, phases, exact resume, selection, budget, a conditional model."""

import io
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from components.errors import ConfigError
from components.data.batch import DataSpec
from components.data.prepared import write_split
from components.data.streaming import eval_batches
from components.models.base import GenerativeModel, Phase, Phased
from components.training import Settings, final_weights, fit
from components.training.ema import EMA
from components.training.ray_worker import batch_factories
from components.training.schedules import Optimizer, Schedule, configure_optimizers, lr_factor
from components.training.selection import Selection

SHAPE = (1, 3, 3)


class TwoPhases(Phased, GenerativeModel):
    """A tiny autoencoder-like likelihood with two optimizers, an averaged decoder, two phases and
    random input dropout (so resuming must restore the random state too)."""
    name = "test_phased"
    family = "explicit"
    likelihood = "exact"
    pixels = "binary"
    capabilities = {"log_prob"}
    selection = ("nll", "min")
    ema_modules = ("decoder",)

    def __init__(self, spec, params):
        super().__init__(spec, params)
        self.encoder, self.decoder = nn.Linear(self.num_pixels, 4), nn.Linear(4, self.num_pixels)
        self.entered: list[str] = []

    def configure_optimizers(self, lr):
        return {"encoder": torch.optim.Adam(self.encoder.parameters(), lr=lr),
                "decoder": torch.optim.Adam(self.decoder.parameters(), lr=lr)}

    def phases(self):
        return [Phase("small", images=128, batch_size=8), Phase("large", batch_size=32)]

    def on_phase_start(self, phase):
        self.entered.append(phase.name)

    def log_prob(self, x):
        x = self.flatten(x)
        return -F.binary_cross_entropy_with_logits(self.decoder(torch.tanh(self.encoder(x))), x,
                                                   reduction="none").sum(1)

    def training_step(self, batch, optimizers):
        x = self.flatten(batch.images)
        kept = x * torch.bernoulli(torch.full_like(x, 0.9))
        loss = F.binary_cross_entropy_with_logits(self.decoder(torch.tanh(self.encoder(kept))), x,
                                                  reduction="none").sum(1).mean()
        for optimizer in optimizers.values():
            optimizer.zero_grad()
        loss.backward()
        for optimizer in optimizers.values():
            optimizer.step()
        return {"loss": loss.item()}


def images(n=64, seed=0) -> np.ndarray:
    return (np.random.default_rng(seed).random((n, *SHAPE)) < 0.4).astype(np.float32)


def prepared(folder: Path) -> Path:
    """A tiny prepared dataset as the prepare stage writes one: 64 binary train images, 16 valid."""
    meta = {"source": "synthetic", "image_shape": list(SHAPE), "levels": 2, "binarization": "static",
            "threshold": 0.5, "seed": 0}
    folder.mkdir(parents=True, exist_ok=True)
    for name, count, seed in (("train", 64, 0), ("valid", 16, 1)):
        write_split(folder / f"{name}.parquet", images(count, seed), None, {**meta, "split": name})
    return folder


def fit_prepared(model, folder: Path, settings: Settings, callbacks=(), **kwargs):
    """`fit` on a prepared folder through the Ray worker's own batch factories (stream and eval readers)."""
    return fit(model, *batch_factories(folder, "binary", settings), settings, callbacks, **kwargs)


def settings(**changes) -> Settings:
    values = dict(epochs=6, batch_size=16, lr=0.01, patience=100, seed=0, ema_decay=0.9,
                  schedule={"kind": "linear_decay", "decay_fraction": 0.5},
                  optimizers={"decoder": {"lr": 0.02, "betas": [0.5, 0.9]}})
    return Settings.from_dict({**values, **changes})


def phased(seed=0) -> TwoPhases:
    torch.manual_seed(seed)
    return TwoPhases(DataSpec.single(SHAPE), TwoPhases.Params())


class Snapshot:
    """Keeps the checkpoint (round-tripped through torch.save, as a restart reads it) after epoch k."""
    def __init__(self, epoch):
        self.epoch, self.saved = epoch, None

    def on_fit_start(self, run): ...
    def on_step_end(self, run): ...

    def on_epoch_end(self, run, record):
        if record["epoch"] == self.epoch:
            buffer = io.BytesIO()
            torch.save(run.checkpoint(), buffer)
            buffer.seek(0)
            self.saved = torch.load(buffer, weights_only=False)


def test_linear_decay_follows_cyclegans_rule_and_the_others_their_formulas():
    schedule = Schedule("linear_decay", decay_fraction=0.5)   # 10 epochs: 5 constant, 5 decaying
    assert [lr_factor(schedule, e, 10) for e in (1, 5)] == [1.0, 1.0]
    assert lr_factor(schedule, 6, 10) == pytest.approx(1 - 1 / 6)
    assert lr_factor(schedule, 10, 10) == pytest.approx(1 - 5 / 6)
    assert [lr_factor(Schedule("step", step_epochs=2, gamma=0.5), e, 10) for e in (1, 2, 3, 5)] == \
        [1.0, 1.0, 0.5, 0.25]
    assert lr_factor(Schedule("cosine"), 1, 10) == 1.0
    assert lr_factor(Schedule("cosine"), 6, 10) == pytest.approx(0.5)


def test_per_optimizer_settings_apply_and_unknown_names_are_listed(tmp_path):
    model = phased()
    optimizers = configure_optimizers(model, 0.01, {"decoder": Optimizer(lr=0.02, betas=[0.5, 0.9])})
    assert optimizers["decoder"].param_groups[0]["lr"] == 0.02
    assert optimizers["decoder"].param_groups[0]["betas"] == (0.5, 0.9)
    assert optimizers["encoder"].param_groups[0]["lr"] == 0.01
    with pytest.raises(ConfigError, match="test_phased has no optimizer.s. generator; its optimizers: encoder, decoder"):
        configure_optimizers(model, 0.01, {"generator": Optimizer(lr=1e-3)})
    run = fit_prepared(model, prepared(tmp_path), settings())
    rates = [r["lr_decoder"] for r in run.state["history"]]
    assert rates == pytest.approx([0.02 * lr_factor(settings().schedule, e, 6) for e in range(1, 7)])


def test_ema_equals_its_formula_and_is_what_is_validated_and_saved(tmp_path):
    layer = nn.Linear(1, 1, bias=False)
    w0, w1, w2 = torch.tensor([[1.0]]), torch.tensor([[3.0]]), torch.tensor([[-2.0]])
    with torch.no_grad():
        layer.weight.copy_(w0)
    ema = EMA(nn.Sequential(layer), ("0",), decay=0.5)
    for w in (w1, w2):
        with torch.no_grad():
            layer.weight.copy_(w)
        ema.update(nn.Sequential(layer))
    expected = 0.25 * w0 + 0.25 * w1 + 0.5 * w2
    assert torch.allclose(ema.shadow["0.weight"], expected)
    with ema.applied(nn.Sequential(layer)):
        assert torch.allclose(layer.weight, expected)
    assert torch.equal(layer.weight, w2)  # the live weights are back

    shadows, lives = {}, {}

    class Watch(Snapshot):
        def on_epoch_end(self, run, record):
            shadows[record["epoch"]] = run.ema.shadow["decoder.weight"].clone()
            lives[record["epoch"]] = run.model.decoder.weight.detach().clone()

    folder = prepared(tmp_path)
    run = fit_prepared(phased(), folder, settings(), [Watch(0)])
    best = run.selection.best_epoch
    kept = final_weights(run.checkpoint())["decoder.weight"]
    assert torch.equal(kept, shadows[best]) and not torch.equal(kept, lives[best])
    # Validation saw the averaged decoder: its NLL at the best epoch is the averaged model's.
    model = phased()
    model.load_state_dict(final_weights(run.checkpoint()))
    valid = torch.cat([b.images for b in eval_batches(folder, "valid", "binary", 16)])
    with torch.no_grad():
        assert run.selection.best == pytest.approx(float(-model.log_prob(valid).mean()), rel=1e-6)


def test_phases_change_the_batch_size_and_call_their_hook(tmp_path):
    sizes = []
    data, valid = batch_factories(prepared(tmp_path), "binary", settings(epochs=4))

    def recorded(epoch, batch_size):
        sizes.append(batch_size)
        return data(epoch, batch_size)

    model = phased()
    run = fit(model, recorded, valid, settings(epochs=4))
    assert sizes == [8, 8, 32, 32]      # 64 images an epoch: the first phase shows 128
    assert model.entered == ["small", "large"] and run.state["phase"] == 1


def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path):
    folder = prepared(tmp_path)
    snapshot = Snapshot(epoch=1)        # mid-phase: the first phase lasts two epochs
    whole = fit_prepared(phased(), folder, settings(), [snapshot])
    assert snapshot.saved["phase"] == 0 and snapshot.saved["phase_images"] == 64
    torch.manual_seed(123)              # a restart's random state differs until the checkpoint restores it
    model = phased(seed=7)
    resumed = fit_prepared(model, folder, settings(), state=snapshot.saved)
    assert model.entered == ["small", "large"]   # re-entered the phase it was killed in
    assert resumed.state["resumed_at_epochs"] == [1]
    for name, value in whole.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
    for name, value in whole.ema.shadow.items():
        assert torch.equal(value, resumed.ema.shadow[name]), name
    for name, optimizer in whole.optimizers.items():
        a, b = optimizer.state_dict(), resumed.optimizers[name].state_dict()
        assert a["param_groups"] == b["param_groups"]
        for index, moments in a["state"].items():
            assert all(torch.equal(moments[k], b["state"][index][k]) for k in moments)
    assert whole.state["phase"] == resumed.state["phase"] == 1
    timing = ("images_per_second", "epoch_seconds")
    assert [{k: v for k, v in r.items() if k not in timing} for r in whole.state["history"]] == \
           [{k: v for k, v in r.items() if k not in timing} for r in resumed.state["history"]]
    assert whole.selection.state_dict()["best_epoch"] == resumed.selection.state_dict()["best_epoch"]


class Scripted(GenerativeModel):
    """Its validation metric follows a script, one value per epoch."""
    name = "test_scripted"
    family = "explicit"
    selection = ("score", "max")
    script = [1.0, 3.0, 2.0, 5.0, 4.0]

    def __init__(self, spec, params):
        super().__init__(spec, params)
        self.register_buffer("epochs_started", torch.zeros((), dtype=torch.long))

    def configure_optimizers(self, lr):
        return {}

    def on_epoch_start(self):
        self.epochs_started += 1

    def training_step(self, batch, optimizers):
        return {}

    def validation_metrics(self, batch):
        return {"score": self.script[int(self.epochs_started) - 1]}


@pytest.mark.parametrize("direction, stopped_at, best_epoch", [("max", 5, 4), ("min", 3, 1)])
def test_selection_keeps_the_best_epoch_in_the_declared_direction(monkeypatch, tmp_path, direction, stopped_at,
                                                                  best_epoch):
    monkeypatch.setattr(Scripted, "selection", ("score", direction))
    model = Scripted(DataSpec.single(SHAPE), Scripted.Params())
    run = fit_prepared(model, prepared(tmp_path), settings(epochs=5, patience=2, ema_decay=None, optimizers={}))
    assert run.state["epoch"] == stopped_at and run.state["stopped"] == (stopped_at < 5)
    assert int(final_weights(run.checkpoint())["epochs_started"]) == best_epoch
    assert run.selection.best == Scripted.script[best_epoch - 1]


def test_a_model_without_the_phased_mixin_trains_in_one_phase_and_keeps_no_records(tmp_path):
    """fit calls phase hooks on `Phased` models only: a plain model trains all epochs in one phase at the
    batch_size setting, every epoch a candidate for selection, and its checkpoint lists no records."""
    sizes = []
    data, valid = batch_factories(prepared(tmp_path), "binary", settings(epochs=3))

    def recorded(epoch, batch_size):
        sizes.append(batch_size)
        return data(epoch, batch_size)

    model = Scripted(DataSpec.single(SHAPE), Scripted.Params())
    run = fit(model, recorded, valid, settings(epochs=3, ema_decay=None, optimizers={}))
    assert not run.phased and run.phases == [Phase("train")] and run.state["phase"] == 0
    assert sizes == [16, 16, 16] and run.checkpoint()["records"] == []
    assert run.selection.state_dict()["best_epoch"] == 2   # scores 1, 3, 2: the best of every epoch


def test_selection_rejects_a_bad_declaration():
    with pytest.raises(TypeError, match="selection is .metric, 'min' . 'max'."):
        type("Bad", (GenerativeModel,), {"selection": ("nll", "lowest")})
    selection = Selection("nll", "min", patience=1)
    assert not selection.update({"epoch": 1}, dict)   # not measured: nothing changes
    assert selection.best is None and selection.bad == 0


def test_the_budget_benchmark_trains_with_fit(monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("budget", Path(__file__).resolve().parents[1] / "benchmarks/budget.py")
    budget = importlib.util.module_from_spec(spec)   # not in sys.modules; sys.path as it was after the test
    monkeypatch.setattr(sys, "path", list(sys.path))   # the benchmark puts the repository on it
    spec.loader.exec_module(budget)

    calls = []
    real = budget.fit
    monkeypatch.setattr(budget, "fit", lambda *args, **kwargs: calls.append(args) or real(*args, **kwargs))
    data = torch.from_numpy(images(256))
    result = budget.train_within("nade", {"hidden_units": 4}, data[:192], data[192:], seconds=0.5,
                                 batch_size=16, lr=0.01, device="cpu")
    assert len(calls) == 1 and result["run"].state["history"]
    assert 0 < result["epochs"] and result["run"].state["stopped"]
    assert result["best_val"] == min(r["val_nll"] for r in result["run"].state["history"])


def test_bad_training_settings_are_named():
    from components.models import build_model

    with pytest.raises(ConfigError, match="^training: schedule.kind = 'exponential': must be one of constant,"):
        settings(schedule={"kind": "exponential"})
    with pytest.raises(ConfigError, match="^training: precision = 'fp8': must be one of fp32, bf16$"):
        settings(precision="fp8")
    with pytest.raises(ConfigError, match="^training: epoch: unknown key; valid keys: epochs, "):
        settings(epoch=3)   # a misspelt setting is an error, not silently dropped
    nade = build_model("nade", DataSpec.single(SHAPE), {"hidden_units": 4})
    with pytest.raises(ConfigError, match="training.ema_decay: nade declares no weights to average"):
        settings(optimizers={}).check(nade)
    with pytest.raises(ConfigError, match="nade has no optimizer.s. decoder; its optimizers: model"):
        settings(ema_decay=None).check(nade)


class EveryOther(Scripted):
    """Reports `g` only on every second step, as a GAN whose generator trains every k-th step."""
    name = "test_every_other"

    def __init__(self, spec, params):
        super().__init__(spec, params)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def training_step(self, batch, optimizers):
        self.steps += 1
        return {"d": 1.0, **({"g": float(self.steps)} if int(self.steps) % 2 == 0 else {})}


def test_a_figure_reported_on_some_steps_is_averaged_over_those_steps(tmp_path):
    model = EveryOther(DataSpec.single(SHAPE), EveryOther.Params())
    run = fit_prepared(model, prepared(tmp_path), settings(epochs=1, ema_decay=None, optimizers={}))
    record = run.state["history"][0]
    steps = int(model.steps)
    assert steps >= 4 and record["train_d"] == 1.0
    reported = [float(s) for s in range(2, steps + 1, 2)]
    assert record["train_g"] == pytest.approx(sum(reported) / len(reported))   # not diluted by the other steps
