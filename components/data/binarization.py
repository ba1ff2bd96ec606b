"""Binarization: how a model of binary pixels sees intensities. The one place that draws.

`static`: pixel > threshold. `dynamic`: a Bernoulli draw with the intensity as
probability. Every random draw is a pure function of a key (seed, epoch, ...),
the image's row in its split and the pixel's position: a counter-based hash,
not a stateful generator. So an image gets the same draw whichever worker reads
it, in whatever batch or order, and a whole-split read (evaluation) and a
streamed read (training) of the same key agree; a new epoch is a new key.
"""

from __future__ import annotations

import hashlib

import numpy as np

BINARIZATIONS = ("none", "static", "dynamic")
PIXEL_FORMATS = ("binary", "grayscale")
_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


def _key_hash(key) -> np.uint64:
    text = repr(tuple(int(k) if isinstance(k, (int, np.integer)) else str(k) for k in key))
    return np.uint64(int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little"))


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """A bijective 64-bit mix (Steele et al., SplitMix64): consecutive counters give independent bits."""
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def uniforms(shape, key, rows: np.ndarray) -> np.ndarray:
    """Uniform [0, 1) floats of `shape` (rows first) determined by (key, row, position in the row)."""
    rows = np.asarray(rows, dtype=np.uint64).reshape(-1, 1)
    per_row = int(np.prod(shape[1:], dtype=np.int64))
    positions = np.arange(per_row, dtype=np.uint64).reshape(1, -1)
    with np.errstate(over="ignore"):
        counters = (rows * np.uint64(per_row) + positions) ^ _key_hash(key)
    bits = _splitmix64(_splitmix64(counters))
    return ((bits >> np.uint64(40)).astype(np.float32) * np.float32(2.0 ** -24)).reshape(shape)


def bernoulli_draw(probabilities, key, rows=None):
    """{0, 1} float32 images drawn with `probabilities` (N, ...) in [0, 1]; a numpy array or torch tensor.

    `rows`: each image's row in its split (default 0..N-1); the draw of an
    image depends only on (key, its row), never on the batch it came in."""
    rows = np.arange(len(probabilities)) if rows is None else np.asarray(rows)
    if not isinstance(probabilities, np.ndarray):  # a torch tensor: draw on the CPU, return on its device
        import torch

        u = torch.from_numpy(uniforms(tuple(probabilities.shape), key, rows)).to(probabilities.device)
        return (u < probabilities).to(probabilities.dtype)
    return (uniforms(probabilities.shape, key, rows) < probabilities).astype(np.float32)


def binarize(images, mode: str, threshold: float = 0.5, key=(0,), rows=None):
    """Images in [0, 1] as a binary model sees them under binarization `mode`."""
    if mode == "static":
        return (images > threshold).astype(np.float32) if isinstance(images, np.ndarray) \
            else (images > threshold).to(images.dtype)
    if mode == "dynamic":
        return bernoulli_draw(images, key, rows)
    if mode == "none":
        return images
    raise ValueError(f"unknown binarization {mode!r}; valid: {', '.join(BINARIZATIONS)}")


def draw_key(seed: int, split: str, epoch: int = 0, draw: int = 0) -> tuple:
    """The key of one dynamic draw: a training epoch (`epoch` >= 1) or an evaluation split's fixed draw (0)."""
    return ("binarize", int(seed), split, int(epoch), int(draw))
