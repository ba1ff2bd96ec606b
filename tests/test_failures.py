"""Bad input and unreachable services give a clear error, quickly, and no output."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("prepared")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"]["max_examples"] = {"train": 100, "valid": 20, "test": 20}
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    subprocess.run([sys.executable, "-m", "pipelines.prepare"], cwd=folder, check=True, capture_output=True,
                   env={**os.environ, "PYTHONPATH": str(REPO)})
    return folder


def train(folder: Path, key: str, **env) -> tuple[subprocess.CompletedProcess, float]:
    environment = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "pipelines.train", key], cwd=folder, capture_output=True,
                            text=True, env={**environment, "PYTHONPATH": str(REPO), **env}, timeout=120)
    return result, time.perf_counter() - started


def test_unreachable_ray_cluster_is_refused_before_ray_retries(prepared):
    # The message comes from the stage's own 5-second socket probe, made before Ray is asked to
    # connect (Ray would retry for minutes); a wall-clock bound would measure the machine's load.
    result, _ = train(prepared, "nade", RAY_ADDRESS="127.0.0.1:1")
    assert result.returncode != 0
    assert "no Ray cluster answers at 127.0.0.1:1" in result.stderr and "Traceback" not in result.stderr
    assert not (prepared / "models" / "nade").exists()


def test_unreachable_mlflow_server_fails_before_training(prepared):
    result, _ = train(prepared, "nade", MLFLOW_TRACKING_URI="http://127.0.0.1:1")
    assert result.returncode != 0
    assert "cannot reach the MLflow tracking store http://127.0.0.1:1" in result.stderr
    assert "Traceback" not in result.stderr and "epoch 1" not in result.stdout + result.stderr
    assert not (prepared / "models" / "nade").exists()


def test_bad_model_config_fails_before_ray_starts(prepared):
    params = yaml.safe_load((prepared / "params.yaml").read_text())
    params["models"]["broken"] = {"model": "nade", "hidden_units": "many"}
    params["models"]["unknown"] = {"model": "pixelgan"}
    (prepared / "params.yaml").write_text(yaml.safe_dump(params))
    result, _ = train(prepared, "broken")
    assert result.returncode != 0 and result.stderr.startswith(
        "params.yaml: models.broken.hidden_units = 'many': must be an integer >= 1")
    result, _ = train(prepared, "unknown")
    assert result.stderr.startswith("params.yaml: models.unknown.model = 'pixelgan': must be one of aae, bernoulli")
    result, _ = train(prepared, "missing")
    assert result.stderr.startswith("params.yaml: models.missing: no such model entry; configured: ")
    assert "Traceback" not in result.stderr


def test_corrupt_prepared_split_is_named(prepared, tmp_path):
    (tmp_path / "data" / "prepared").mkdir(parents=True)
    (tmp_path / "data" / "prepared" / "valid.parquet").write_bytes(b"PAR1 not really")
    from components.data.formats import DataFormatError
    from components.data.prepared import read_split

    with pytest.raises(DataFormatError, match="valid.parquet: not a genzoo prepared split"):
        read_split(tmp_path / "data" / "prepared", "valid")
