"""Where each dataset comes from, and how it becomes arrays.

A source is read from a local folder when `data.path` is given, otherwise
downloaded from its official mirrors into a cache folder; either way every
file is checked (checksum where one is published, format always).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from components.data.formats import DataFormatError, read_amat, read_bytes, read_idx


class DataSourceError(RuntimeError):
    """A dataset could be neither read locally nor downloaded."""


@dataclass(frozen=True)
class SourceFile:
    name: str                         # file name as served by the mirrors
    md5: str | None = None            # of the served file (the published checksum)
    content_sha256: str | None = None  # of the decompressed content: also checks local copies


@dataclass(frozen=True)
class Splits:
    """Images as float32 in [0, 1] with shape (N, C, H, W); labels int64 or None."""

    images: dict[str, np.ndarray]
    labels: dict[str, np.ndarray | None]
    levels: int                       # distinct intensity levels of the raw pixels
    class_names: list[str] = field(default_factory=list)


MNIST_FILES = {
    "train_images": SourceFile("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                               "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
    "train_labels": SourceFile("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432",
                               "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
    "test_images": SourceFile("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3",
                              "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
    "test_labels": SourceFile("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c",
                              "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
}
FASHION_MNIST_FILES = {
    "train_images": SourceFile("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
    "train_labels": SourceFile("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
    "test_images": SourceFile("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
    "test_labels": SourceFile("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
}
BINARIZED_MNIST_FILES = {
    "train": SourceFile("binarized_mnist_train.amat", None,
                        "ad693b29f94c14277b095f5238ddefbbdaaae0939789dd2f4f0205278cee3e4d"),
    "valid": SourceFile("binarized_mnist_valid.amat", None,
                        "1de3d397c40fe8eeb33dafd4099a1f665ec01e96d9be234aaeeac8a34930e2e2"),
    "test": SourceFile("binarized_mnist_test.amat", None,
                       "e6687bfea3f820c174f33b7865140b2a2dd2930ef786f35d45795fc193b5ab2c"),
}
MIRRORS = {
    "mnist": ["https://ossci-datasets.s3.amazonaws.com/mnist/",
              "https://storage.googleapis.com/cvdf-datasets/mnist/"],
    "fashion_mnist": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                      "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"],
    "binarized_mnist": ["http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"],
}
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
SOURCES = ("digits", "mnist", "fashion_mnist", "binarized_mnist")


def _digest(data: bytes, algorithm: str) -> str:
    return hashlib.new(algorithm, data).hexdigest()


def _check_content(path: Path, spec: SourceFile) -> None:
    if spec.content_sha256 and _digest(read_bytes(path), "sha256") != spec.content_sha256:
        raise DataFormatError(
            f"{path}: checksum mismatch: the content is not the published {spec.name} "
            "(corrupt, truncated or a different file)"
        )


def _find_local(folder: Path, spec: SourceFile) -> Path:
    """The file in `folder` under its served name, with or without `.gz`."""
    stem = spec.name.removesuffix(".gz")
    for candidate in (folder / spec.name, folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise DataSourceError(
        f"{folder}: no {stem} or {stem}.gz in this folder "
        f"(it holds: {', '.join(sorted(p.name for p in folder.iterdir())) or 'nothing'})"
    )


def download(spec: SourceFile, mirrors: list[str], cache_dir: Path) -> Path:
    """Download `spec` from the first mirror that serves it with the right checksum."""
    target = cache_dir / spec.name
    if target.is_file():
        _check_content(target, spec)
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    failures = []
    for mirror in mirrors:
        url = mirror + spec.name
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                data = response.read()
        except OSError as error:
            failures.append(f"{url}: {error}")
            continue
        if spec.md5 and _digest(data, "md5") != spec.md5:
            failures.append(f"{url}: md5 {_digest(data, 'md5')} is not the published {spec.md5}")
            continue
        # Write beside the target and rename, so an interrupted download leaves nothing behind.
        with tempfile.NamedTemporaryFile(dir=cache_dir, delete=False) as handle:
            handle.write(data)
        os.replace(handle.name, target)
        try:
            _check_content(target, spec)
        except DataFormatError as error:
            target.unlink()
            failures.append(f"{url}: {error}")
            continue
        return target
    raise DataSourceError(
        f"could not download {spec.name}:\n  " + "\n  ".join(failures)
        + "\nSet data.path in params.yaml to a folder that holds the file (plain or .gz)."
    )


def locate(source: str, files: dict[str, SourceFile], path: str | None,
           mirrors: list[str] | None, cache_dir: Path) -> dict[str, Path]:
    """Paths of every file of a source: from the local folder, else downloaded."""
    if path:
        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise DataSourceError(f"data.path {folder} is not a folder (source {source})")
        found = {key: _find_local(folder, spec) for key, spec in files.items()}
        for key, spec in files.items():
            _check_content(found[key], spec)
        return found
    mirrors = mirrors or MIRRORS[source]
    return {key: download(spec, mirrors, cache_dir / source) for key, spec in files.items()}


def _split_off(images: np.ndarray, labels: np.ndarray | None, count: int, rng: np.random.Generator):
    order = rng.permutation(len(images))
    head, tail = order[:-count], order[-count:]
    pick = (lambda idx: None) if labels is None else (lambda idx: labels[idx])
    return (images[head], pick(head)), (images[tail], pick(tail))


def load_source(source: str, path: str | None = None, mirrors: list[str] | None = None,
                cache_dir: Path = Path("data/raw"), valid_fraction: float = 0.1,
                test_fraction: float = 0.15, seed: int = 0) -> Splits:
    """Load one source into train/valid/test splits of images in [0, 1]."""
    rng = np.random.default_rng(seed)
    if source == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = (digits.images / 16.0).astype(np.float32)[:, None]
        labels = digits.target.astype(np.int64)
        (rest, test) = _split_off(images, labels, int(round(test_fraction * len(images))), rng)
        (train, valid) = _split_off(*rest, int(round(valid_fraction * len(images))), rng)
        return Splits({"train": train[0], "valid": valid[0], "test": test[0]},
                      {"train": train[1], "valid": valid[1], "test": test[1]},
                      levels=17, class_names=[str(d) for d in range(10)])
    if source in ("mnist", "fashion_mnist"):
        files = MNIST_FILES if source == "mnist" else FASHION_MNIST_FILES
        paths = locate(source, files, path, mirrors, cache_dir)
        arrays = {key: read_idx(p) for key, p in paths.items()}
        for split in ("train", "test"):
            if len(arrays[f"{split}_images"]) != len(arrays[f"{split}_labels"]):
                raise DataFormatError(
                    f"{paths[f'{split}_labels']}: {len(arrays[f'{split}_labels'])} labels for "
                    f"{len(arrays[f'{split}_images'])} images in {paths[f'{split}_images']}"
                )
        train_images = (arrays["train_images"] / 255.0).astype(np.float32)[:, None]
        test_images = (arrays["test_images"] / 255.0).astype(np.float32)[:, None]
        # The customary split: the last 10,000 training images validate.
        n_valid = min(10_000, len(train_images) // 6)
        names = [str(d) for d in range(10)] if source == "mnist" else FASHION_CLASSES
        return Splits(
            {"train": train_images[:-n_valid], "valid": train_images[-n_valid:], "test": test_images},
            {"train": arrays["train_labels"][:-n_valid].astype(np.int64),
             "valid": arrays["train_labels"][-n_valid:].astype(np.int64),
             "test": arrays["test_labels"].astype(np.int64)},
            levels=256, class_names=names,
        )
    if source == "binarized_mnist":
        paths = locate(source, BINARIZED_MNIST_FILES, path, mirrors, cache_dir)
        images = {key: read_amat(p).astype(np.float32).reshape(-1, 1, 28, 28) for key, p in paths.items()}
        return Splits(images, {key: None for key in images}, levels=2)
    raise DataSourceError(f"unknown data source {source!r}; valid sources: {', '.join(SOURCES)}")

