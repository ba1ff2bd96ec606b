"""DVC stage `classifier`: train the evaluation classifier on the prepared labels.

It learns from the images in both pixel formats (intensities and their
binarization), since it scores the samples of binary and grayscale models alike.
"""

from __future__ import annotations

import json
import sys

from components.schema import checked_params, exit_on_bad_params

if __name__ == "__main__":  # before the imports below load torch: a bad value fails at once
    exit_on_bad_params(["classifier"])

import numpy as np  # noqa: E402

from components.atomic import atomic_directory  # noqa: E402
from components.classifier import accuracy_of, save_classifier, train_classifier  # noqa: E402
from components.errors import repo_path  # noqa: E402
from components.data.prepared import PIXEL_FORMATS, draw_binary, read_split  # noqa: E402


def in_both_pixel_formats(folder, split: str) -> tuple[np.ndarray, np.ndarray]:
    views = [read_split(folder, split, pixels) for pixels in PIXEL_FORMATS]
    if views[0].meta["levels"] == views[1].meta["levels"]:  # a binary source: one format
        return views[0].images, views[0].labels
    views = [draw_binary(view) for view in views]  # dynamic: the split's one fixed draw is enough to learn from
    return np.concatenate([v.images for v in views]), np.concatenate([v.labels for v in views])


def main() -> None:
    cfg = checked_params(["classifier"])["classifier"]
    folder = repo_path("data/prepared")
    train = read_split(folder, "train")
    with atomic_directory(repo_path("models/classifier")) as build:
        if train.labels is None:
            reason = f"{train.meta['source']} has no labels: sample-quality metrics are unavailable"
            (build / "config.json").write_text(json.dumps({"available": False, "reason": reason}, indent=2) + "\n")
            print(f"[classifier] skipped: {reason}")
            return
        num_classes = max(len(train.meta.get("class_names") or []), int(train.labels.max()) + 1)
        (images, labels), (valid_images, valid_labels) = (in_both_pixel_formats(folder, s) for s in ("train", "valid"))
        model, history = train_classifier(images, labels, valid_images, valid_labels, num_classes,
                                          cfg["epochs"], cfg["batch_size"], cfg["lr"], cfg["seed"])
        test_accuracy = {}
        for pixels in PIXEL_FORMATS:
            test = read_split(folder, "test", pixels)
            test_accuracy[pixels] = accuracy_of(model, test.images, test.labels)
        save_classifier(model, build, {"test_accuracy": test_accuracy, "history": history,
                                       "class_names": train.meta.get("class_names")})
    print("[classifier] test accuracy: " + ", ".join(f"{k} {v:.4f}" for k, v in test_accuracy.items()))


if __name__ == "__main__":
    try:
        main()
    except (FileNotFoundError, KeyError, ValueError) as error:
        sys.exit(f"classifier failed: {error}")
