"""The source registry: where each dataset comes from, and how it becomes arrays.

A loader returns `Splits`: "train", "valid" and "test" -> a `Split` (components/data/batch.py)
of images as float32 in [0, 1], shape (N, C, H, W), with labels int64 or None; every split's
meta holds the source's `levels` (distinct intensity levels of the raw pixels) and
`class_names`, the first keys of the prepared data's metadata.

A source is read from a local folder when `data.path` is given, otherwise
downloaded from its official mirrors into a cache folder; either way every
file is checked (checksum where one is published, format always).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from components.data.batch import Split
from components.data.formats import DataFormatError, read_bytes


class DataSourceError(RuntimeError):
    """A dataset could be neither read locally nor downloaded."""


@dataclass(frozen=True)
class SourceFile:
    name: str                         # file name as served by the mirrors
    md5: str | None = None            # of the served file (the published checksum)
    content_sha256: str | None = None  # of the decompressed content: also checks local copies


Splits = dict[str, Split]   # "train" | "valid" | "test" -> the split; meta: levels, class_names


MIRRORS = {
    "mnist": ["https://ossci-datasets.s3.amazonaws.com/mnist/",
              "https://storage.googleapis.com/cvdf-datasets/mnist/"],
    "fashion_mnist": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                      "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"],
    "binarized_mnist": ["http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"],
}
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


def split_by_fractions(images: np.ndarray, labels: np.ndarray | None, options: "SourceOptions", meta: dict) -> Splits:
    """Seeded train/valid/test split for a source without customary splits (fractions of the whole);
    `meta` (levels, class_names) goes to every split."""
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
    return {k: Split(images[v], None if labels is None else labels[v], meta) for k, v in parts.items()}


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


# Source name -> loader; a new source is one decorated function (components/data/sources/*.py).
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
