"""Where each dataset comes from, and how it becomes arrays.

A source is read from a local folder when `data.path` is given, otherwise
downloaded from its official mirrors into a cache folder; either way every
file is checked (checksum where one is published, format always).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import tempfile
import urllib.request
from collections.abc import Callable
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
    attributes: dict[str, np.ndarray | None] | None = None   # float32 (N, A) in {0, 1} per split
    attribute_names: list[str] = field(default_factory=list)


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


def _digest(data: bytes, algorithm: str) -> str:
    return hashlib.new(algorithm, data).hexdigest()


def _check_content(path: Path, spec: SourceFile) -> None:
    if spec.content_sha256 and _digest(read_bytes(path), "sha256") != spec.content_sha256:
        raise DataFormatError(
            f"{path}: checksum mismatch: the content is not the published {spec.name} "
            "(corrupt, truncated or a different file)"
        )


def check_md5(data: bytes, expected: str | None, where: str | Path, what: str) -> None:
    """Refuse content whose md5 is not the published one: what is read (and, for pickles, unpickled)
    is exactly the published file, whether downloaded, cached or the user's own copy."""
    found = _digest(data, "md5")
    if expected and found != expected:
        raise DataFormatError(f"{where}: md5 {found} is not the published {expected} of {what} "
                              "(corrupt, truncated or a different file); not read")


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
        check_md5(target.read_bytes(), spec.md5, target, f"{spec.name} (delete it to download it again)")
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


def split_by_fractions(images: np.ndarray, labels: np.ndarray | None, options: "SourceOptions") -> Splits:
    """Seeded train/valid/test split for a source without customary splits (fractions of the whole)."""
    rng = np.random.default_rng(options.seed)
    order = rng.permutation(len(images))
    n_test = int(round(options.test_fraction * len(images)))
    n_valid = int(round(options.valid_fraction * len(images)))
    if len(images) - n_test - n_valid < 1 or min(n_test, n_valid) < 1:
        raise DataSourceError(f"{len(images)} images are too few for valid_fraction {options.valid_fraction} "
                              f"and test_fraction {options.test_fraction} (each split needs one)")
    rest, test = order[:-n_test], order[-n_test:]
    rest = rest[rng.permutation(len(rest))]
    train, valid = rest[:-n_valid], rest[-n_valid:]
    parts = {"train": train, "valid": valid, "test": test}
    return Splits({k: images[v] for k, v in parts.items()},
                  {k: None if labels is None else labels[v] for k, v in parts.items()}, levels=0)


@dataclass(frozen=True)
class SourceOptions:
    """What a loader may use from params.yaml `data` (or a `data.domains` entry)."""

    path: str | None = None
    mirrors: list[str] | None = None
    cache_dir: Path = Path("data/raw")
    valid_fraction: float = 0.1      # sources without customary splits (digits, image_folder, photo_patches)
    test_fraction: float = 0.15
    seed: int = 0
    image_size: int | None = None    # image_folder (required), photo_patches (default 32)
    count: int | None = None         # photo_patches: how many patches


# Source name -> loader; a new source is one decorated function (see components/data/image_sources.py).
REGISTRY: dict[str, Callable[[SourceOptions], Splits]] = {}


def register_source(name: str):
    def add(loader: Callable[[SourceOptions], Splits]):
        if name in REGISTRY:
            raise ValueError(f"data source {name!r} is registered twice")
        REGISTRY[name] = loader
        return loader
    return add


def available_sources() -> list[str]:
    return sorted(REGISTRY)


def load_source(source: str, path: str | None = None, mirrors: list[str] | None = None,
                cache_dir: Path = Path("data/raw"), valid_fraction: float = 0.1,
                test_fraction: float = 0.15, seed: int = 0, image_size: int | None = None,
                count: int | None = None) -> Splits:
    """Load one source into train/valid/test splits of images in [0, 1]."""
    if source not in REGISTRY:
        raise DataSourceError(f"unknown data source {source!r}; valid sources: {', '.join(available_sources())}")
    return REGISTRY[source](SourceOptions(path, mirrors, Path(cache_dir), valid_fraction, test_fraction,
                                          seed, image_size, count))


@register_source("digits")
def digits(options: SourceOptions) -> Splits:
    from sklearn.datasets import load_digits

    data = load_digits()
    images = (data.images / 16.0).astype(np.float32)[:, None]
    splits = split_by_fractions(images, data.target.astype(np.int64), options)
    return dataclasses.replace(splits, levels=17, class_names=[str(d) for d in range(10)])


def _idx_source(source: str, files: dict[str, SourceFile], class_names: list[str], options: SourceOptions) -> Splits:
    paths = locate(source, files, options.path, options.mirrors, options.cache_dir)
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
    return Splits(
        {"train": train_images[:-n_valid], "valid": train_images[-n_valid:], "test": test_images},
        {"train": arrays["train_labels"][:-n_valid].astype(np.int64),
         "valid": arrays["train_labels"][-n_valid:].astype(np.int64),
         "test": arrays["test_labels"].astype(np.int64)},
        levels=256, class_names=class_names,
    )


@register_source("mnist")
def mnist(options: SourceOptions) -> Splits:
    return _idx_source("mnist", MNIST_FILES, [str(d) for d in range(10)], options)


@register_source("fashion_mnist")
def fashion_mnist(options: SourceOptions) -> Splits:
    return _idx_source("fashion_mnist", FASHION_MNIST_FILES, FASHION_CLASSES, options)


@register_source("binarized_mnist")
def binarized_mnist(options: SourceOptions) -> Splits:
    paths = locate("binarized_mnist", BINARIZED_MNIST_FILES, options.path, options.mirrors, options.cache_dir)
    images = {key: read_amat(p).astype(np.float32).reshape(-1, 1, 28, 28) for key, p in paths.items()}
    return Splits(images, {key: None for key in images}, levels=2)


# The sources of colour and folder images register themselves on import; imported last because
# they use the registry and download machinery above.
from components.data import image_sources  # noqa: E402,F401
