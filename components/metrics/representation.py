"""Representation learning: how much of the labels a model's codes (`encode`) carry,
although the model was trained without labels. Two standard read-outs, each
fitted on the training split's codes and scored on the test split's:

* linear probe: multinomial logistic regression on standardized codes;
* k-NN: majority vote of the k nearest training codes (Euclidean, standardized).
"""

from __future__ import annotations

import numpy as np


def probe_accuracies(train_codes: np.ndarray, train_labels: np.ndarray, test_codes: np.ndarray,
                     test_labels: np.ndarray, neighbours: int = 5) -> dict[str, float]:
    """Test accuracy of a linear probe and of k-NN on the codes, beside the majority-class baseline."""
    if len(train_codes) != len(train_labels) or len(test_codes) != len(test_labels):
        raise ValueError("probe: codes and labels differ in length")
    # here: scikit-learn's import is ~1 s, and models without an encoder never probe
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    linear = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    knn = make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=min(neighbours, len(train_codes))))
    majority = np.bincount(train_labels).argmax()
    return {"linear_probe_accuracy": float(linear.fit(train_codes, train_labels).score(test_codes, test_labels)),
            "knn_accuracy": float(knn.fit(train_codes, train_labels).score(test_codes, test_labels)),
            "knn_neighbours": min(neighbours, len(train_codes)),
            "majority_class_accuracy": float((test_labels == majority).mean())}
