"""DVC stage `prepare`: raw source -> train/valid/test Parquet + data card."""

from __future__ import annotations

import json
import sys

from components.atomic import atomic_directory
from components.config import load_params, repo_path
from components.data.formats import DataFormatError
from components.data.prepared import BINARIZATIONS, SPLITS, data_card, write_split
from components.data.sources import DataSourceError, load_source


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
    # Intensities are stored as they are; binary models binarize at read time (see prepared.py).
    meta = {"source": cfg["source"], "image_shape": list(raw.images["train"].shape[1:]),
            "binarization": mode, "threshold": threshold, "seed": int(cfg.get("seed", 0)),
            "levels": raw.levels, "class_names": raw.class_names}
    out = repo_path("data/prepared")
    with atomic_directory(out) as build:
        for name, (images, labels) in splits.items():
            write_split(build / f"{name}.parquet", images, labels, {**meta, "split": name})
        card = data_card(splits, meta)
        (build / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    counts = ", ".join(f"{k}={v['count']}" for k, v in card["splits"].items())
    print(f"prepared {cfg['source']} ({mode} binarization): {counts} -> {out}")


if __name__ == "__main__":
    try:
        main()
    except (DataFormatError, DataSourceError, FileNotFoundError, ValueError) as error:
        sys.exit(f"prepare failed: {error}")
