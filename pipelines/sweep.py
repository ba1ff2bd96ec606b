"""A model's hyperparameter sweep: concurrent Ray Tune trials, each one Ray Train run.

A model entry in params.yaml may declare

    sweep:
      trials: 8              # trial budget: configurations drawn from the space
      concurrent: 2          # trials at once (default: as many as the cluster's CPUs hold)
      grace_epochs: 2        # ASHA stops a poor trial only after this many epochs
      space:
        hidden_units: {choice: [50, 100, 200]}      # a model parameter
        training.lr: {loguniform: [0.0001, 0.01]}   # a training setting

Tune launches the trials (each trial's driver builds its own TorchTrainer, as in a
plain run) and its ASHA scheduler stops trials whose validation metric trails the
others'. The best trial's last checkpoint (which holds its best weights) becomes the
stage's output; the driver logs every trial as a child run of the stage's MLflow run.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from components.schema import Sweep


@dataclasses.dataclass
class Plan:
    space: dict            # {"params": {name: spec}, "settings": {name: spec}} as written in params.yaml
    trials: int
    concurrent: int | None
    grace_epochs: int


@dataclasses.dataclass
class Trial:
    trial_id: str
    sampled: dict          # {"model.<parameter>": v, "train.<setting>": v}, as the parent run's params
    history: list[dict]    # one record per epoch, as the workers reported them
    best: float | None
    error: str | None = None


def _domain(spec: dict):
    """A checked distribution (components.schema.Distribution) as Tune's search domain."""
    from ray import tune

    (kind, values), = spec.items()
    if kind == "choice":
        return tune.choice(values)
    return {"uniform": tune.uniform, "loguniform": tune.loguniform, "randint": tune.randint}[kind](*values)


def plan(spec: dict) -> Plan:
    """A model's `sweep` entry, as the schema checked it (components.schema: Sweep and sweep_problems,
    which hold every value of the space against the parameter or setting it searches), with the
    space split into model parameters and training settings."""
    space = {"params": {}, "settings": {}}
    for name, value in spec["space"].items():
        if name.startswith("training."):
            space["settings"][name.removeprefix("training.")] = value
        else:
            space["params"][name] = value
    checked = Sweep.model_construct(**spec)   # checked already: its defaults filled in
    return Plan(space=space, trials=checked.trials, concurrent=checked.concurrent, grace_epochs=checked.grace_epochs)


def _run_trial(trial: dict, base: dict, settings: dict, storage: str) -> None:
    """One Tune trial: a Ray Train run of the sampled configuration, reporting every epoch to Tune."""
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from pipelines.ray_train import make_trainer

    trial_id = tune.get_context().get_trial_id()
    sampled = {name: type(base["settings"][name])(value) for name, value in trial["settings"].items()}
    config = {**base, "key": f"{base['key']} {trial_id}", "params": {**base["params"], **trial["params"]},
              "settings": {**base["settings"], **sampled}}
    # Named by the trial id: a restored sweep resumes each trial's own Train run. Its workers are not
    # restarted by Ray Train (Tune retries the trial instead, from the run's checkpoint): a trial Tune
    # stopped has its workers' group removed (below), and a controller that retried would place a
    # new group nobody releases.
    trainer = make_trainer(config, {**settings, "max_failures": 0}, Path(storage), trial_id,
                           callbacks=[TuneReportCallback()])
    trainer.fit()


def _release_when_stopped():
    """A Tune callback that frees a stopped trial's workers.

    Tune stops a trial (ASHA, or its last epoch) by ending the trial's driver, which kills its
    Train controller before it removes its workers' placement group. Ray Train's cleaner for that
    asks the dashboard's state API whether the controller died; without the dashboard (local Ray
    here, `ray[default]` not installed) the trial's CPUs would stay reserved and later trials would
    never start. So the sweep removes the group the trial's workers reported."""
    import ray
    from ray import tune
    from ray.util.placement_group import PlacementGroup, placement_group_table, remove_placement_group

    def release(group_hex: str) -> None:
        group = PlacementGroup(ray.PlacementGroupID.from_hex(group_hex))
        if placement_group_table(group).get("state") not in (None, "REMOVED"):
            remove_placement_group(group)

    class ReleaseStoppedTrials(tune.Callback):
        def __init__(self):
            self.groups: dict[str, set[str]] = {}  # trial id -> every group its workers reported

        def on_trial_result(self, iteration, trials, trial, result, **info):
            if result.get("placement_group"):
                self.groups.setdefault(trial.trial_id, set()).add(result["placement_group"])

        def on_trial_complete(self, iteration, trials, trial, **info):
            for group in self.groups.pop(trial.trial_id, set()):
                release(group)

        on_trial_error = on_trial_complete

        def on_experiment_end(self, trials, **info):
            # Whatever a trial reported and no completion released (a fresh-clone run leaked one).
            for trial_id in list(self.groups):
                for group in self.groups.pop(trial_id):
                    release(group)

    return ReleaseStoppedTrials()


