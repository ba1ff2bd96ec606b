"""Agreement of an unsupervised assignment (e.g. InfoGAN's categorical code) with the true labels."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment


def unsupervised_accuracy(assigned: np.ndarray, labels: np.ndarray) -> float:
    """Accuracy under the best one-to-one map of assigned values to labels (the Hungarian algorithm
    on their co-occurrence counts), as InfoGAN reports for its categorical code."""
    assigned, labels = np.asarray(assigned, dtype=int), np.asarray(labels, dtype=int)
    counts = np.zeros((assigned.max() + 1, labels.max() + 1), dtype=np.int64)
    np.add.at(counts, (assigned, labels), 1)
    return matched_accuracy(counts)


def matched_accuracy(confusion: np.ndarray) -> float:
    """confusion[v, k]: how many items of assigned value v have label k. The share of items whose
    label is the one their value is mapped to, under the one-to-one map of values to labels that
    makes it largest (an assignment that ignores the labels scores about 1 / labels)."""
    confusion = np.asarray(confusion)
    if confusion.ndim != 2 or confusion.sum() <= 0:
        raise ValueError(f"matched accuracy: expected a non-empty 2-D count matrix, got shape {confusion.shape}")
    rows, cols = linear_sum_assignment(confusion, maximize=True)
    return float(confusion[rows, cols].sum() / confusion.sum())
