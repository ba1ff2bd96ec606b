"""`params.yaml`: reading it, and the training settings a model entry resolves to."""

from __future__ import annotations

from pathlib import Path

import yaml


class ConfigError(ValueError):
    """params.yaml asks for something that does not exist or has the wrong type."""


def repo_path(relative: str) -> Path:
    """A path in the repository. DVC runs every stage from the repository root."""
    return Path.cwd() / relative


def load_params(path: Path | None = None) -> dict:
    path = Path(path or repo_path("params.yaml"))
    with open(path) as handle:
        params = yaml.safe_load(handle)
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return params


def model_entry(params: dict, key: str) -> dict:
    """The entry `models.<key>`, with a clear error listing the configured models."""
    models = params.get("models") or {}
    if key not in models:
        raise ConfigError(f"no model {key!r} in params.yaml models; configured: {', '.join(models) or 'none'}")
    entry = dict(models[key])
    if "model" not in entry:
        raise ConfigError(f"models.{key} needs a `model:` naming its model type")
    return entry


def training_settings(params: dict, key: str) -> dict:
    """The shared `train` defaults overridden by `models.<key>.training`."""
    settings = dict(params.get("train") or {})
    overrides = model_entry(params, key).get("training") or {}
    unknown = set(overrides) - set(settings)
    if unknown:
        raise ConfigError(
            f"models.{key}.training: unknown setting(s) {', '.join(sorted(unknown))}; "
            f"valid: {', '.join(sorted(settings))}"
        )
    settings.update(overrides)
    return settings


def architecture_params(params: dict, key: str) -> tuple[str, dict]:
    """(model type name, its constructor parameters) of the entry `models.<key>`.

    The entry's other keys, `training` (settings), `pixels` (the data format), `sweep` (a search
    space, see pipelines/sweep.py) and `domains` (a domain view of the data, see
    components/data/domains.py), are not constructor parameters."""
    entry = model_entry(params, key)
    name = entry.pop("model")
    for other in ("training", "pixels", "sweep", "domains"):
        entry.pop(other, None)
    return name, entry
