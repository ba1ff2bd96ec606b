"""What a model is given: a `DataSpec` (the shape of the data, once) and `Batch`es (the data), made
from `Split`s (the arrays of a split, or of part of one) by `to_batch`.

The spec describes every domain of the prepared dataset (image shape C, H, W
with 1 or 3 channels, intensity levels), its class names, attribute names and
caption vocabulary, and which batch fields the data carries. A model is built
from the spec, so it never guesses the shape of what it will be given.

A `Batch` carries the images of one step in the model's pixel format and,
where the data has them, labels, binary attributes, captions (text and token
ids) and the domain index of each image. A model declares the fields it needs
(`GenerativeModel.requires`); asking for a field the data lacks fails before
training (`require`).

A `Split` holds the same fields as numpy arrays, row-aligned, with the split's
metadata: what a source loads, what prepare writes and what a reader reads
(components/data/prepared.py, streaming.py). `to_batch` is the one way a split,
or a part of one (`Split.select`), becomes a Batch.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

import numpy as np
import torch

from components.errors import ConfigError

FIELDS = ("labels", "attributes", "captions", "domains")
PAD, UNKNOWN = "<pad>", "<unk>"   # token ids 0 and 1 of every caption vocabulary


@dataclass(frozen=True)
class DomainSpec:
    name: str
    image_shape: tuple[int, int, int]   # (C, H, W), C = 1 (grayscale) or 3 (RGB)
    levels: int                         # distinct intensity levels as the model sees them (2 = binary)

    @property
    def num_pixels(self) -> int:
        c, h, w = self.image_shape
        return c * h * w


@dataclass(frozen=True)
class DataSpec:
    source: str
    domains: tuple[DomainSpec, ...]     # one entry for a single-domain dataset
    class_names: tuple[str, ...] = ()
    attribute_names: tuple[str, ...] = ()
    vocabulary: tuple[str, ...] = ()    # caption tokens; 0 = PAD, 1 = UNKNOWN
    fields: tuple[str, ...] = ()        # the batch fields the data has (subset of FIELDS)
    pixels: str = "binary"              # "binary" | "grayscale": the format the model reads
    caption_length: int = 0             # tokens of the longest caption: Batch.caption_tokens' width

    # --- the first (usually only) domain -------------------------------------
    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.domains[0].image_shape

    @property
    def levels(self) -> int:
        return self.domains[0].levels

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def domain_names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.domains)

    @classmethod
    def single(cls, image_shape, levels: int = 2, **kwargs) -> "DataSpec":
        """A one-domain spec (tests, benchmarks): `DataSpec.single((1, 28, 28), 2)`."""
        pixels = kwargs.pop("pixels", "binary" if levels == 2 else "grayscale")
        return cls(source=kwargs.pop("source", "synthetic"),
                   domains=(DomainSpec("default", tuple(image_shape), levels),), pixels=pixels, **kwargs)

    def require(self, model: str, needed) -> None:
        """Fail with a message naming the model, the field and the data source when a field is missing."""
        for name in needed:
            if name not in self.fields:
                raise ConfigError(f"model {model!r} needs {name} in its batches, but data source "
                                  f"{self.source!r} has none (it has: {', '.join(self.fields) or 'images only'})")

    def tokenize(self, text: str, length: int | None = None) -> list[int]:
        """Token ids of a caption; words outside the vocabulary map to UNKNOWN, so any text gets ids."""
        return tokenize(self.vocabulary, text, length)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "DataSpec":
        values = dict(values)
        values["domains"] = tuple(DomainSpec(d["name"], tuple(d["image_shape"]), int(d["levels"]))
                                  for d in values["domains"])
        for key in ("class_names", "attribute_names", "vocabulary", "fields"):
            values[key] = tuple(values.get(key) or ())
        return cls(**values)


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def tokenize(vocabulary, text: str, length: int | None = None) -> list[int]:
    """Token ids of `text` in `vocabulary` (0 = PAD, 1 = UNKNOWN), padded or cut to `length`."""
    index = {word: i for i, word in enumerate(vocabulary)}
    ids = [index.get(word, 1) for word in words(text)]
    if length is not None:
        ids = (ids + [0] * length)[:length]
    return ids


@dataclass
class Batch:
    images: torch.Tensor                        # (B, C, H, W) float32 in [0, 1]
    labels: torch.Tensor | None = None          # (B,) int64 class index
    attributes: torch.Tensor | None = None      # (B, A) float32 in {0, 1}
    captions: list[str] | None = None           # (B,) text
    caption_tokens: torch.Tensor | None = None  # (B, T) int64, 0-padded
    domains: torch.Tensor | None = None         # (B,) int64 index into DataSpec.domains
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.images)

    def to(self, device) -> "Batch":
        def move(value):
            return value.to(device) if isinstance(value, torch.Tensor) else value
        return Batch(**{f.name: move(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "extra"},
                     extra={k: move(v) for k, v in self.extra.items()})

    def select(self, index: torch.Tensor) -> "Batch":
        """The images at `index` (a bool mask or indices) with their fields."""
        def pick(value):
            if value is None:
                return None
            if isinstance(value, list):
                positions = index.nonzero().flatten() if index.dtype == torch.bool else index
                return [value[int(i)] for i in positions]
            return value[index.to(value.device)]
        return Batch(**{f.name: pick(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "extra"},
                     extra={k: pick(v) for k, v in self.extra.items()})

    def by_domain(self, count: int) -> list["Batch"]:
        """The batch split into its `count` domains (each domain's images in their own order)."""
        if self.domains is None:
            raise ValueError("this batch has no domains")
        return [self.select(self.domains == d) for d in range(count)]


@dataclass
class Split:
    """The rows of one split (or a part of one) as numpy arrays, each field row-aligned with `images`."""

    images: np.ndarray                    # float32 (N, C, H, W) in [0, 1]
    labels: np.ndarray | None = None      # int64 (N,) class index
    meta: dict = field(default_factory=dict)   # levels, class/attribute/domain names, vocabulary, ... (prepared.py)
    attributes: np.ndarray | None = None  # float32 (N, A) in {0, 1}
    captions: list[str] | None = None     # (N,) text
    domains: np.ndarray | None = None     # int64 (N,) index into meta["domains"]
    rows: np.ndarray | None = None        # int64 (N,) each image's row in its split file (a streamed part)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.meta["image_shape"])

    def select(self, index) -> "Split":
        """The rows at `index` (a slice, a bool mask or indices) with their fields; the same meta."""
        def pick(values):
            if values is None:
                return None
            if isinstance(values, list):
                return np.asarray(values, dtype=object)[index].tolist()
            return values[index]
        return Split(self.images[index], pick(self.labels), self.meta, pick(self.attributes), pick(self.captions),
                     pick(self.domains), pick(self.rows))


def to_batch(split: Split) -> Batch:
    """A split's rows as one Batch; captions also as token ids of the split's vocabulary (meta
    `vocabulary`, `caption_length`); `rows` in `extra`. The images are shared with the split (no second
    copy of the largest array); the other fields are copied, since a reader's may be read-only views of
    Arrow buffers, which torch does not share."""
    def tensor(values, dtype):
        return None if values is None else torch.from_numpy(np.array(values, dtype=dtype))
    tokens = None
    if split.captions is not None:
        vocabulary, length = split.meta.get("vocabulary") or (), int(split.meta.get("caption_length") or 0)
        tokens = torch.tensor([tokenize(vocabulary, c, length) for c in split.captions], dtype=torch.int64)
    return Batch(images=torch.from_numpy(np.ascontiguousarray(split.images, dtype=np.float32)),
                 labels=tensor(split.labels, np.int64), attributes=tensor(split.attributes, np.float32),
                 captions=None if split.captions is None else list(split.captions), caption_tokens=tokens,
                 domains=tensor(split.domains, np.int64),
                 extra={} if split.rows is None else {"rows": tensor(split.rows, np.int64)})
