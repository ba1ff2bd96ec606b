"""The digit sources: scikit-learn's bundled 8x8 `digits`, `mnist`, `fashion_mnist` and `binarized_mnist`."""

from __future__ import annotations

import numpy as np

from components.data.batch import Split
from components.data.formats import DataFormatError, read_amat, read_idx
from components.data.sources.registry import (SourceFile, SourceOptions, Splits, locate, register_source,
                                              split_by_fractions)

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
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


@register_source("digits")
def digits(options: SourceOptions) -> Splits:
    from sklearn.datasets import load_digits

    data = load_digits()
    images = (data.images / 16.0).astype(np.float32)[:, None]
    return split_by_fractions(images, data.target.astype(np.int64), options,
                              {"levels": 17, "class_names": [str(d) for d in range(10)]})


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
    meta = {"levels": 256, "class_names": class_names}
    return {"train": Split(train_images[:-n_valid], arrays["train_labels"][:-n_valid].astype(np.int64), meta),
            "valid": Split(train_images[-n_valid:], arrays["train_labels"][-n_valid:].astype(np.int64), meta),
            "test": Split(test_images, arrays["test_labels"].astype(np.int64), meta)}


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
    return {key: Split(split, None, {"levels": 2, "class_names": []}) for key, split in images.items()}


# The sources of colour and folder images register themselves on import; imported last because
# they use the registry and download machinery above.
