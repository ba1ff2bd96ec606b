"""Domains: several sources, or transformed copies of one, as the domains of one dataset.

`data.domains: [{name: plain, source: digits}, {name: thick, source: digits, transform: thicken}]`.
Domains that share a source take disjoint subsets of it (each split's images
dealt out by a seeded permutation), so the domains are unpaired: no image
appears in two domains, transformed or not. Every domain is brought to one
(C, H, W), so a batch can hold images of several domains: grayscale becomes RGB
when any domain is RGB, and images are resized to `data.image_size` (or to the
first domain's size). Domains of different intensity levels are all stored in
256 levels. A non-identity transform is also a binary attribute of the image
("thick", "rotated", ...), so captions and attribute-conditional models see it.
Without `data.domains` the dataset is one domain named after its source.

Domain views: a model entry of params.yaml may carry its own `domains: [{name: plain},
{name: thick, transform: thicken}]`, made by its train and evaluate stages from the already
prepared single-domain data (`domain_view`), dealt out and transformed exactly as `data.domains`
deals one source (so the DVC graph keeps one `data/prepared`, and changing a model's domains
reruns that model alone). The view is written as a prepared folder (`domain_view_folder`), which
the streaming reader reads like any other; captions are left out (they do not describe the
transforms).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable, Iterator
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from components.data.batch import Split
from components.errors import ConfigError
from components.data.prepared import SPLITS, quantize, read_split, split_meta, write_split
from components.data.sources import SourceOptions, Splits, load_source


@dataclass(frozen=True)
class Transform:
    apply: Callable[[np.ndarray], np.ndarray]   # (N, C, H, W) in [0, 1] -> same, deterministic
    attribute: str | None                       # the attribute it gives its images (None: identity)


def _grey(operation) -> Callable[[np.ndarray], np.ndarray]:
    return lambda images: operation(images, size=(1, 1, 3, 3)).astype(np.float32)


TRANSFORMS: dict[str, Transform] = {
    "identity": Transform(lambda images: images, None),
    "thicken": Transform(_grey(ndimage.grey_dilation), "thick"),    # strokes one pixel wider (3x3 max)
    "thin": Transform(_grey(ndimage.grey_erosion), "thin"),         # 3x3 min
    "rotate90": Transform(lambda images: np.ascontiguousarray(np.rot90(images, 1, axes=(2, 3))), "rotated"),
    "invert": Transform(lambda images: (1.0 - images).astype(np.float32), "inverted"),
}


@dataclass(frozen=True)
class DomainEntry:
    name: str
    source: str
    transform: str
    options: SourceOptions


def domain_entries(cfg: dict, base: SourceOptions) -> list[DomainEntry]:
    """The `data.domains` entries, as the schema checked them (components/schema.py), or the one domain
    of `data.source`."""
    raw = cfg.get("domains")
    if raw is None:
        return [DomainEntry(cfg["source"], cfg["source"], "identity", base)]
    return [DomainEntry(entry["name"], entry["source"], entry.get("transform", "identity"),
                        SourceOptions(**{**base.__dict__, **{k: entry[k] for k in ("path", "image_size", "count")
                                                             if k in entry}}))
            for entry in raw]


def _resize(images: np.ndarray, height: int, width: int) -> np.ndarray:
    if images.shape[2:] == (height, width):
        return images
    out = np.empty((*images.shape[:2], height, width), dtype=np.float32)
    for i, image in enumerate(images):
        for c, channel in enumerate(image):
            out[i, c] = np.asarray(Image.fromarray(channel, mode="F").resize((width, height), Image.BILINEAR))
    return np.clip(out, 0.0, 1.0)


def assemble(entries: list[DomainEntry], image_size: int | None, limits: dict, seed: int) -> Splits:
    """Load each source once, deal its images out to the domains that use it, transform, unify shapes.

    Each split holds every domain's images concatenated in domain order (rows of one domain are
    contiguous) with their `domains` index; its meta: levels, class_names, attribute_names and
    `domains` (per domain: name, source, transform)."""
    loaded: dict[str, Splits] = {}
    keys = []
    for entry in entries:
        key = repr((entry.source, entry.options))
        if key not in loaded:
            loaded[key] = load_source(entry.source, **entry.options.__dict__)
        keys.append(key)
    return deal(entries, [loaded[key] for key in keys], keys, image_size, limits, seed)


def deal(entries: list[DomainEntry], sources: list[Splits], keys: list, image_size: int | None, limits: dict,
         seed: int) -> Splits:
    """The domains of `entries`, entry d made from `sources[d]`: entries of equal `keys` share one source
    and take disjoint images of it (each split dealt out by a permutation seeded by `seed`)."""
    loaded = dict(zip(keys, sources))
    sharing: dict = {}
    for d, key in enumerate(keys):
        sharing.setdefault(key, []).append(d)
    same_classes = len({tuple(s["train"].meta.get("class_names") or ()) for s in loaded.values()}) == 1 and \
        all(s["train"].labels is not None for s in loaded.values())
    source_attributes = sorted({a for s in loaded.values() for a in s["train"].meta.get("attribute_names") or []})
    transform_attributes = sorted({TRANSFORMS[e.transform].attribute for e in entries} - {None})
    attribute_names = source_attributes + [a for a in transform_attributes if a not in source_attributes]
    levels = {s["train"].meta["levels"] for s in loaded.values()}
    levels = levels.pop() if len(levels) == 1 else 256

    parts: dict[str, list[tuple]] = {split: [] for split in SPLITS}
    for d, entry in enumerate(entries):
        source, peers = sources[d], sharing[keys[d]]
        for split in SPLITS:
            part = source[split]
            images, labels = part.images, part.labels
            rows = np.arange(len(images))
            if len(peers) > 1:   # disjoint, unpaired subsets of one source
                deal = np.random.default_rng([seed, 3, SPLITS.index(split)]).permutation(len(images))
                rows = np.sort(deal[peers.index(d)::len(peers)])
            if limits.get(split):
                rows = rows[: max(1, int(limits[split]) // len(entries))]
            attributes = np.zeros((len(rows), len(attribute_names)), dtype=np.float32)
            if part.attributes is not None:
                for a, name in enumerate(part.meta.get("attribute_names") or []):
                    attributes[:, attribute_names.index(name)] = part.attributes[rows, a]
            transform = TRANSFORMS[entry.transform]
            if transform.attribute:
                attributes[:, attribute_names.index(transform.attribute)] = 1.0
            parts[split].append((transform.apply(images[rows]), None if labels is None else labels[rows],
                                 attributes, part.meta["levels"]))

    channels = max(p[0].shape[1] for split in parts.values() for p in split)
    height, width = (image_size, image_size) if image_size else parts["train"][0][0].shape[2:]
    meta = {"levels": levels,
            "class_names": list(next(iter(loaded.values()))["train"].meta.get("class_names") or [])
            if same_classes else [],
            "attribute_names": attribute_names,
            "domains": [{"name": e.name, "source": e.source, "transform": e.transform} for e in entries]}
    out = {}
    for split, domain_parts in parts.items():
        images = []
        for images_d, _, _, source_levels in domain_parts:
            resized = _resize(images_d, height, width)
            if resized is not images_d or source_levels != levels:
                resized = quantize(resized, levels)
            images.append(np.repeat(resized, channels, axis=1) if resized.shape[1] != channels else resized)
        out[split] = Split(np.concatenate(images),
                           np.concatenate([p[1] for p in domain_parts]) if same_classes else None, meta,
                           np.concatenate([p[2] for p in domain_parts]) if attribute_names else None, None,
                           np.concatenate([np.full(len(p[0]), d, dtype=np.int64) for d, p in enumerate(domain_parts)]))
    return out


# --- domain views of the prepared data (a model entry's `domains`) ------------------------------------

def view_entries(raw: list[dict]) -> list[DomainEntry]:
    """A model entry's `domains`, as the schema checked them: at least two `{name, transform}`
    (transform default identity)."""
    return [DomainEntry(entry["name"], "", entry.get("transform", "identity"), None) for entry in raw]


def domain_view(folder: Path, entries: list[DomainEntry], where: str) -> dict[str, Split]:
    """The train/valid/test splits of the single-domain prepared data in `folder` as the domains of
    `entries`: disjoint images per domain, dealt with the data's seed as `data.domains` deals them."""
    meta = split_meta(folder, "train")
    prepared = meta.get("domains") or []
    if len(prepared) > 1:
        raise ConfigError(f"{where}: the prepared data already has domains ({', '.join(d['name'] for d in prepared)}) "
                          f"from data.domains; give domains in data.domains or in the model entry, not both")
    source = {split: read_split(folder, split) for split in SPLITS}   # meta: levels, class_names, attribute_names
    entries = [DomainEntry(e.name, meta["source"], e.transform, None) for e in entries]
    data = deal(entries, [source] * len(entries), [0] * len(entries), None, {}, int(meta.get("seed", 0)))
    view_meta = {k: v for k, v in meta.items() if k not in ("vocabulary", "caption_length", "split", "rows",
                                                             "domain_rows", "storage")}
    view_meta.update(source=f"{meta['source']} as " + ", ".join(
                         e.name + ("" if e.transform == "identity" else f"={e.transform}") for e in entries),
                     **data["train"].meta, has_labels=data["train"].labels is not None)
    return {split: dataclasses.replace(data[split], meta={**view_meta, "split": split}) for split in SPLITS}


def write_view(splits: dict[str, Split], folder: Path) -> None:
    for name, split in splits.items():
        write_split(Path(folder) / f"{name}.parquet", split.images, split.labels, split.meta, split.attributes,
                    None, split.domains)


@contextlib.contextmanager
def domain_view_folder(prepared: Path, raw, where: str, parent: Path | None = None) -> Iterator[Path]:
    """`prepared` itself when `raw` (a model entry's `domains`) is None, else a temporary prepared folder
    (in `parent`: a folder every Ray node reads, on a cluster) holding its domain view, removed on exit."""
    if raw is None:
        yield Path(prepared)
        return
    splits = domain_view(Path(prepared), view_entries(raw), where)
    if parent is not None:
        Path(parent).mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="domain-view-", dir=parent))
    try:
        write_view(splits, folder)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
