"""The concurrent runner's scheduling (pipelines/repro.py), with stand-in stages: which ready stage
starts first, and that train stages wait for the run's local Ray while other stages go on."""

import subprocess
import sys

import pytest

from pipelines import repro
from pipelines.ray_session import ClusterUnavailable


class FakeRay:
    """A BackgroundRay whose start the test decides."""

    def __init__(self):
        self.up, self.broken, self.stopped = False, False, False

    def env(self, base):
        if self.broken:
            raise ClusterUnavailable("ray start exited with 1")
        return {**base, "RAY_ADDRESS": "127.0.0.1:1"} if self.up else None

    def stop(self, wait=False):
        self.stopped = True


class RecordingRunner(repro.Runner):
    """Starts a stand-in process per stage (a Python that exits at once) and records the order."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.order, self.envs = [], {}

    def start(self, name, env):
        self.order.append(name)
        self.envs[name] = env
        self.running[name] = subprocess.Popen([sys.executable, "-c", "pass"])
        self.started[name] = 0.0


def test_a_ready_stage_of_a_kind_fewer_running_stages_are_of_goes_first():
    stages = {"train@a": set(), "train@b": set(), "evaluate@x": set(), "evaluate@y": set()}
    runner = repro.Runner(stages, jobs=2, env={})
    # Nothing running: a training before an evaluation, by name within a kind.
    assert sorted(stages, key=runner.priority) == ["train@a", "train@b", "evaluate@x", "evaluate@y"]
    # One training running: an evaluation beside it, not a second training.
    runner.running["train@z"] = None
    assert sorted(stages, key=runner.priority)[:2] == ["evaluate@x", "evaluate@y"]
    # One evaluation running: a training beside it.
    runner.running = {"evaluate@z": None}
    assert sorted(stages, key=runner.priority)[0] == "train@a"


def test_free_slots_filled_at_once_still_alternate_the_kinds(monkeypatch):
    monkeypatch.setattr(repro.time, "sleep", lambda _: None)
    stages = {"train@a": set(), "train@b": set(), "evaluate@x": set()}
    runner = RecordingRunner(stages, jobs=2, env={})
    runner.run()
    # Both slots free at once: the second takes the evaluation, not a second training.
    assert runner.order == ["train@a", "evaluate@x", "train@b"]


def test_train_stages_wait_for_the_local_ray_while_the_others_run(monkeypatch):
    monkeypatch.setattr(repro.time, "sleep", lambda _: None)
    ray = FakeRay()
    stages = {"prepare": set(), "classifier": {"prepare"}, "train@a": {"classifier"},
              "evaluate@a": {"train@a"}, "promote": {"evaluate@a"}}
    runner = RecordingRunner(stages, jobs=2, env={"X": "1"}, ray=ray)
    polls = {"count": 0}
    original = runner.env_for

    def env_for(name):   # the Ray comes up only after the stages before training are done
        polls["count"] += 1
        if name == "train@a" and runner.done >= {"prepare", "classifier"} and polls["count"] > 3:
            ray.up = True
        return original(name)

    runner.env_for = env_for
    runner.run()
    assert runner.order == ["prepare", "classifier", "train@a", "evaluate@a", "promote"]
    assert runner.envs["train@a"]["RAY_ADDRESS"] == "127.0.0.1:1"
    assert "RAY_ADDRESS" not in runner.envs["evaluate@a"] and runner.envs["evaluate@a"]["X"] == "1"
    assert ray.stopped   # no train stage left: the Ray was let go before the run ended


def test_a_local_ray_that_did_not_start_fails_the_train_stages_and_skips_their_dependants(monkeypatch, capsys):
    monkeypatch.setattr(repro.time, "sleep", lambda _: None)
    ray = FakeRay()
    ray.broken = True
    stages = {"prepare": set(), "train@a": {"prepare"}, "train@b": {"prepare"},
              "evaluate@a": {"train@a"}, "other": {"prepare"}}
    runner = RecordingRunner(stages, jobs=2, env={}, ray=ray)
    runner.run()
    assert set(runner.failed) == {"train@a", "train@b"}
    assert runner.skipped == {"evaluate@a": "train@a"}
    assert runner.order == ["prepare", "other"]
    out = capsys.readouterr().out
    assert "repro: train@a cannot train: ray start exited with 1" in out
    assert "repro: train@b cannot train: ray start exited with 1" in out
