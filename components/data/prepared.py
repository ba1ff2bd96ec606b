"""The prepared dataset: one Parquet file per split, written and read with pyarrow.

Schema: `image` (fixed-size list, row-major C*H*W): uint8 k for intensity
k/(levels-1) when the data has at most 256 levels (4x smaller than float32),
float32 otherwise; and, where the data has them, `label` (int64), `attributes`
(fixed-size list of float32 in {0, 1}), `caption` (string) and `domain` (int32).
Rows of one domain are contiguous. Files are written in row groups of
`ROW_GROUP` rows, so a reader can stream them (components/data/streaming.py).
The schema metadata carries everything else (image shape, levels, storage,
binarization, class/attribute/domain names, caption vocabulary), so a reader
needs nothing but the file.

The files keep the source's intensities. Each model reads the pixel format it
models (`read_split(..., pixels=...)`): `grayscale` is the stored intensities,
`binary` applies the binarization of params.yaml at read time
(components/data/binarization.py), so binary and grayscale models train side by
side from one prepared dataset.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from components.data.batch import DataSpec, DomainSpec, Split
from components.data.binarization import BINARIZATIONS, PIXEL_FORMATS, binarize, draw_key
from components.data.formats import DataFormatError

SPLITS = ("train", "valid", "test")
ANOMALY_SPLITS = ("holdout", "ood")   # scored against the test split (see pipelines/prepare.py)
ROW_GROUP = 2048                      # rows per Parquet row group: the unit a streaming reader loads

__all__ = ["ANOMALY_SPLITS", "BINARIZATIONS", "PIXEL_FORMATS", "ROW_GROUP", "SPLITS", "data_card",
           "decode", "draw_binary", "encode", "in_pixel_format", "quantize", "read_spec", "read_split", "spec_of",
           "split_meta", "write_split"]


def stores_uint8(levels: int) -> bool:
    return 2 <= levels <= 256


def encode(images: np.ndarray, levels: int) -> np.ndarray:
    """Flattened (N, C*H*W) storage values: uint8 level index, or float32 when levels > 256."""
    flat = images.reshape(len(images), -1)
    if not stores_uint8(levels):
        return np.ascontiguousarray(flat, dtype=np.float32)
    if flat.dtype == np.uint8:   # already level indices
        return np.ascontiguousarray(flat)
    return np.round(np.clip(flat, 0.0, 1.0) * (levels - 1)).astype(np.uint8)


def decode(values: np.ndarray, levels: int) -> np.ndarray:
    """Storage values -> float32 intensities in [0, 1]."""
    if values.dtype == np.uint8:
        return values.astype(np.float32) * np.float32(1.0 / (levels - 1))
    return values.astype(np.float32, copy=False)


def quantize(images: np.ndarray, levels: int) -> np.ndarray:
    """Intensities rounded to the nearest of `levels` evenly spaced values."""
    return (np.round(images * (levels - 1)) / (levels - 1)).astype(np.float32)


def _fixed_list(values: np.ndarray) -> pa.FixedSizeListArray:
    return pa.FixedSizeListArray.from_arrays(pa.array(values.ravel()), values.shape[1])


def write_split(path: Path, images: np.ndarray, labels: np.ndarray | None, meta: dict,
                attributes: np.ndarray | None = None, captions: list[str] | None = None,
                domains: np.ndarray | None = None, row_group: int = ROW_GROUP) -> None:
    """Write one split; `images` float in [0, 1] (N, C, H, W), or uint8 level indices."""
    n, levels = len(images), int(meta["levels"])
    domains = np.zeros(n, dtype=np.int32) if domains is None else np.asarray(domains, dtype=np.int32)
    if n and (np.diff(domains) < 0).any():
        raise ValueError("write_split: rows of one domain must be contiguous (sorted by domain)")
    count = max(len(meta.get("domains") or [None]), int(domains.max()) + 1 if n else 1)
    bounds = np.searchsorted(domains, np.arange(count + 1))
    meta = {**meta, "storage": "uint8" if stores_uint8(levels) else "float32", "rows": n,
            "domain_rows": [[int(bounds[d]), int(bounds[d + 1])] for d in range(count)]}
    schema_fields = [pa.field("image", pa.list_(pa.uint8() if stores_uint8(levels) else pa.float32(),
                                                int(np.prod(images.shape[1:]))))]
    if labels is not None:
        schema_fields.append(pa.field("label", pa.int64()))
    if attributes is not None:
        schema_fields.append(pa.field("attributes", pa.list_(pa.float32(), attributes.shape[1])))
    if captions is not None:
        schema_fields.append(pa.field("caption", pa.string()))
    schema_fields.append(pa.field("domain", pa.int32()))
    schema = pa.schema(schema_fields, metadata={"genzoo": json.dumps(meta)})
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, max(n, 1), row_group):
            rows = slice(start, start + row_group)
            columns = [_fixed_list(encode(images[rows], levels))]
            if labels is not None:
                columns.append(pa.array(np.asarray(labels[rows], dtype=np.int64)))
            if attributes is not None:
                columns.append(_fixed_list(np.asarray(attributes[rows], dtype=np.float32)))
            if captions is not None:
                columns.append(pa.array(list(captions[rows]), pa.string()))
            columns.append(pa.array(domains[rows]))
            writer.write_table(pa.Table.from_arrays(columns, schema=schema), row_group_size=row_group)


def split_path(folder: Path, split: str) -> Path:
    path = Path(folder) / f"{split}.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run the prepare stage first (dvc repro prepare)")
    return path


def split_meta(folder: Path, split: str) -> dict:
    """The metadata of a split, read from its Parquet footer only."""
    path = split_path(folder, split)
    try:
        return json.loads(pq.read_schema(path).metadata[b"genzoo"])
    except (pa.ArrowInvalid, OSError, KeyError, TypeError) as error:
        raise DataFormatError(f"{path}: not a genzoo prepared split ({error})") from error


def columns_of(table: pa.Table, meta: dict) -> dict:
    """A table (a split, or a row group of one) as numpy arrays; images stay in storage values."""
    def fixed(name):
        column = table.column(name).combine_chunks()
        return column.flatten().to_numpy(zero_copy_only=False).reshape(len(table), column.type.list_size)
    names = table.column_names
    return {"image": fixed("image"),
            "label": table.column("label").to_numpy() if "label" in names else None,
            "attributes": fixed("attributes") if "attributes" in names else None,
            "caption": np.asarray(table.column("caption").to_pylist(), dtype=object) if "caption" in names else None,
            "domain": table.column("domain").to_numpy().astype(np.int64) if "domain" in names
            else np.zeros(len(table), dtype=np.int64)}


def read_split(folder: Path, split: str, pixels: str | None = None) -> Split:
    """One whole split in memory, as stored or in the pixel format `pixels` ("binary" | "grayscale").

    For evaluation and other bounded reads; training streams (components/data/streaming.py)."""
    meta = split_meta(folder, split)
    path = split_path(folder, split)
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as error:
        raise DataFormatError(f"{path}: not a genzoo prepared split ({error})") from error
    values = columns_of(table, meta)
    images = decode(values["image"], meta["levels"]).reshape(-1, *meta["image_shape"])
    captions = None if values["caption"] is None else values["caption"].tolist()
    stored = Split(images, values["label"], meta, values["attributes"], captions, values["domain"])
    return stored if pixels is None else in_pixel_format(stored, pixels)


def _with(split: Split, images: np.ndarray, meta: dict) -> Split:
    return dataclasses.replace(split, images=images, meta=meta)


def in_pixel_format(split: Split, pixels: str) -> Split:
    """The split as a model of `pixels` sees it.

    Binary: pixel > threshold (static), or a Bernoulli draw with the intensity
    as probability (dynamic: the training split stays intensities flagged
    `stochastic_binarization`, redrawn every epoch by the reader; evaluation
    splits get their one fixed draw). With `binarize: none` in params, binary
    models still get the static threshold.
    """
    meta = split.meta
    if pixels == "grayscale":
        return _with(split, split.images, {**meta, "pixels": pixels, "stochastic_binarization": False})
    if pixels != "binary":
        raise ValueError(f"unknown pixel format {pixels!r}; valid: {', '.join(PIXEL_FORMATS)}")
    mode = binary_mode(meta)
    binary_meta = {**meta, "pixels": pixels, "levels": 2, "stochastic_binarization": False}
    if meta["levels"] == 2:
        return _with(split, split.images, binary_meta)
    if mode == "dynamic" and meta["split"] == "train":
        return _with(split, split.images, {**binary_meta, "stochastic_binarization": True})
    key = draw_key(meta.get("seed", 0), meta["split"])
    return _with(split, binarize(split.images, mode, meta.get("threshold", 0.5), key), binary_meta)


def binary_mode(meta: dict) -> str:
    return "static" if meta["binarization"] == "none" else meta["binarization"]


def draw_binary(split: Split, seed: int | None = None, epoch: int = 0, draw: int = 0) -> Split:
    """A dynamically binarized split (`stochastic_binarization`) drawn once, with the draw of
    (seed, split, epoch, draw): the images `stream_batches` gives for that seed and epoch.
    Without `seed`, the data seed: the one fixed draw evaluation uses."""
    if not split.meta.get("stochastic_binarization"):
        return split
    key = draw_key(split.meta.get("seed", 0) if seed is None else seed, split.meta["split"], epoch, draw)
    return _with(split, binarize(split.images, "dynamic", key=key), {**split.meta, "stochastic_binarization": False})


def read_spec(folder: Path, pixels: str, split: str = "train") -> DataSpec:
    """What a model of `pixels` is given, from a split's metadata (every split carries the same)."""
    return spec_of(split_meta(folder, split), pixels)


