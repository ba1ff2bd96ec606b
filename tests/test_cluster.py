"""Training on a real two-node Ray cluster, started on this machine with `ray start` and
token authentication: data-parallel workers on both nodes, a Ray Tune sweep, and a run
that survives losing a worker."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from pipelines.local_cluster import local_cluster

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A head node and a second node, one CPU each, on free ports, with their own temp dirs and a token;
    ended exactly (each node's process group), never another Ray on the machine."""
    with local_cluster(tmp_path_factory.mktemp("cluster"), [1, 1]) as running:
        yield {"address": running.address, "token": running.token}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A prepared tiny dataset and a params.yaml whose runs checkpoint to a folder both nodes reach."""
    folder = tmp_path_factory.mktemp("workspace")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"]["max_examples"] = {"train": 120, "valid": 40, "test": 20}
    params["train"].update(epochs=3, batch_size=20, num_workers=2, cpus_per_worker="auto", max_failures=2,
                           storage_path=str(folder / "shared_storage"))
    params["models"] = {
        "nade": {"model": "nade", "hidden_units": 8},
        "nade_long": {"model": "nade", "hidden_units": 8, "training": {"epochs": 40, "patience": 40}},
        "nade_sweep": {"model": "nade", "hidden_units": 8, "training": {"epochs": 3, "num_workers": 1},
                       "sweep": {"trials": 3, "concurrent": 2,
                                 "space": {"hidden_units": {"choice": [4, 12]},
                                           "training.lr": {"loguniform": [0.001, 0.01]}}}},
    }
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (folder / "components").symlink_to(REPO / "components")  # the code MLflow bundles with a model
    subprocess.run([sys.executable, "-m", "pipelines.prepare"], cwd=folder, check=True, capture_output=True,
                   env={**os.environ, "PYTHONPATH": str(REPO)})
    return folder


def train_command(workspace: Path, cluster: dict, key: str) -> tuple[list[str], dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_") and k != "MLFLOW_TRACKING_URI"}
    # What a user sets to use a cluster: its address and its token.
    env.update(PYTHONPATH=str(REPO), RAY_ADDRESS=cluster["address"], RAY_AUTH_TOKEN=cluster["token"])
    # The previous test's job may still hold its CPUs while Ray cleans it up on a loaded 2-core machine:
    # let Ray Train wait for its workers longer than its 60 s default (it passes this on to its controller).
    env["RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"] = "240"
    return [sys.executable, "-m", "pipelines.train", key], env


def train(workspace: Path, cluster: dict, key: str) -> dict:
    command, env = train_command(workspace, cluster, key)
    result = subprocess.run(command, cwd=workspace, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads((workspace / f"models/{key}/training.json").read_text())


def test_two_workers_train_on_both_nodes(cluster, workspace):
    summary = train(workspace, cluster, "nade")
    workers = summary["workers"]
    assert sorted(w["rank"] for w in workers) == [0, 1]
    assert len({w["node_id"] for w in workers}) == 2  # one CPU per node: one worker on each
    assert [w["threads"] for w in workers] == [1, 1]  # cpus_per_worker auto: each its node's one CPU
    assert summary["epochs_trained"] == 3 and summary["resumed_at_epochs"] == []
    assert (workspace / "models/nade/model.pt").exists()


def test_auto_worker_cpus_never_ask_more_than_one_node_has(cluster, workspace):
    command, env = train_command(workspace, cluster, "nade")
    probe = ("from pipelines.ray_session import ray_session, worker_cpus\n"
             "with ray_session():\n    print(worker_cpus('auto', 1), worker_cpus('auto', 2))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=workspace, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    # Two CPUs in all, one per node: a lone worker asking for both could never be placed.
    assert result.stdout.split()[-2:] == ["1", "1"]


def test_several_nodes_without_shared_storage_is_refused(cluster, workspace, tmp_path):
    (tmp_path / "params.yaml").write_text((workspace / "params.yaml").read_text().replace(
        f"storage_path: {workspace / 'shared_storage'}", "storage_path: null"))
    (tmp_path / "data").symlink_to(workspace / "data")
    command, env = train_command(tmp_path, cluster, "nade")
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "the Ray cluster has several nodes: set train.storage_path" in result.stderr
    assert not (tmp_path / "models").exists()


# The fault test runs before the sweep: a fresh-clone CI run once found a sweep trial's placement
# group still holding a CPU after the sweep ended (pipelines/sweep.py now releases every group its
# trials reported), and the fault test needs both nodes' CPUs.
def test_a_killed_worker_resumes_from_its_checkpoint_and_finishes(cluster, workspace):
    command, env = train_command(workspace, cluster, "nade_long")
    log = workspace / "nade_long.log"  # a file, not a pipe: nobody reads a pipe until the run ends
    with open(log, "w") as sink:
        process = subprocess.Popen(command, cwd=workspace, env=env, stdout=sink, stderr=subprocess.STDOUT, text=True)
    storage = workspace / "shared_storage"

    def registered_checkpoints():
        # Ray Train resumes from the checkpoints its controller has registered (it then writes this snapshot).
        if not list(storage.glob("nade_long-*/checkpoint_manager_snapshot.json")):
            return []
        return list(storage.glob("nade_long-*/checkpoint_*/state.pt"))

    deadline = time.time() + 420  # beyond the 240 s Ray Train may wait for CPUs the previous test held
    while not registered_checkpoints() and time.time() < deadline:
        assert process.poll() is None, log.read_text()
        time.sleep(0.2)
    assert registered_checkpoints(), f"no checkpoint registered within 420 s:\n{log.read_text()[-4000:]}"
    checkpoint = max(registered_checkpoints(), key=lambda p: p.stat().st_mtime)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert state["epoch"] < 40, "the run ended before the worker could be killed"
    victim = next(w for w in state["workers"] if w["rank"] == 1)
    os.kill(victim["pid"], signal.SIGKILL)  # a worker process dies mid-run; the driver lives on
    process.wait(timeout=300)
    output = log.read_text()
    assert process.returncode == 0, output[-4000:]

    summary = json.loads((workspace / "models/nade_long/training.json").read_text())
    assert len(summary["resumed_at_epochs"]) == 1 and summary["resumed_at_epochs"][0] >= 1, output[-4000:]
    assert victim["pid"] not in {w["pid"] for w in summary["workers"]}  # a fresh worker group finished
    epochs = [int(line.split(",")[0]) for line in
              (workspace / "reports/nade_long/training.csv").read_text().splitlines()[1:]]
    assert epochs == list(range(1, 41)) and summary["epochs_trained"] == 40


def test_a_sweep_logs_one_parent_run_with_a_child_per_trial(cluster, workspace):
    from mlflow import MlflowClient

    summary = train(workspace, cluster, "nade_sweep")
    logged = json.loads((workspace / "models/nade_sweep/mlflow.json").read_text())
    client = MlflowClient(tracking_uri=f"sqlite:///{workspace / 'mlflow.db'}")
    parent = client.get_run(logged["run_id"])
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert len(children) == 3 and summary["sweep"]["trials"] == 3
    assert {c.data.tags["genzoo.stage"] for c in children} == {"trial"}
    assert all(c.data.metrics["best_val_nll"] > 0 for c in children)
    # The stage's model is the best trial's: its sampled size, and the best value of all trials.
    best_child = min(children, key=lambda c: c.data.metrics["best_val_nll"])
    best_size = summary["sweep"]["best"]["params"]["hidden_units"]
    assert best_child.data.params["model.hidden_units"] == str(best_size)
    config = json.loads((workspace / "models/nade_sweep/config.json").read_text())
    assert config["params"]["hidden_units"] == best_size
    assert summary["best_val"] == pytest.approx(best_child.data.metrics["best_val_nll"])
    assert parent.data.params["model.hidden_units"] == str(best_size)

    # The cluster outlives the sweep: every CPU and placement group its trials took is free again.
    command, env = train_command(workspace, cluster, "nade")
    probe = ("from pipelines.ray_session import ray_session\nimport time, ray\nwith ray_session():\n"
             "    for _ in range(120):\n"
             "        groups = [g for g in ray.util.placement_group_table().values() if g['state'] != 'REMOVED']\n"
             "        free = ray.available_resources().get('CPU', 0) == ray.cluster_resources()['CPU']\n"
             "        if free and not groups: break\n"
             "        time.sleep(0.5)\n"
             "    print(groups)\n"
             "    print(ray.available_resources().get('CPU', 0), ray.cluster_resources()['CPU'], len(groups))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=workspace, env=env, capture_output=True, text=True,
                            timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-3:] == ["2.0", "2.0", "0"], result.stdout[-2000:]
