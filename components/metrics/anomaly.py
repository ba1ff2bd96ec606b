"""Density estimation used for anomaly detection: how well a model's log-likelihood
separates test images of its training distribution from out-of-distribution ones."""

from __future__ import annotations

import numpy as np


def anomaly_auroc(in_distribution_log_prob: np.ndarray, out_of_distribution_log_prob: np.ndarray) -> float:
    """Area under the ROC curve of -log p(x) as an anomaly score (OOD = positive class).

    1.0: every OOD image is less likely than every in-distribution one; 0.5:
    no better than chance; below 0.5: the model finds the OOD images *more*
    likely (a known failure of likelihoods, Nalisnick et al. 2019)."""
    from sklearn.metrics import roc_auc_score  # here: scikit-learn's import is ~1 s, models without a likelihood skip it

    inside, outside = np.asarray(in_distribution_log_prob, float), np.asarray(out_of_distribution_log_prob, float)
    if len(inside) == 0 or len(outside) == 0:
        raise ValueError("anomaly AUROC needs both in-distribution and out-of-distribution images")
    if not (np.isfinite(inside).all() and np.isfinite(outside).all()):
        raise ValueError("anomaly AUROC: the log-likelihoods contain NaN or infinity")
    is_anomaly = np.r_[np.zeros(len(inside)), np.ones(len(outside))]
    return float(roc_auc_score(is_anomaly, -np.r_[inside, outside]))
