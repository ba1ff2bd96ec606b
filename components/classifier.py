"""The evaluation classifier: a small CNN trained on the dataset's labels.

Its penultimate-layer features are the space in which generated samples are
compared with real ones (FID, KID, precision/recall), playing the role the
Inception network plays for natural images; its predictions give the class
coverage of the samples. It takes 1 (grayscale) or 3 (RGB) channels and any
H, W >= 8: one pooling halves the image, then features are averaged to 4x4.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


class EvaluationClassifier(nn.Module):
    def __init__(self, image_shape, num_classes: int, feature_dim: int = 128):
        super().__init__()
        self.image_shape, self.num_classes, self.feature_dim = tuple(image_shape), num_classes, feature_dim
        channels, height, width = self.image_shape
        if channels not in (1, 3) or min(height, width) < 8:
            raise ValueError(f"the evaluation classifier takes 1 or 3 channels of at least 8x8 pixels, "
                             f"not images of shape {self.image_shape}")
        self.body = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(),
            nn.Linear(64 * 16, feature_dim), nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(feature_dim, num_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def train_classifier(images, labels, valid_images, valid_labels, num_classes: int, epochs: int,
                     batch_size: int, lr: float, seed: int, log=print) -> tuple[EvaluationClassifier, list[dict]]:
    torch.manual_seed(seed)
    x, y = torch.as_tensor(images), torch.as_tensor(labels)
    model = EvaluationClassifier(x.shape[1:], num_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    history = []
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(x))
        total = 0.0
        for start in range(0, len(x), batch_size):
            idx = order[start:start + batch_size]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
        accuracy = accuracy_of(model, valid_images, valid_labels)
        history.append({"epoch": epoch, "train_loss": total / len(x), "val_accuracy": accuracy})
        log(f"[classifier] epoch {epoch}/{epochs}: train_loss={total / len(x):.4f} val_accuracy={accuracy:.4f}")
    return model.eval(), history


@torch.no_grad()
def predict(model: EvaluationClassifier, images, batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """(features, predicted labels) of images (N, C, H, W) in [0, 1]."""
    model.eval()
    x = torch.as_tensor(images, dtype=torch.float32)
    feats, preds = [], []
    for start in range(0, len(x), batch_size):
        f = model.features(x[start:start + batch_size])
        feats.append(f)
        preds.append(model.head(f).argmax(1))
    return torch.cat(feats), torch.cat(preds)


def accuracy_of(model, images, labels) -> float:
    return float((predict(model, images)[1] == torch.tensor(labels)).float().mean())   # a copy: Parquet's arrays are read-only


def save_classifier(model: EvaluationClassifier, folder: Path, card: dict) -> None:
    torch.save(model.state_dict(), folder / "classifier.pt")
    config = {"available": True, "image_shape": list(model.image_shape), "num_classes": model.num_classes,
              "feature_dim": model.feature_dim, **card}
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")


def load_classifier(folder: Path) -> tuple[EvaluationClassifier | None, dict]:
    """(classifier, its config); classifier is None when the dataset had no labels to train one."""
    config = json.loads((Path(folder) / "config.json").read_text())
    if not config.get("available"):
        return None, config
    model = EvaluationClassifier(config["image_shape"], config["num_classes"], config["feature_dim"])
    model.load_state_dict(torch.load(Path(folder) / "classifier.pt", map_location="cpu", weights_only=True))
    return model.eval(), config
