"""Pictures a model asks evaluation to draw, described as arrays and words.

A model's `evaluation_figures` hook returns these; `components/plots.py` draws them. Model files
hold what only the model knows (which samples, which rows) and no plotting.
Images are (N, C, H, W) arrays in [0, 1].
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Grid:
    """Images tiled `columns` to a row."""
    images: np.ndarray
    columns: int = 10


@dataclasses.dataclass(frozen=True)
class LabelledRows:
    """Images tiled `columns` to a row, each row's label written at its left."""
    images: np.ndarray
    row_labels: list[str]
    columns: int
    title: str | None = None


@dataclasses.dataclass(frozen=True)
class Bars:
    """One bar per value, labelled underneath, beside a `reference` bar per value when given."""
    values: np.ndarray
    labels: list[str]
    title: str
    ylabel: str
    reference: np.ndarray | None = None
    names: tuple[str, str] = ("model", "real data")


@dataclasses.dataclass(frozen=True)
class Table:
    """Rows of small images of any size per column (C, H, W), a title over each column."""
    rows: list[list[np.ndarray]]
    titles: list[str]


Picture = Grid | LabelledRows | Bars | Table
