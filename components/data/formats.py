"""Readers for the raw file formats of the benchmark datasets.

Every reader validates what it reads and raises `DataFormatError` naming the
file and what is wrong, so a corrupt or truncated download never turns into a
silently wrong dataset.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np


class DataFormatError(ValueError):
    """A data file exists but its content is not what the format promises."""


# IDX (LeCun et al.): magic = 0x00 0x00 <dtype code> <number of dimensions>.
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_bytes(path: Path) -> bytes:
    """The file's content, gunzipped when it is gzip-compressed (by magic, not by name)."""
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as error:
            raise DataFormatError(f"{path}: corrupt or truncated gzip stream ({error})") from error
    return raw


def read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file (plain or .gz) into an array of its declared shape."""
    data = read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise DataFormatError(
            f"{path}: not an IDX file (magic number {data[:4].hex() or 'missing'}, "
            "expected 0000 followed by a type code and a dimension count)"
        )
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataFormatError(f"{path}: truncated IDX header ({len(data)} bytes)")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        raise DataFormatError(
            f"{path}: truncated or oversized IDX file: header declares shape {shape} "
            f"({expected} bytes) but the file has {len(data)} bytes"
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write an array as an IDX file (gzip-compressed when the name ends in .gz)."""
    codes = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape
    )
    payload = header + array.tobytes()
    Path(path).write_bytes(gzip.compress(payload) if str(path).endswith(".gz") else payload)


def read_amat(path: Path, num_pixels: int = 784) -> np.ndarray:
    """Parse a Larochelle & Murray `.amat` file: one image per line, pixels as 0/1 text."""
    text = read_bytes(path).decode("ascii", errors="replace")
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise DataFormatError(f"{path}: empty .amat file")
    rows = []
    for number, line in enumerate(lines, start=1):
        values = line.split()
        if len(values) != num_pixels:
            raise DataFormatError(
                f"{path}: line {number} has {len(values)} values, expected {num_pixels} "
                "(truncated or not a binarized-MNIST .amat file)"
            )
        rows.append(values)
    try:
        images = np.asarray(rows, dtype=np.float32)
    except ValueError as error:
        raise DataFormatError(f"{path}: non-numeric pixel value ({error})") from error
    if not np.isin(images, (0.0, 1.0)).all():
        raise DataFormatError(f"{path}: pixel values other than 0 and 1 in a binarized .amat file")
    return images.astype(np.uint8)


def write_amat(path: Path, images: np.ndarray) -> None:
    """Write binary images (N, D) as an `.amat` text file."""
    text = "\n".join(" ".join(str(int(v)) for v in row) for row in images.reshape(len(images), -1)) + "\n"
    payload = text.encode("ascii")
    Path(path).write_bytes(gzip.compress(payload) if str(path).endswith(".gz") else payload)
