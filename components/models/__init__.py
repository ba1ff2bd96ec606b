"""Model registry: every module in this package is imported, and each registers its model with the
`register` decorator (components/models/base.py), so a new model is one new file."""

from __future__ import annotations

import dataclasses
import importlib
import json
import pkgutil
from pathlib import Path

import torch

from components.config import typed
from components.errors import ConfigError
from components.data.batch import DataSpec
from components.models.base import REGISTRY, GenerativeModel, NotSupported

__all__ = ["GenerativeModel", "NotSupported", "available_models", "build_model", "load_model",
           "model_class", "pixel_format", "save_model"]

# One module per model, named after it (dvc.yaml's stages depend on `components/models/<name>.py`);
# the subpackage `families` holds what several models share.
for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base" and not _module.ispkg:
        importlib.import_module(f"{__name__}.{_module.name}")


def available_models() -> list[str]:
    return sorted(REGISTRY)


def model_class(name: str) -> type[GenerativeModel]:
    if name not in REGISTRY:
        raise ConfigError(f"unknown model {name!r}; available models: {', '.join(available_models())}")
    return REGISTRY[name]


def pixel_format(name: str, requested: str | None = None, binarization: str = "static") -> str:
    """The pixel format ("binary" | "grayscale") model `name` trains on.

    A model of one kind of pixel gets that kind; a model of any pixels (GAN,
    VAE, PixelCNN, ...) gets the `pixels:` of its params entry, or binary
    unless `data.binarize` is "none"."""
    cls = model_class(name)
    if cls.pixels != "any":
        if requested not in (None, cls.pixels):
            raise ConfigError(f"model {name!r} models {cls.pixels} pixels only; remove `pixels: {requested}`")
        return cls.pixels
    return requested or ("grayscale" if binarization == "none" else "binary")


def build_model(name: str, spec: DataSpec, params: dict | None = None) -> GenerativeModel:
    """Construct a model by registry name for data described by `spec`: its parameters checked by the
    schema (components.config.typed, as params.yaml's entries are), the data by what the model needs
    (pixel format, batch fields)."""
    cls = model_class(name)
    if cls.pixels == "binary" and spec.levels != 2:
        raise ConfigError(f"model {name!r} models binary pixels; it was given data with {spec.levels} levels")
    spec.require(name, sorted(cls.requires))
    return cls(spec, typed(cls.Params, params or {}, f"model {name!r}"))


def save_model(model: GenerativeModel, folder: Path, state_dict: dict | None = None) -> None:
    """Write `config.json` + `model.pt`: all `load_model` needs, without the training code."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = {"model": model.name, "spec": model.spec.to_dict(), "params": dataclasses.asdict(model.params)}
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    torch.save(state_dict if state_dict is not None else model.state_dict(), folder / "model.pt")


def load_model(folder: Path, map_location: str | torch.device = "cpu") -> GenerativeModel:
    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    cls = model_class(config["model"])
    model = cls(DataSpec.from_dict(config["spec"]), cls.Params(**config["params"]))
    model.load_state_dict(torch.load(folder / "model.pt", map_location=map_location, weights_only=True))
    return model.eval()