def run(sweep: Plan, base: dict, settings: dict, selection: tuple[str, str], storage: Path,
        name: str) -> tuple[dict, dict, list[Trial]]:
    """Run the sweep (or resume it after a crash), comparing trials by the model's `selection`
    (metric, direction); return the best trial's checkpoint state and sampled values, and every trial.
    `settings`: every training setting, defaults filled in (fit.Settings as a mapping).

    Tune compares the `selected` value each epoch's report carries: the best of the selection
    metric so far (see components/training/ray_worker.py)."""
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from pipelines.ray_train import read_state

    monitor, mode = f"val_{selection[0]}", selection[1]
    pick = min if mode == "min" else max

    # Trials fill the cluster side by side: `auto` gives each worker one CPU.
    per_worker = settings["cpus_per_worker"]
    settings = {**settings, "cpus_per_worker": 1 if per_worker == "auto" else per_worker}
    cpus_per_trial = settings["num_workers"] * settings["cpus_per_worker"]
    concurrent = sweep.concurrent or max(1, int(ray.cluster_resources().get("CPU", 1)) // cpus_per_trial)
    # A trial's driver only waits on its TorchTrainer: its workers hold the CPUs. Tune refuses a
    # trial that asks for nothing, so the driver asks for one byte of memory instead of a CPU.
    trainable = tune.with_resources(
        tune.with_parameters(_run_trial, base=base, settings=settings, storage=str(storage / f"{name}-runs")),
        {"cpu": 0, "memory": 1})
    path = storage / name
    if tune.Tuner.can_restore(str(path)):
        print(f"[{base['key']}] resuming the sweep in {path}", flush=True)
        tuner = tune.Tuner.restore(str(path), trainable=trainable, resume_errored=True)
    else:
        space = {part: {k: _domain(v) for k, v in sweep.space[part].items()} for part in ("params", "settings")}
        tuner = tune.Tuner(
            trainable, param_space=space,
            tune_config=tune.TuneConfig(
                metric="selected", mode=mode, num_samples=sweep.trials, max_concurrent_trials=concurrent,
                # max_t past the last epoch: a trial that trains every epoch ends on its own (its
                # controller releases its workers); ASHA stops only the trailing ones.
                scheduler=ASHAScheduler(time_attr="epoch", max_t=settings["epochs"] + 1,
                                        grace_period=min(sweep.grace_epochs, settings["epochs"]))),
            run_config=tune.RunConfig(
                name=name, storage_path=str(storage), verbose=0, callbacks=[_release_when_stopped()],
                failure_config=tune.FailureConfig(max_failures=settings["max_failures"])))
    print(f"[{base['key']}] sweep: {sweep.trials} trial(s), {concurrent} at a time, ASHA on {monitor}",
          flush=True)
    grid = tuner.fit()

    trials = []
    for result in grid:
        # Each trial's last checkpoint holds its whole history (Tune's own result logs are off).
        checkpoint = (result.metrics or {}).get("checkpoint_path")
        history = read_state(checkpoint)["history"] if checkpoint else []
        trials.append(Trial(
            trial_id=(result.metrics or {}).get("trial_id") or Path(result.path).name,
            sampled={**{f"model.{k}": v for k, v in result.config["params"].items()},
                     **{f"train.{k}": v for k, v in result.config["settings"].items()}},
            history=history, best=pick((r[monitor] for r in history if monitor in r), default=None),
            error=None if result.error is None else f"{type(result.error).__name__}: {result.error}"))
    if all(t.best is None for t in trials):
        raise RuntimeError(f"every trial of the {base['key']} sweep failed; first error: {trials[0].error}")
    best = grid.get_best_result(metric="selected", mode=mode, scope="all")
    state = read_state(best.metrics["checkpoint_path"])
    return state, best.config, trials


def log_trials(trials: list[Trial], monitor: str) -> None:
    """Every trial as a child of the active MLflow run: what it tried, its curve, its best value."""
    import mlflow

    from pipelines import tracking

    for number, trial in enumerate(trials):
        with mlflow.start_run(run_name=f"trial-{number}", nested=True):
            mlflow.set_tags({"genzoo.stage": "trial", "genzoo.trial_id": trial.trial_id,
                             **({"genzoo.trial_error": trial.error[:4000]} if trial.error else {})})
            mlflow.log_params(trial.sampled)
            tracking.log_history(trial.history)
            if trial.best is not None:
                mlflow.log_metrics({f"best_{monitor}": trial.best,
                                    "epochs_trained": max(int(r["epoch"]) for r in trial.history)})
