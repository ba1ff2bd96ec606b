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
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return float(counts[rows, cols].sum() / len(labels))
