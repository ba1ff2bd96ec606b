"""The Ray Train adapter starts only the actors a run needs (each one is a fresh Python process), and
stages without a cluster share one local Ray that stops once idle."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray
import ray._private.state
import ray.cloudpickle
import ray.train
from ray.train import RunConfig, ScalingConfig

from pipelines.local_cluster import alive, shared_root
from pipelines.ray_session import STAGES_AT_ONCE, ray_session, worker_cpus
from pipelines.ray_train import trainer_class


def rank_and_config(config):
    import torch.distributed

    return {"rank": ray.train.get_context().get_world_rank(), "seen": config["value"],
            "process_group": torch.distributed.is_initialized()}


ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray's workers cannot import tests/


@pytest.mark.parametrize("distributed", [True, False])
def test_a_run_on_a_local_ray_starts_no_dataset_manager_and_no_placement_group_cleaner(tmp_path, distributed):
    with ray_session(None):
        result = trainer_class(distributed)(rank_and_config, train_loop_config={"value": 7},
                                            scaling_config=ScalingConfig(num_workers=1),
                                            run_config=RunConfig(name="lean", storage_path=str(tmp_path))).fit()
        started = sorted(actor["ActorClassName"] for actor in ray._private.state.actors().values())
    # One CPU worker (distributed=False) runs without a torch.distributed process group to set up.
    assert result.return_value == {"rank": 0, "seen": 7, "process_group": distributed}
    assert started == ["RayTrainWorker", "SynchronizationActor", "TrainController", "_AutoscalingCoordinatorActor"]


def test_auto_worker_cpus_share_the_cluster_among_the_workers_of_the_stages_training_at_once(monkeypatch):
    monkeypatch.delenv(STAGES_AT_ONCE, raising=False)
    with ray_session(None):   # a local Ray with every CPU of this machine
        cpus = int(ray.cluster_resources()["CPU"])
        assert cpus == (os.cpu_count() or 1)
        assert worker_cpus("auto", 1) == cpus      # `dvc repro`: one stage at a time gets the machine
        assert worker_cpus("auto", 2) == max(1, cpus // 2)
        assert worker_cpus("auto", 4 * cpus) == 1  # never less than one CPU
        assert worker_cpus(3, 1) == 3              # a number is taken as it is
        monkeypatch.setenv(STAGES_AT_ONCE, "2")     # pipelines.repro --jobs 2
        assert worker_cpus("auto", 1) == max(1, cpus // 2)


def command_lines() -> list[tuple[str, str]]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            found.append((proc.name, (proc / "cmdline").read_bytes().decode(errors="replace")))
        except OSError:   # not a process, or one that just ended
            continue
    return found


def test_stages_without_a_cluster_share_one_local_ray_that_stops_when_no_stage_used_it_for_a_while(tmp_path):
    stage = ("import ray\nfrom pipelines.ray_session import ray_session\n"
             "with ray_session(None, share_local=3):\n"
             "    print(ray.get_runtime_context().gcs_address, flush=True)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    root = shared_root(tmp_path)   # the stage's repository is its working directory, as under DVC

    def run_stage() -> str:
        done = subprocess.run([sys.executable, "-c", stage], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout.split()[-1]

    first = run_stage()
    keeper = json.loads((root / "state.json").read_text())["keeper"]
    (root / "leases" / "999999999").touch()   # a killed stage's lease: its process is gone
    second = run_stage()
    assert second == first, "the second stage started a Ray of its own instead of joining the first's"
    assert json.loads((root / "state.json").read_text())["keeper"] == keeper

    deadline = time.time() + 90    # 3 s idle, then Ray's own shutdown
    while alive(keeper) and time.time() < deadline:
        time.sleep(0.5)
    assert not alive(keeper) and not (root / "state.json").exists()
    left = [pid for pid, command in command_lines() if str(root) in command]
    assert not left, f"processes of the stopped Ray are still running: {left}"
    assert run_stage() != first    # the next stage starts a fresh one
