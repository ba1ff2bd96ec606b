"""The whole pipeline with a tiny config, run once a session (`tiny_pipeline` in conftest.py) for the
tests that need a real `dvc repro` (test_pipeline.py, test_browser.py), and the helpers they share:
running a command in the copy, a real MLflow server on a free port."""

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import yaml

REPO = Path(__file__).resolve().parents[1]
KEYS = ("bernoulli", "nade", "vae", "gan")


TINY_MODELS = {
    "bernoulli": {"model": "bernoulli", "training": {"epochs": 1}},
    "nade": {"model": "nade", "hidden_units": 16},
    "vae": {"model": "vae", "latent_dim": 2, "hidden_units": [16]},
    "gan": {"model": "gan", "latent_dim": 4, "hidden_units": 16, "pixels": "grayscale"},
}


def tiny_params(models: dict | None = None, examples=(200, 50, 50), batch_size: int = 50,
                ood_count: int | None = None) -> dict:
    """params.yaml with `models` (default: the four of KEYS), a few images per split, two epochs."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"]["max_examples"] = dict(zip(("train", "valid", "test"), examples))
    if ood_count is not None:
        params["data"]["ood"]["count"] = ood_count
    params["train"].update(epochs=2, batch_size=batch_size)
    params["classifier"]["epochs"] = 1
    params["evaluate"].update(num_samples=60, iwae_samples=10)
    params["models"] = models or TINY_MODELS
    return params


def checkout(destination: Path, params: dict) -> Path:
    """What git would commit of this repository (less dvc.lock: nothing has run) in `destination`, with
    `params` as its params.yaml, committed to a fresh git repository."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        if (REPO / name).is_file() and name != "dvc.lock":
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, destination / name)
    (destination / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], destination)
    run(["git", "-c", "user.email=ci@genzoo", "-c", "user.name=ci", "commit", "-qam", "init", "--allow-empty"],
        destination)
    return destination


def environment(repo: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # `python` = this one
    return env


def run(args, repo: Path, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=repo, env=environment(repo), capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


def ran_stages(output: str) -> list[str]:
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")]


class TinyPipeline(NamedTuple):
    live: Path       # where the first `dvc repro` ran (its log: first-repro.log)
    pristine: Path   # a copy taken right after it: tests copy it again (copy_repository) and change their copy


def first_repro(folder: Path) -> TinyPipeline:
    """A copy of the repository (what git would commit) in `folder/genzoo`, with a tiny config, after
    one `dvc repro`; and a pristine copy of that in `folder/pristine`."""
    copy = checkout(folder / "genzoo", tiny_params())
    first = run(["dvc", "repro"], copy)
    copy.joinpath("first-repro.log").write_text(first.stdout + first.stderr)
    return TinyPipeline(copy, copy_repository(copy, folder / "pristine"))


def copy_repository(source: Path, destination: Path) -> Path:
    """A copy of a pipeline repository whose MLflow store points into the copy: MLflow records
    absolute artifact locations (in the sqlite store and in each logged model's MLmodel file), so
    they are rewritten from `source` to `destination`; everything else (DVC, Ray) is relative."""
    shutil.copytree(source, destination, symlinks=True)
    old, new = str(source), str(destination)
    with sqlite3.connect(destination / "mlflow.db") as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for column in [row[1] for row in db.execute(f'PRAGMA table_info("{table}")')
                           if any(kind in row[2].upper() for kind in ("CHAR", "TEXT", "JSON"))]:
                db.execute(f'UPDATE "{table}" SET "{column}" = replace("{column}", ?, ?) '
                           f'WHERE instr("{column}", ?) > 0', (old, new, old))
    for described in (destination / "mlruns").rglob("MLmodel"):
        described.write_text(described.read_text().replace(old, new))
    return destination


def client(repo: Path):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def server(args: list[str], repo: Path, port: int, ready: str, timeout: float = 90, env: dict | None = None):
    """A real MLflow server process on localhost, up within `timeout` s, killed (its group) on exit."""
    env = {**environment(repo), "MLFLOW_TRACKING_URI": f"sqlite:///{repo / 'mlflow.db'}", **(env or {})}
    process = subprocess.Popen(args, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        deadline = time.time() + timeout
        while True:
            assert process.poll() is None, process.stdout.read().decode()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{ready}", timeout=5):
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                assert time.time() < deadline, f"{args} did not answer within {timeout} s"
                time.sleep(1)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")
