"""DVC stage `classifier`: train the evaluation classifier on the prepared labels."""

from __future__ import annotations

import json
import sys

from components.atomic import atomic_directory
from components.classifier import accuracy_of, save_classifier, train_classifier
from components.config import load_params, repo_path
from components.data.prepared import read_split


def main() -> None:
    cfg = load_params()["classifier"]
    folder = repo_path("data/prepared")
    train, valid, test = (read_split(folder, s) for s in ("train", "valid", "test"))
    with atomic_directory(repo_path("models/classifier")) as build:
        if train.labels is None:
            reason = f"{train.meta['source']} has no labels: sample-quality metrics are unavailable"
            (build / "config.json").write_text(json.dumps({"available": False, "reason": reason}, indent=2) + "\n")
            print(f"[classifier] skipped: {reason}")
            return
        num_classes = max(len(train.meta.get("class_names") or []), int(train.labels.max()) + 1)
        model, history = train_classifier(train.images, train.labels, valid.images, valid.labels, num_classes,
                                          cfg["epochs"], cfg["batch_size"], cfg["lr"], cfg["seed"])
        test_accuracy = accuracy_of(model, test.images, test.labels)
        save_classifier(model, build, {"test_accuracy": test_accuracy, "history": history,
                                       "class_names": train.meta.get("class_names")})
    print(f"[classifier] test accuracy {test_accuracy:.4f}")


if __name__ == "__main__":
    try:
        main()
    except (FileNotFoundError, KeyError, ValueError) as error:
        sys.exit(f"classifier failed: {error}")