def spec_of(meta: dict, pixels: str) -> DataSpec:
    if pixels not in PIXEL_FORMATS:
        raise ValueError(f"unknown pixel format {pixels!r}; valid: {', '.join(PIXEL_FORMATS)}")
    levels = 2 if pixels == "binary" else int(meta["levels"])
    domains = meta.get("domains") or [{"name": meta["source"]}]
    fields = []
    if meta.get("has_labels", bool(meta.get("class_names"))):
        fields.append("labels")
    if meta.get("attribute_names"):
        fields.append("attributes")
    if meta.get("vocabulary"):
        fields.append("captions")
    if len(domains) > 1:
        fields.append("domains")
    return DataSpec(source=meta["source"],
                    domains=tuple(DomainSpec(d["name"], tuple(meta["image_shape"]), levels) for d in domains),
                    class_names=tuple(meta.get("class_names") or ()),
                    attribute_names=tuple(meta.get("attribute_names") or ()),
                    vocabulary=tuple(meta.get("vocabulary") or ()), fields=tuple(fields), pixels=pixels,
                    caption_length=int(meta.get("caption_length") or 0))


def data_card(splits: dict[str, Split], meta: dict) -> dict:
    """Counts, pixel mean, class and domain balance of each split: what a person checks first."""
    card = {key: meta.get(key) for key in ("source", "image_shape", "binarization", "threshold", "levels",
                                           "ood", "holdout_class", "attribute_names")}
    card["domains"] = [d["name"] for d in meta.get("domains") or []]
    card["captions"] = bool(meta.get("vocabulary"))
    card["splits"] = {}
    for name, split in splits.items():
        images, labels = split.images, split.labels
        entry = {"count": int(len(images)), "pixel_mean": round(float(images.mean()), 6) if len(images) else None}
        if meta["levels"] > 2 and len(images):
            entry["binary_pixel_mean"] = round(float((images > meta["threshold"]).mean()), 6)
        if labels is not None:
            counts = np.bincount(labels, minlength=len(meta.get("class_names") or [])).tolist()
            entry["class_counts"] = counts
            entry["class_fraction"] = [round(c / max(1, len(labels)), 4) for c in counts]
        if split.domains is not None and len(card["domains"]) > 1:
            entry["domain_counts"] = np.bincount(split.domains, minlength=len(card["domains"])).tolist()
        if split.attributes is not None:
            entry["attribute_fraction"] = [round(float(f), 4) for f in split.attributes.mean(0)]
        if split.captions:
            entry["caption_examples"] = split.captions[:3]
        card["splits"][name] = entry
    return card
