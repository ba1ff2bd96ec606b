"""Out-of-distribution images for the anomaly-detection measurement.

`natural_image_patches`: square crops (32 to 160 pixels a side) of the two
photographs scikit-learn bundles (`sklearn.datasets.load_sample_images`:
china.jpg, flower.jpg), area-averaged down to the data's image shape, made
gray for one-channel data and quantized to the data's intensity levels: a
different dataset that needs no download. Any other source name (e.g.
`fashion_mnist` beside `mnist`) gives that source's test split, which must
have the same image shape.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from components.data.sources import load_source

NATURAL_IMAGE_PATCHES = "natural_image_patches"


def quantize(images: np.ndarray, levels: int) -> np.ndarray:
    return (np.round(images * (levels - 1)) / (levels - 1)).astype(np.float32)


def natural_image_patches(count: int, image_shape, levels: int, seed: int = 0) -> np.ndarray:
    from sklearn.datasets import load_sample_images

    channels, height, width = image_shape
    if channels not in (1, 3):
        raise ValueError(f"natural image patches come in 1 or 3 channels, not {channels}")
    photos = [Image.fromarray(photo) for photo in load_sample_images().images]
    if channels == 1:
        photos = [photo.convert("L") for photo in photos]
    rng = np.random.default_rng(seed)
    patches = np.empty((count, channels, height, width), dtype=np.float32)
    for i in range(count):
        photo = photos[rng.integers(len(photos))]
        side = int(rng.integers(32, 161))
        left, top = int(rng.integers(photo.width - side + 1)), int(rng.integers(photo.height - side + 1))
        patch = photo.crop((left, top, left + side, top + side)).resize((width, height), Image.BOX)
        pixels = np.asarray(patch, dtype=np.float32) / 255.0
        patches[i] = pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)
    return quantize(patches, levels)


def out_of_distribution_images(name: str, count: int, image_shape, levels: int, seed: int = 0,
                               path: str | None = None, cache_dir=None) -> np.ndarray:
    """`count` OOD images of `image_shape` with the data's `levels`, from the named set."""
    if name == NATURAL_IMAGE_PATCHES:
        return natural_image_patches(count, image_shape, levels, seed)
    other = load_source(name, path=path, **({"cache_dir": cache_dir} if cache_dir else {}))
    images = other.images["test"]
    if tuple(images.shape[1:]) != tuple(image_shape):
        raise ValueError(f"OOD set {name!r} has images of shape {tuple(images.shape[1:])}, the data "
                         f"{tuple(image_shape)}; choose {NATURAL_IMAGE_PATCHES!r} or a source of the same shape")
    chosen = np.random.default_rng(seed).permutation(len(images))[:count]
    return quantize(images[chosen], levels)
