"""Model registry: every module in this package that defines a `GenerativeModel`
subclass with a `name` adds it here, so a new model is one new file."""

from __future__ import annotations

import dataclasses
import importlib
import json
import pkgutil
from pathlib import Path

import torch

from components.config import ConfigError
from components.models.base import REGISTRY, GenerativeModel, NotSupported, parse_params

__all__ = ["GenerativeModel", "NotSupported", "available_models", "build_model", "load_model",
           "model_class", "save_model"]

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")


def available_models() -> list[str]:
    return sorted(REGISTRY)


def model_class(name: str) -> type[GenerativeModel]:
    if name not in REGISTRY:
        raise ConfigError(f"unknown model {name!r}; available models: {', '.join(available_models())}")
    return REGISTRY[name]


def build_model(name: str, image_shape, params: dict | None = None, levels: int = 2) -> GenerativeModel:
    """Construct a model by registry name, validating its parameters and the data it needs.

    `levels` is the number of distinct pixel values of the data (2: binary)."""
    cls = model_class(name)
    if cls.pixels == "binary" and levels != 2:
        raise ConfigError(
            f"model {name!r} models binary pixels: set data.binarize to 'static' or 'dynamic' in params.yaml"
        )
    if cls.pixels == "grayscale" and levels == 2:
        raise ConfigError(f"model {name!r} models grayscale pixels: set data.binarize to 'none' in params.yaml")
    return cls(tuple(image_shape), parse_params(cls, params or {}), levels)


def save_model(model: GenerativeModel, folder: Path, state_dict: dict | None = None) -> None:
    """Write `config.json` + `model.pt`: all `load_model` needs, without the training code."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = {"model": model.name, "image_shape": list(model.image_shape), "levels": model.levels,
              "params": dataclasses.asdict(model.params)}
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    torch.save(state_dict if state_dict is not None else model.state_dict(), folder / "model.pt")


def load_model(folder: Path, map_location: str | torch.device = "cpu") -> GenerativeModel:
    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    cls = model_class(config["model"])
    model = cls(tuple(config["image_shape"]), cls.Params(**config["params"]), config.get("levels", 2))
    model.load_state_dict(torch.load(folder / "model.pt", map_location=map_location, weights_only=True))
    return model.eval()
