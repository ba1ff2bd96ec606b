"""The Ray wiring of a train stage: without a cluster it starts a local Ray of its own and stops it at
the end; the CPUs of its workers follow `cpus_per_worker`."""

import os
import subprocess
import sys
from pathlib import Path

import ray

from pipelines.ray_session import STAGES_AT_ONCE, ray_session, worker_cpus


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


def test_a_stage_without_a_cluster_starts_its_own_ray_and_leaves_none_running(tmp_path):
    stage = ("import ray\nfrom pipelines.ray_session import ray_session\n"
             "with ray_session(None):\n"
             "    print(ray.get_runtime_context().gcs_address, flush=True)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])

    def run_stage() -> str:
        done = subprocess.run([sys.executable, "-c", stage], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout.split()[-1]

    first = run_stage()
    port = first.rpartition(":")[2]
    left = [pid for pid, command in command_lines() if f"--gcs-address={first}" in command
            or ("gcs_server" in command and f"--gcs_server_port={port}" in command)]
    assert not left, f"processes of the stage's Ray are still running: {left}"
    assert run_stage() != first    # the next stage starts a fresh one
