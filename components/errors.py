"""The bottom layer: the error every layer raises for a bad configuration, and where the repository is.
It imports nothing of genzoo."""

from __future__ import annotations

from pathlib import Path


class ConfigError(ValueError):
    """params.yaml asks for something that does not exist or has the wrong type."""


def repo_path(relative: str) -> Path:
    """A path in the repository. DVC runs every stage from the repository root."""
    return Path.cwd() / relative
