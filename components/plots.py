"""Pictures people look at: sample grids and training curves, and the pictures models describe
(components/pictures.py) drawn."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from components.pictures import Bars, Grid, LabelledRows, Picture, Table  # noqa: E402


def image_grid(images: np.ndarray, columns: int = 10, padding: int = 1, scale: int = 4) -> Image.Image:
    """Tile (N, C, H, W) images in [0, 1] into one picture, each upscaled `scale` times."""
    images = np.clip(np.asarray(images, dtype=np.float32), 0.0, 1.0)
    n, c, h, w = images.shape
    rows = -(-n // columns)
    grid = np.ones((rows * (h + padding) + padding, columns * (w + padding) + padding, c), dtype=np.float32)
    for i, image in enumerate(images):
        r, k = divmod(i, columns)
        top, left = padding + r * (h + padding), padding + k * (w + padding)
        grid[top:top + h, left:left + w] = image.transpose(1, 2, 0)
    pixels = (grid * 255).round().astype(np.uint8)
    picture = Image.fromarray(pixels[..., 0] if c == 1 else pixels)
    return picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)


def write_history_csv(history: list[dict], path: Path) -> None:
    keys = list(dict.fromkeys(k for record in history for k in record))
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)


def plot_history(history: list[dict], path: Path, title: str) -> None:
    """One panel per metric family (train_x beside val_x), epochs on the x axis."""
    epochs = [r["epoch"] for r in history]
    names = sorted({k.split("_", 1)[1] for r in history for k in r if k.startswith(("train_", "val_"))})
    fig, axes = plt.subplots(1, max(1, len(names)), figsize=(4 * max(1, len(names)), 3), squeeze=False)
    for ax, name in zip(axes[0], names):
        for prefix, style in (("train_", "-"), ("val_", "--")):
            values = [r.get(prefix + name) for r in history]
            if any(v is not None for v in values):
                ax.plot(epochs, values, style, marker="o", markersize=3, label=prefix.rstrip("_"))
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def bar_chart(values, labels, title: str, ylabel: str, reference=None, names=("model", "real data")):
    """One bar per value, labelled underneath, beside a `reference` bar per value when given; NaN
    values are left out (and the title says which)."""
    values = np.asarray(values, dtype=np.float64)
    series = [values] if reference is None else [values, np.asarray(reference, dtype=np.float64)]
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * len(values) * len(series) + 1.5), 3.2))
    for i, (heights, name) in enumerate(zip(series, names)):
        shown = np.isfinite(heights)
        ax.bar(np.flatnonzero(shown) + (i - (len(series) - 1) / 2) * width, heights[shown], width, label=name)
    ax.set_xticks(range(len(values)), [str(label) for label in labels])
    ax.set_ylabel(ylabel)
    missing = [str(label) for label, ok in zip(labels, np.isfinite(values)) if not ok]
    ax.set_title(title + (f" (not measured: {', '.join(missing)})" if missing else ""), fontsize=9)
    if reference is not None:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def labelled_rows(images: np.ndarray, row_labels, columns: int, title: str | None = None):
    """`image_grid` of (rows * columns, C, H, W) images with each row's label written at its left."""
    grid = image_grid(images, columns=columns)
    rows, labels = len(row_labels), [str(label) for label in row_labels]
    # Inches: the grid at 110 dpi, the labels at ~0.065 in per character of 8-point text.
    margin = 0.25 + 0.065 * max(map(len, labels), default=0)
    width, height = grid.width / 110, grid.height / 110
    top = 0.45 if title else 0.1
    fig = plt.figure(figsize=(margin + width + 0.15, height + top + 0.1))
    ax = fig.add_axes((margin / (margin + width + 0.15), 0.1 / (height + top + 0.1),
                       width / (margin + width + 0.15), height / (height + top + 0.1)))
    ax.imshow(grid, cmap="gray" if grid.mode == "L" else None, vmin=0, vmax=255)
    step = grid.height / rows
    ax.set_yticks([step * (r + 0.5) for r in range(rows)], labels, fontsize=8)
    ax.set_xticks([])
    if title:
        fig.suptitle(title, fontsize=8, x=0.5, y=1 - 0.08 / (height + top + 0.1), va="top")
    return fig


def picture_rows(rows, titles):
    """A table of small pictures: `rows` of (C, H, W) arrays in [0, 1] (any size per column), one
    column per title, the titles over the first row."""
    figure, axes = plt.subplots(len(rows), len(titles), figsize=(1.2 * len(titles), 1.2 * len(rows)),
                                squeeze=False)
    for r, row in enumerate(rows):
        for c, picture in enumerate(row):
            array, ax = np.asarray(picture).transpose(1, 2, 0), axes[r, c]
            ax.imshow(array[..., 0] if array.shape[2] == 1 else array, cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[c], fontsize=7)
    figure.tight_layout()
    return figure


def draw(picture: Picture):
    """A described picture (components/pictures.py) as a PIL image or a matplotlib figure."""
    match picture:
        case Grid():
            return image_grid(picture.images, columns=picture.columns)
        case LabelledRows():
            return labelled_rows(picture.images, picture.row_labels, picture.columns, picture.title)
        case Bars():
            return bar_chart(picture.values, picture.labels, picture.title, picture.ylabel,
                             reference=picture.reference, names=picture.names)
        case Table():
            return picture_rows(picture.rows, picture.titles)
    raise TypeError(f"not a picture description: {type(picture).__name__}")
