"""Loaders, downloads and the prepare stage: round trips, and clear errors on bad files."""

import gzip
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from components.data.formats import DataFormatError, read_amat, read_idx, write_amat, write_idx
from components.data.prepared import read_split
from components.data.sources import DataSourceError, SourceFile, download, locate

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["images-idx3-ubyte", "images-idx3-ubyte.gz"])
def test_idx_round_trip(tmp_path, name):
    images = np.random.default_rng(0).integers(0, 256, (5, 4, 3), dtype=np.uint8)
    write_idx(tmp_path / name, images)
    assert np.array_equal(read_idx(tmp_path / name), images)


def test_idx_truncated_file_names_the_file_and_the_problem(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    write_idx(path, np.zeros((5, 4, 3), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(DataFormatError, match=f"{path}.*truncated.*declares shape \\(5, 4, 3\\)"):
        read_idx(path)


def test_idx_wrong_magic_number(tmp_path):
    path = tmp_path / "labels-idx1-ubyte"
    path.write_bytes(b"\x12\x34\x08\x01" + bytes(8))
    with pytest.raises(DataFormatError, match=f"{path}: not an IDX file \\(magic number 12340801"):
        read_idx(path)


def test_truncated_gzip_is_reported(tmp_path):
    path = tmp_path / "x-idx1-ubyte.gz"
    compressed = gzip.compress(b"\x00\x00\x08\x01" + (1000).to_bytes(4, "big") + os.urandom(1000))
    path.write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(DataFormatError, match="corrupt or truncated gzip"):
        read_idx(path)


@pytest.mark.parametrize("name", ["binarized_mnist_test.amat", "binarized_mnist_test.amat.gz"])
def test_amat_round_trip(tmp_path, name):
    images = np.random.default_rng(0).integers(0, 2, (6, 784), dtype=np.uint8)
    write_amat(tmp_path / name, images)
    assert np.array_equal(read_amat(tmp_path / name), images)


def test_amat_truncated_line_and_bad_values(tmp_path):
    path = tmp_path / "binarized_mnist_valid.amat"
    write_amat(path, np.ones((3, 784), dtype=np.uint8))
    path.write_text(path.read_text()[:-100])
    with pytest.raises(DataFormatError, match="line 3 has 734 values, expected 784"):
        read_amat(path)
    path.write_text(" ".join(["2"] * 784) + "\n")
    with pytest.raises(DataFormatError, match="other than 0 and 1"):
        read_amat(path)


def test_download_verifies_the_checksum_and_leaves_nothing_on_failure(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    payload = b"\x00\x00\x08\x01" + (3).to_bytes(4, "big") + b"abc"
    (mirror / "f-idx1-ubyte").write_bytes(payload)
    good = SourceFile("f-idx1-ubyte", hashlib.md5(payload).hexdigest())
    path = download(good, [mirror.as_uri() + "/"], tmp_path / "cache")
    assert read_idx(path).tolist() == list(b"abc")

    bad = SourceFile("f-idx1-ubyte", "0" * 32)
    with pytest.raises(DataSourceError, match="(?s)md5 .* is not the published 0000.*data.path"):
        download(bad, [mirror.as_uri() + "/"], tmp_path / "cache2")
    assert not (tmp_path / "cache2" / "f-idx1-ubyte").exists()
    with pytest.raises(DataSourceError, match="could not download f-idx1-ubyte"):
        download(good, [(tmp_path / "nowhere").as_uri() + "/"], tmp_path / "cache3")


def test_local_folder_errors_are_clear(tmp_path):
    spec = {"test": SourceFile("binarized_mnist_test.amat")}
    with pytest.raises(DataSourceError, match="is not a folder"):
        locate("binarized_mnist", spec, str(tmp_path / "missing"), None, tmp_path)
    with pytest.raises(DataSourceError, match="no binarized_mnist_test.amat or binarized_mnist_test.amat.gz"):
        locate("binarized_mnist", spec, str(tmp_path), None, tmp_path)
    checked = {"test": SourceFile("binarized_mnist_test.amat", content_sha256="f" * 64)}
    write_amat(tmp_path / "binarized_mnist_test.amat.gz", np.ones((2, 784), dtype=np.uint8))
    with pytest.raises(DataFormatError, match="checksum mismatch"):
        locate("binarized_mnist", checked, str(tmp_path), None, tmp_path)


def run_prepare(folder: Path, data: dict) -> subprocess.CompletedProcess:
    (folder / "params.yaml").write_text(json.dumps({"data": data}))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "pipelines.prepare"], cwd=folder, env=env,
                          capture_output=True, text=True)


def test_prepare_writes_parquet_splits_with_shape_metadata_and_a_card(tmp_path):
    result = run_prepare(tmp_path, {"source": "digits", "binarize": "dynamic", "seed": 0,
                                    "max_examples": {"train": 100}})
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "data/prepared"
    train = read_split(folder, "train", "binary")
    test = read_split(folder, "test", "binary")
    assert train.images.shape == (100, 1, 8, 8) and train.image_shape == (1, 8, 8)
    assert train.meta["stochastic_binarization"] and not np.isin(train.images, (0, 1)).all()
    assert np.isin(test.images, (0, 1)).all() and test.labels is not None and test.meta["levels"] == 2
    # The dynamic draw of an evaluation split is the same at every read.
    np.testing.assert_array_equal(test.images, read_split(folder, "test", "binary").images)
    # Grayscale models read the stored intensities: digits have 17 levels.
    grayscale = read_split(folder, "test", "grayscale")
    assert grayscale.meta["levels"] == 17 and len(np.unique(grayscale.images)) > 2
    np.testing.assert_allclose(grayscale.images * 16, np.round(grayscale.images * 16), atol=1e-5)
    card = json.loads((tmp_path / "data/prepared/card.json").read_text())
    assert card["splits"]["train"]["count"] == 100 and sum(card["splits"]["train"]["class_counts"]) == 100


def test_static_binarization_thresholds_the_intensities(tmp_path):
    result = run_prepare(tmp_path, {"source": "digits", "binarize": "static", "threshold": 0.5,
                                    "max_examples": {"train": 50, "valid": 20, "test": 20}})
    assert result.returncode == 0, result.stderr
    grayscale = read_split(tmp_path / "data/prepared", "valid", "grayscale")
    binary = read_split(tmp_path / "data/prepared", "valid", "binary")
    np.testing.assert_array_equal(binary.images, (grayscale.images > 0.5).astype(np.float32))
    assert not binary.meta["stochastic_binarization"]


def test_prepare_failure_names_the_file_and_leaves_no_output(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in ("binarized_mnist_train.amat", "binarized_mnist_valid.amat", "binarized_mnist_test.amat"):
        write_amat(raw / name, np.ones((2, 784), dtype=np.uint8))
    result = run_prepare(tmp_path, {"source": "binarized_mnist", "path": str(raw), "binarize": "none"})
    assert result.returncode != 0
    assert "binarized_mnist_train.amat: checksum mismatch" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data" / "prepared").exists()
    assert not list((tmp_path / "data").glob(".prepared*"))  # no half-written build folder either
