"""Out-of-distribution images for the anomaly-detection measurement.

`natural_image_patches`: square crops of the two photographs scikit-learn
bundles (components/data/photos.py), made gray for one-channel data and
quantized to the data's intensity levels: a different dataset that needs no
download. Any other source name (e.g. `fashion_mnist` beside `mnist`) gives
that source's test split, which must have the same image shape.
"""

from __future__ import annotations

import numpy as np

from components.data.photos import crop_patches
from components.data.prepared import quantize
from components.data.sources import load_source

NATURAL_IMAGE_PATCHES = "natural_image_patches"


def natural_image_patches(count: int, image_shape, levels: int, seed: int = 0) -> np.ndarray:
    patches, _ = crop_patches(count, image_shape, np.random.default_rng(seed))
    return quantize(patches, levels)


def out_of_distribution_images(name: str, count: int, image_shape, levels: int, seed: int = 0,
                               path: str | None = None, cache_dir=None) -> np.ndarray:
    """`count` OOD images of `image_shape` with the data's `levels`, from the named set."""
    if name == NATURAL_IMAGE_PATCHES:
        return natural_image_patches(count, image_shape, levels, seed)
    other = load_source(name, path=path, **({"cache_dir": cache_dir} if cache_dir else {}))
    images = other["test"].images
    if tuple(images.shape[1:]) != tuple(image_shape):
        raise ValueError(f"OOD set {name!r} has images of shape {tuple(images.shape[1:])}, the data "
                         f"{tuple(image_shape)}; choose {NATURAL_IMAGE_PATCHES!r} or a source of the same shape")
    chosen = np.random.default_rng(seed).permutation(len(images))[:count]
    return quantize(images[chosen], levels)
