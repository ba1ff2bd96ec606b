"""DVC stage `prepare`: raw source(s) -> train/valid/test Parquet + anomaly sets + data card."""

from __future__ import annotations

import json
import sys

import numpy as np

from components.atomic import atomic_directory
from components.errors import ConfigError, repo_path
from components.data.batch import Split
from components.data.captions import caption_length, make_captions, vocabulary
from components.data.domains import assemble, domain_entries
from components.data.formats import DataFormatError
from components.data.ood import NATURAL_IMAGE_PATCHES, out_of_distribution_images
from components.data.prepared import data_card, write_split
from components.data.sources import DataSourceError, SourceOptions, Splits
from components.schema import checked_params, exit_on_bad_params


def source_name(cfg: dict) -> str:
    """The dataset's name: the source, or its domains `name=source[/transform]`."""
    if cfg.get("domains") is None:
        return cfg["source"]
    return ", ".join(f"{d['name']}={d['source']}" + (f"/{d['transform']}" if d.get("transform", "identity")
                                                      != "identity" else "") for d in cfg["domains"])


def anomaly_sets(cfg: dict, splits: Splits) -> Splits:
    """The images the anomaly-detection measurement scores against the test split.

    `ood`: another dataset (params `data.ood`). `holdout`: with `data.holdout_class`
    set, that class is taken out of train, valid and test (edits `splits`) and
    its test images kept here, so models never see it."""
    anomalies = {}
    meta = splits["train"].meta
    held_out = cfg.get("holdout_class")
    if held_out is not None:
        if splits["train"].labels is None:
            raise ConfigError(f"data.holdout_class: the source {source_name(cfg)!r} has no labels")
        if held_out not in range(len(meta["class_names"])):
            raise ConfigError(f"data.holdout_class: {held_out!r} is not a class index of {source_name(cfg)!r} "
                              f"(0..{len(meta['class_names']) - 1})")
        anomalies["holdout"] = splits["test"].select(splits["test"].labels == held_out)
        for name, split in splits.items():
            splits[name] = split.select(split.labels != held_out)
    ood = cfg.get("ood") or {}
    images = out_of_distribution_images(ood.get("source", NATURAL_IMAGE_PATCHES), int(ood.get("count", 500)),
                                        splits["test"].images.shape[1:], meta["levels"], seed=int(cfg.get("seed", 0)),
                                        path=ood.get("path"), cache_dir=repo_path("data/raw"))
    anomalies["ood"] = Split(images, None, meta, domains=np.zeros(len(images), dtype=np.int64))
    return anomalies


def add_captions(cfg: dict, splits: Splits) -> dict:
    """Caption every labelled split; the metadata a caption reader needs (vocabulary, length)."""
    if not cfg.get("captions"):
        return {}
    if splits["train"].labels is None:
        raise ConfigError(f"data.captions: the source {source_name(cfg)!r} has no labels to caption")
    seed, meta = int(cfg.get("seed", 0)), splits["train"].meta
    for name, split in splits.items():
        if split.labels is not None:
            sources = [meta["domains"][d]["source"] for d in split.domains]
            split.captions = make_captions(name, split.labels, meta["class_names"], sources, split.attributes,
                                           meta["attribute_names"], seed)
    every = [c for split in splits.values() for c in split.captions or []]
    return {"vocabulary": vocabulary(splits["train"].captions), "caption_length": caption_length(every)}


def main() -> None:
    cfg = checked_params(["data"])["data"]   # each key's type and range (components/schema.py)
    seed = int(cfg.get("seed", 0))
    base = SourceOptions(path=cfg.get("path"), mirrors=cfg.get("mirrors"), cache_dir=repo_path("data/raw"),
                         valid_fraction=cfg.get("valid_fraction", 0.1), test_fraction=cfg.get("test_fraction", 0.15),
                         seed=seed, image_size=cfg.get("image_size"), count=cfg.get("count"))
    splits = assemble(domain_entries(cfg, base), cfg.get("image_size"), cfg.get("max_examples") or {}, seed)
    dataset = splits["train"].meta   # levels, class_names, attribute_names, domains
    anomalies = anomaly_sets(cfg, splits)
    caption_meta = add_captions(cfg, {**splits, **anomalies})
    mode = cfg.get("binarize", "none")
    # Intensities are stored as they are; binary models binarize at read time (see prepared.py).
    meta = {"source": source_name(cfg), "image_shape": list(splits["train"].images.shape[1:]),
            "binarization": mode, "threshold": float(cfg.get("threshold", 0.5)), "seed": seed,
            "levels": dataset["levels"], "class_names": dataset["class_names"],
            "has_labels": splits["train"].labels is not None,
            "attribute_names": dataset["attribute_names"], "domains": dataset["domains"],
            "holdout_class": cfg.get("holdout_class"),
            "ood": (cfg.get("ood") or {}).get("source", NATURAL_IMAGE_PATCHES), **caption_meta}
    out = repo_path("data/prepared")
    with atomic_directory(out) as build:
        for name, split in {**splits, **anomalies}.items():
            write_split(build / f"{name}.parquet", split.images, split.labels, {**meta, "split": name},
                        split.attributes, split.captions, split.domains)
        card = data_card({**splits, **anomalies}, meta)
        (build / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    counts = ", ".join(f"{k}={v['count']}" for k, v in card["splits"].items())
    print(f"prepared {meta['source']} ({mode} binarization): {counts} -> {out}")


if __name__ == "__main__":
    exit_on_bad_params(["data"])   # one line per bad key, without the stage's prefix
    try:
        main()
    except (DataFormatError, DataSourceError, FileNotFoundError, ValueError) as error:
        sys.exit(f"prepare failed: {error}")
