"""Pictures of a model's latent space (models declaring `encode` and `decode`):
reconstructions beside their inputs, walks between two images' codes, and the
codes of the test images coloured by their label."""

from __future__ import annotations

import numpy as np
import torch

from components.plots import image_grid, plt


@torch.no_grad()
def reconstruction_grid(model, images: torch.Tensor, columns: int = 10):
    """Rows in pairs: `columns` test images, then their reconstructions E[x | z = encode(x)]."""
    rows = []
    for start in range(0, min(len(images), 2 * columns), columns):
        originals = images[start:start + columns]
        rows += [originals, model.decode(model.encode(originals)).cpu()]
    return image_grid(torch.cat(rows).numpy(), columns=columns)


@torch.no_grad()
def interpolation_grid(model, images: torch.Tensor, pairs: int = 8, steps: int = 10):
    """Each row walks in a straight line from one test image's code to another's: the first
    and last columns are the two images themselves, the rest decoded codes in between."""
    first, last = images[:pairs], images[pairs:2 * pairs]
    start, end = model.encode(first), model.encode(last)
    t = torch.linspace(0, 1, steps).view(1, steps, 1)
    path = (1 - t) * start[:, None] + t * end[:, None]                       # (pairs, steps, L)
    decoded = model.decode(path.reshape(-1, path.shape[-1])).cpu().reshape(len(first), steps, *images.shape[1:])
    rows = torch.cat([first[:, None], decoded, last[:, None]], dim=1)
    return image_grid(rows.reshape(-1, *images.shape[1:]).numpy(), columns=steps + 2)


def latent_scatter(codes: np.ndarray, labels: np.ndarray | None, title: str):
    """The codes in the plane, coloured by label: the 2-D latent itself, or, for more
    dimensions, its first two principal components (said on the axes)."""
    if codes.shape[1] > 2:
        from sklearn.decomposition import PCA

        points, axes = PCA(n_components=2).fit_transform(codes), ("principal component 1", "principal component 2")
    else:
        points, axes = np.c_[codes, np.zeros((len(codes), 2 - codes.shape[1]))], ("z1", "z2")
    fig, ax = plt.subplots(figsize=(5, 4.5))
    scatter = ax.scatter(points[:, 0], points[:, 1], c=labels, cmap="tab10", s=6, alpha=0.8)
    if labels is not None:
        fig.colorbar(scatter, ax=ax, label="label", ticks=np.unique(labels))
    ax.set_xlabel(axes[0])
    ax.set_ylabel(axes[1])
    ax.set_title(title)
    fig.tight_layout()
    return fig
