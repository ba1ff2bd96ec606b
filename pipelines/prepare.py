"""DVC stage `prepare`: raw source -> train/valid/test Parquet + data card."""

from __future__ import annotations

import json
import sys

from components.atomic import atomic_directory
from components.config import load_params, repo_path
from components.data.formats import DataFormatError
from components.data.ood import NATURAL_IMAGE_PATCHES, out_of_distribution_images
from components.data.prepared import BINARIZATIONS, SPLITS, data_card, write_split
from components.data.sources import DataSourceError, load_source


def anomaly_sets(cfg: dict, raw, splits: dict) -> dict:
    """The images the anomaly-detection measurement scores against the test split.

    `ood`: another dataset (params `data.ood`). `holdout`: with `data.holdout_class`
    set, that class is taken out of train, valid and test (edits `splits`) and
    its test images kept here, so models never see it."""
    anomalies = {}
    held_out = cfg.get("holdout_class")
    if held_out is not None:
        if splits["train"][1] is None:
            raise ValueError(f"data.holdout_class: the source {cfg['source']!r} has no labels")
        if held_out not in range(len(raw.class_names or [])):
            raise ValueError(f"data.holdout_class: {held_out!r} is not a class index of {cfg['source']!r} "
                             f"(0..{len(raw.class_names or []) - 1})")
        anomalies["holdout"] = tuple(part[splits["test"][1] == held_out] for part in splits["test"])
        for name, (images, labels) in splits.items():
            splits[name] = (images[labels != held_out], labels[labels != held_out])
    ood = cfg.get("ood") or {}
    images = out_of_distribution_images(ood.get("source", NATURAL_IMAGE_PATCHES), int(ood.get("count", 500)),
                                        splits["test"][0].shape[1:], raw.levels, seed=int(cfg.get("seed", 0)),
                                        path=ood.get("path"), cache_dir=repo_path("data/raw"))
    anomalies["ood"] = (images, None)
    return anomalies


def main() -> None:
    cfg = load_params()["data"]
    raw = load_source(cfg["source"], path=cfg.get("path"), mirrors=cfg.get("mirrors"),
                      cache_dir=repo_path("data/raw"), valid_fraction=cfg.get("valid_fraction", 0.1),
                      test_fraction=cfg.get("test_fraction", 0.15), seed=cfg.get("seed", 0))
    mode, threshold = cfg.get("binarize", "none"), float(cfg.get("threshold", 0.5))
    if mode not in BINARIZATIONS:
        raise ValueError(f"data.binarize: {mode!r} is not one of {', '.join(BINARIZATIONS)}")
    limits = cfg.get("max_examples") or {}
    splits = {}
    for name in SPLITS:
        images, labels = raw.images[name], raw.labels[name]
        if limits.get(name):
            images, labels = images[: limits[name]], None if labels is None else labels[: limits[name]]
        splits[name] = (images, labels)
    anomalies = anomaly_sets(cfg, raw, splits)
    # Intensities are stored as they are; binary models binarize at read time (see prepared.py).
    meta = {"source": cfg["source"], "image_shape": list(raw.images["train"].shape[1:]),
            "binarization": mode, "threshold": threshold, "seed": int(cfg.get("seed", 0)),
            "levels": raw.levels, "class_names": raw.class_names, "holdout_class": cfg.get("holdout_class"),
            "ood": (cfg.get("ood") or {}).get("source", NATURAL_IMAGE_PATCHES)}
    out = repo_path("data/prepared")
    with atomic_directory(out) as build:
        for name, (images, labels) in splits.items():
            write_split(build / f"{name}.parquet", images, labels, {**meta, "split": name})
        for name, (images, labels) in anomalies.items():
            write_split(build / f"{name}.parquet", images, labels, {**meta, "split": name})
        card = data_card({**splits, **anomalies}, meta)
        (build / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    counts = ", ".join(f"{k}={v['count']}" for k, v in card["splits"].items())
    print(f"prepared {cfg['source']} ({mode} binarization): {counts} -> {out}")


if __name__ == "__main__":
    try:
        main()
    except (DataFormatError, DataSourceError, FileNotFoundError, ValueError) as error:
        sys.exit(f"prepare failed: {error}")
