"""The concurrent runner (`python -m pipelines.repro --jobs N`) on a tiny pipeline in temporary
copies of the repository: real DVC, Ray and MLflow. It must leave exactly what a sequential
`dvc repro` leaves, stop a failed stage's dependants, and survive Ctrl-C."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tiny_pipeline import checkout, tiny_params as shared_tiny_params

REPO = Path(__file__).resolve().parents[1]
KEYS = ("bernoulli", "nade")
pytestmark = pytest.mark.integration


def tiny_params() -> dict:
    return shared_tiny_params({"bernoulli": {"model": "bernoulli", "training": {"epochs": 1}},
                               "nade": {"model": "nade", "hidden_units": 16}}, ood_count=50)


def environment() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI",) and not k.startswith("RAY_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def run(args, cwd: Path, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=environment(), capture_output=True, text=True, **kwargs)
    if check:
        assert result.returncode == 0, f"{args} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


def copy_repo(dest: Path) -> Path:
    return checkout(dest, tiny_params())


def lock_outputs(repo: Path) -> dict:
    """stage -> its outputs' hashes as dvc.lock records them."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    return {stage: {out["path"]: out.get("md5") for out in entry.get("outs", [])} for stage, entry in lock.items()}


def repro(repo: Path, *args, **kwargs) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "pipelines.repro", *args], repo, **kwargs)


def registered(repo: Path) -> dict:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    return {key: client.get_model_version_by_alias(f"genzoo-{key}", "champion").version for key in KEYS}


def test_interrupted_then_concurrent_run_equals_a_sequential_repro(tmp_path):
    parallel, sequential = copy_repo(tmp_path / "parallel"), copy_repo(tmp_path / "sequential")

    # Ctrl-C while stages run: the runner stops them, says so, and leaves nothing inconsistent.
    process = subprocess.Popen([sys.executable, "-m", "pipelines.repro", "--jobs", "2"], cwd=parallel,
                               env=environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen, deadline = [], time.time() + 300
    for line in process.stdout:
        seen.append(line)
        if line.startswith("repro: running train@") or time.time() > deadline:
            break
    time.sleep(3)
    process.send_signal(signal.SIGINT)
    rest, _ = process.communicate(timeout=180)
    output = "".join(seen) + rest
    assert process.returncode == 130, output[-4000:]
    assert "interrupted" in output

    # The next run brings everything up to date, several stages at once, on one shared Ray.
    result = repro(parallel, "--jobs", "2", timeout=1500)
    assert "one local Ray for every train stage" in result.stdout
    assert run(["dvc", "status", "--json"], parallel).stdout.strip() in ("{}", "")
    assert set(registered(parallel)) == set(KEYS)
    # and a second run finds nothing to do.
    assert "every stage is up to date" in repro(parallel).stdout

    run(["dvc", "repro"], sequential, timeout=1500)
    ours, theirs = lock_outputs(parallel), lock_outputs(sequential)
    assert set(ours) == set(theirs)
    # Deterministic outputs are byte-identical: the prepared data, and the closed-form Bernoulli model
    # (its folder's run records, timings and MLflow ids, differ by nature).
    assert ours["prepare"] == theirs["prepare"]
    for name in ("model.pt", "config.json"):
        assert (parallel / "models/bernoulli" / name).read_bytes() == (sequential / "models/bernoulli" / name).read_bytes()


def test_a_failing_stage_stops_its_dependants_and_is_named(tmp_path):
    repo = copy_repo(tmp_path / "failing")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    # Valid params (repro refuses a bad value before any stage) that train@nade cannot use: it exits with a message.
    params["models"]["nade"]["training"] = {"optimizers": {"generator": {"lr": 0.1}}}   # NADE has one, `model`
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    result = repro(repo, "--jobs", "2", check=False, timeout=1500)
    assert result.returncode == 1
    assert "repro: failed: train@nade" in result.stdout
    assert "repro: evaluate@nade skipped: train@nade failed" in result.stdout
    assert "repro: promote skipped: train@nade failed" in result.stdout
    # The independent stages finished and DVC recorded them.
    status = run(["dvc", "status", "train@bernoulli", "evaluate@bernoulli"], repo).stdout
    assert "changed" not in status


def test_ctrl_c_at_any_moment_leaves_no_stage_recorded_as_done_without_having_run(tmp_path):
    """benchmarks/repro_interrupts.py's probe pipeline: interrupted while its first stages run, and while
    later ones start; DVC shows the interrupted stages as not done, and the next run completes them."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("repro_interrupts", REPO / "benchmarks/repro_interrupts.py")
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    folder = probe.make_probe_repo(tmp_path / "probe")
    for number, delay in enumerate((0.3, 3.0), start=1):
        result = probe.run_round(folder, number, delay, after_first_stage=True)
        assert result["exit"] == 130, result
        assert result["shown_not_done"], result   # (a stage ending in the same instant is done, and whole)
        assert result["done_without_output"] == [], result
        assert result["rerun_completes"], result
