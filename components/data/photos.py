"""Square crops of the two photographs scikit-learn bundles (china.jpg, flower.jpg).

The one cropping routine behind the `photo_patches` source (RGB data with the
photo as its class) and the `natural_image_patches` OOD set: no download.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

PHOTO_NAMES = ("china", "flower")   # the order of sklearn.datasets.load_sample_images
MIN_SIDE, MAX_SIDE = 32, 160        # crop side in the 427x640 photos, before resizing


def photos(channels: int) -> list[Image.Image]:
    from sklearn.datasets import load_sample_images

    if channels not in (1, 3):
        raise ValueError(f"photo patches come in 1 or 3 channels, not {channels}")
    images = [Image.fromarray(photo) for photo in load_sample_images().images]
    return [photo.convert("L") for photo in images] if channels == 1 else images


def crop_patches(count: int, image_shape, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(`count` patches float32 (N, C, H, W) in 256 levels of [0, 1], which photo each came from).

    A patch is a random square crop of a random photo, area-averaged (box
    filter) down to H x W; the draws come from `rng` in a fixed order."""
    channels, height, width = image_shape
    sources = photos(channels)
    patches = np.empty((count, channels, height, width), dtype=np.float32)
    which = np.empty(count, dtype=np.int64)
    for i in range(count):
        which[i] = rng.integers(len(sources))
        photo = sources[which[i]]
        side = int(rng.integers(MIN_SIDE, MAX_SIDE + 1))
        left, top = int(rng.integers(photo.width - side + 1)), int(rng.integers(photo.height - side + 1))
        patch = photo.crop((left, top, left + side, top + side)).resize((width, height), Image.BOX)
        pixels = np.asarray(patch, dtype=np.float32) / 255.0
        patches[i] = pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)
    return patches, which
