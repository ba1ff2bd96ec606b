"""Sources of colour and folder images: `image_folder`, `cifar10`, `photo_patches`.

Each registers itself in the source registry (components/data/sources/registry.py).
"""

from __future__ import annotations

import io
import pickle
import tarfile
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from components.data.batch import Split
from components.data.formats import DataFormatError
from components.data.photos import PHOTO_NAMES, crop_patches
from components.data.sources.registry import (DataSourceError, SourceFile, SourceOptions, Splits, check_md5, download,
                                     register_source, split_by_fractions)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
GRAYSCALE_MODES = ("L", "1")
CIFAR10 = SourceFile("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a")
CIFAR10_MIRRORS = ["https://www.cs.toronto.edu/~kriz/"]
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_MEMBERS = {   # the published md5 of each file in CIFAR10_FOLDER
    "data_batch_1": "c99cafc152244af753f735de768cd75f", "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751", "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb", "test_batch": "40351d587109b95175f43aff81a1287e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}
CIFAR10_VALID = 5000   # the last 5,000 training images validate


def _image_size(options: SourceOptions, source: str, default: int | None = None) -> int:
    size = options.image_size if options.image_size is not None else default
    if size is None:
        raise DataSourceError(f"data.image_size: source {source!r} needs the side (pixels) its images are "
                              "resized to, e.g. image_size: 32")
    return size


def _read_image(path: Path, size: int) -> Image.Image:
    """A PNG or JPEG file as a size x size "L" (grayscale sources) or "RGB" image, resized as soon as
    it is decoded: memory follows the output size, not the file's (a JPEG decodes at a reduced scale).
    A file over PIL's decompression-bomb limit is refused before it is decoded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=["PNG", "JPEG"]) as image:
                image.draft(None, (size, size))
                mode = "L" if image.mode in GRAYSCALE_MODES else "RGB"
                kept = image if image.mode == mode else image.convert(mode)
                if kept.size != (size, size):
                    return kept.resize((size, size), Image.LANCZOS, reducing_gap=None)
                return kept.copy()   # closing the file's image frees its pixels
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise DataFormatError(f"{path}: refused as a possible decompression bomb ({error})") from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DataFormatError(f"{path}: not a readable PNG or JPEG image ({error})") from error


@register_source("image_folder")
def image_folder(options: SourceOptions) -> Splits:
    """`data.path`: one subfolder per class of PNG/JPEG images, resized to `image_size` squares.

    Grayscale when every image is one-channel, otherwise RGB; 256 levels; the
    splits are seeded fractions of the whole (valid_fraction, test_fraction)."""
    size = _image_size(options, "image_folder")
    if not options.path:
        raise DataSourceError("data.path: source 'image_folder' needs the folder of class subfolders")
    root = Path(options.path).expanduser()
    if not root.is_dir():
        raise DataSourceError(f"data.path {root} is not a folder (source image_folder)")
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataSourceError(f"{root}: no class subfolders (image_folder wants one subfolder of images per class)")
    files, labels = [], []
    for index, folder in enumerate(classes):
        found = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise DataSourceError(f"{folder}: empty class folder (no {'/'.join(IMAGE_SUFFIXES)} images)")
        files += found
        labels += [index] * len(found)
    resized = [_read_image(path, size) for path in files]
    mode = "L" if all(image.mode == "L" for image in resized) else "RGB"
    images = np.empty((len(resized), 1 if mode == "L" else 3, size, size), dtype=np.float32)
    for i, image in enumerate(resized):
        pixels = np.asarray(image.convert(mode), dtype=np.float32) / 255.0
        images[i] = pixels[None] if mode == "L" else pixels.transpose(2, 0, 1)
    return split_by_fractions(images, np.asarray(labels, dtype=np.int64), options,
                              {"levels": 256, "class_names": [p.name for p in classes]})


class BatchUnpickler(pickle.Unpickler):
    """Unpickles what a CIFAR-10 batch holds and nothing else: numpy arrays, lists, dicts, str, bytes
    and int (the containers and scalars need no global; an array needs these three). Any other global,
    the way a pickle runs code, is refused."""

    ARRAY_GLOBALS = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                     ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module: str, name: str):
        if (module, name) in self.ARRAY_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR-10 batch (numpy arrays, "
                                     "lists, dicts, str, bytes and int only)")


def _unpickle(data: bytes, name: str) -> dict:
    try:
        batch = BatchUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as error:  # noqa: BLE001 - any unpickling failure means a corrupt file
        raise DataFormatError(f"{name}: not a CIFAR-10 python batch ({error})") from error
    if not isinstance(batch, dict):
        raise DataFormatError(f"{name}: not a CIFAR-10 python batch (a {type(batch).__name__}, not a dict)")
    return batch


def _cifar_files(options: SourceOptions) -> dict[str, tuple[bytes, str]]:
    """Name -> (content, where it came from) of the CIFAR-10 batch files, from a folder or the tarball."""
    names = list(CIFAR10_MEMBERS)
    if options.path:
        root = Path(options.path).expanduser()
        if not root.is_dir():
            raise DataSourceError(f"data.path {root} is not a folder (source cifar10)")
        for folder in (root, root / CIFAR10_FOLDER):
            if all((folder / n).is_file() for n in names):
                return {n: ((folder / n).read_bytes(), str(folder / n)) for n in names}
        archive = root / CIFAR10.name
        if not archive.is_file():
            raise DataSourceError(f"{root}: neither {CIFAR10.name} nor the extracted {CIFAR10_FOLDER}/ "
                                  f"({', '.join(names)})")
        check_md5(archive.read_bytes(), CIFAR10.md5, archive, CIFAR10.name)
    else:
        archive = download(CIFAR10, options.mirrors or CIFAR10_MIRRORS, options.cache_dir / "cifar10")
    try:
        with tarfile.open(archive, "r:gz") as tar:
            found = {}
            for n in names:
                member = tar.extractfile(f"{CIFAR10_FOLDER}/{n}")
                if member is None:
                    raise KeyError(n)
                found[n] = (member.read(), f"{archive}:{CIFAR10_FOLDER}/{n}")
            return found
    except (tarfile.TarError, KeyError, EOFError, OSError) as error:
        raise DataFormatError(f"{archive}: not a complete CIFAR-10 archive ({error})") from error


def _cifar_members(options: SourceOptions) -> dict[str, tuple[bytes, str]]:
    """The CIFAR-10 batch files, each checked against its published md5 before anything unpickles it."""
    found = _cifar_files(options)
    for name, (content, where) in found.items():
        check_md5(content, CIFAR10_MEMBERS[name], where, f"CIFAR-10's {name}")
    return found


@register_source("cifar10")
def cifar10(options: SourceOptions) -> Splits:
    members = _cifar_members(options)
    meta_where = members["batches.meta"][1]
    meta = _unpickle(*members.pop("batches.meta"))
    class_names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta.get(b"label_names", [])]
    if len(class_names) != 10:
        raise DataFormatError(f"{meta_where}: expected 10 label_names, found {len(class_names)}")
    parts = {}
    for name, (content, where) in members.items():
        batch = _unpickle(content, where)
        data, labels = np.asarray(batch.get(b"data")), np.asarray(batch.get(b"labels"), dtype=np.int64)
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise DataFormatError(f"{where}: data must be uint8 (N, 3072), found {data.dtype} {data.shape}")
        if len(labels) != len(data) or (len(labels) and not 0 <= labels.min() <= labels.max() <= 9):
            raise DataFormatError(f"{where}: {len(labels)} labels in 0..9 expected for {len(data)} images")
        parts[name] = ((data.reshape(-1, 3, 32, 32) / np.float32(255)).astype(np.float32), labels)
    train = [parts[f"data_batch_{i}"] for i in range(1, 6)]
    images, labels = np.concatenate([p[0] for p in train]), np.concatenate([p[1] for p in train])
    n_valid = min(CIFAR10_VALID, len(images) // 6)
    meta = {"levels": 256, "class_names": class_names}
    return {"train": Split(images[:-n_valid], labels[:-n_valid], meta),
            "valid": Split(images[-n_valid:], labels[-n_valid:], meta), "test": Split(*parts["test_batch"], meta)}


@register_source("photo_patches")
def photo_patches(options: SourceOptions) -> Splits:
    """`count` RGB crops of scikit-learn's two bundled photos; the class is the photo."""
    size = _image_size(options, "photo_patches", default=32)
    count = 2000 if options.count is None else options.count
    images, which = crop_patches(count, (3, size, size), np.random.default_rng([options.seed, 1]))
    return split_by_fractions(images, which, options, {"levels": 256, "class_names": list(PHOTO_NAMES)})

