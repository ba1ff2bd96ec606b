"""The prepared dataset: one Parquet file per split, written and read with pyarrow.

Schema: `image` (fixed-size list of float32, row-major C*H*W) and, where the
source has them, `label` (int64). The schema metadata carries the image shape,
the number of intensity levels, the binarization settings and the class names,
so a reader needs nothing else.

The files keep the source's intensities. Each model reads the pixel format it
models (`read_split(..., pixels=...)`): `grayscale` is the stored intensities,
`binary` applies the binarization of params.yaml at read time, so binary and
grayscale models train side by side from one prepared dataset.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from components.data.batch import DataSpec, DomainSpec
from components.data.formats import DataFormatError

SPLITS = ("train", "valid", "test")
ANOMALY_SPLITS = ("holdout", "ood")   # scored against the test split (see pipelines/prepare.py)
BINARIZATIONS = ("none", "static", "dynamic")
PIXEL_FORMATS = ("binary", "grayscale")


@dataclass
class Split:
    images: np.ndarray            # float32 (N, C, H, W) in [0, 1]
    labels: np.ndarray | None     # int64 (N,) or None
    meta: dict

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.meta["image_shape"])

    @property
    def spec(self) -> DataSpec:
        """What a model built for this split (in its pixel format) is told about the data."""
        meta = self.meta
        return DataSpec(source=meta["source"], domains=(DomainSpec(meta["source"], self.image_shape, meta["levels"]),),
                        class_names=tuple(meta.get("class_names") or ()),
                        fields=("labels",) if self.labels is not None else (),
                        pixels=meta.get("pixels") or ("binary" if meta["levels"] == 2 else "grayscale"))


def binarize(images: np.ndarray, mode: str, threshold: float, rng: np.random.Generator) -> np.ndarray:
    """`static`: pixel > threshold; `dynamic`: one Bernoulli draw with the pixel as probability."""
    if mode == "static":
        return (images > threshold).astype(np.float32)
    if mode == "dynamic":
        return (rng.random(images.shape, dtype=np.float32) < images).astype(np.float32)
    if mode == "none":
        return images
    raise ValueError(f"unknown binarization {mode!r}; valid: {', '.join(BINARIZATIONS)}")


def write_split(path: Path, images: np.ndarray, labels: np.ndarray | None, meta: dict) -> None:
    flat = np.ascontiguousarray(images.reshape(len(images), -1), dtype=np.float32)
    columns = {"image": pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel()), flat.shape[1])}
    if labels is not None:
        columns["label"] = pa.array(labels.astype(np.int64))
    table = pa.table(columns).replace_schema_metadata({"genzoo": json.dumps(meta)})
    pq.write_table(table, path)


def read_split(folder: Path, split: str, pixels: str | None = None) -> Split:
    """One split as stored, or in the pixel format `pixels` ("binary" | "grayscale") a model needs."""
    path = Path(folder) / f"{split}.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run the prepare stage first (dvc repro prepare)")
    try:
        table = pq.read_table(path)
        meta = json.loads(table.schema.metadata[b"genzoo"])
    except (pa.ArrowInvalid, OSError, KeyError, TypeError) as error:
        raise DataFormatError(f"{path}: not a genzoo prepared split ({error})") from error
    width = table.schema.field("image").type.list_size
    images = table.column("image").combine_chunks().flatten().to_numpy(zero_copy_only=False).copy()
    images = images.reshape(-1, width).reshape(-1, *meta["image_shape"]).astype(np.float32, copy=False)
    labels = table.column("label").to_numpy().copy() if "label" in table.column_names else None
    stored = Split(images, labels, meta)
    return stored if pixels is None else in_pixel_format(stored, pixels)


def in_pixel_format(split: Split, pixels: str) -> Split:
    """The split as a model of `pixels` sees it.

    Binary: pixel > threshold (static), or a Bernoulli draw with the intensity
    as probability (dynamic: the trainer redraws the training split every
    epoch; evaluation splits are drawn once, with a seed of their own). With
    `binarize: none` in params, binary models still get the static threshold.
    """
    meta = split.meta
    if pixels == "grayscale":
        return Split(split.images, split.labels, {**meta, "pixels": pixels, "stochastic_binarization": False})
    if pixels != "binary":
        raise ValueError(f"unknown pixel format {pixels!r}; valid: {', '.join(PIXEL_FORMATS)}")
    mode = "static" if meta["binarization"] == "none" else meta["binarization"]
    binary_meta = {**meta, "pixels": pixels, "levels": 2, "stochastic_binarization": False}
    if meta["levels"] == 2:
        return Split(split.images, split.labels, binary_meta)
    if mode == "dynamic" and meta["split"] == "train":
        return Split(split.images, split.labels, {**binary_meta, "stochastic_binarization": True})
    rng = np.random.default_rng([meta.get("seed", 0), (SPLITS + ANOMALY_SPLITS).index(meta["split"])])
    return Split(binarize(split.images, mode, meta.get("threshold", 0.5), rng), split.labels, binary_meta)


def data_card(splits: dict[str, tuple[np.ndarray, np.ndarray | None]], meta: dict) -> dict:
    """Counts, pixel mean and class balance of each split: what a person checks first."""
    card = {"source": meta["source"], "image_shape": meta["image_shape"], "binarization": meta["binarization"],
            "threshold": meta["threshold"], "levels": meta["levels"], "ood": meta.get("ood"),
            "holdout_class": meta.get("holdout_class"), "splits": {}}
    for name, (images, labels) in splits.items():
        entry = {"count": int(len(images)), "pixel_mean": round(float(images.mean()), 6)}
        if meta["levels"] > 2:
            entry["binary_pixel_mean"] = round(float((images > meta["threshold"]).mean()), 6)
        if labels is not None:
            counts = np.bincount(labels, minlength=len(meta.get("class_names") or [])).tolist()
            entry["class_counts"] = counts
            entry["class_fraction"] = [round(c / max(1, len(labels)), 4) for c in counts]
        card["splits"][name] = entry
    return card
