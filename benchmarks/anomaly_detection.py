"""Benchmark: density estimation used for anomaly detection on MNIST (pixel > 0.5).

    python benchmarks/anomaly_detection.py --mnist ../shared/data/mnist --seconds 8 --minutes 0.5

1. One-class setup (Ruff et al. 2018): for each digit, train on that digit's
   training images only, then score the test set with -log p(x): the digit's
   test images are normal, the other nine anomalies. AUROC per digit and the
   mean over the ten digits, beside Deep SVDD's 94.8% mean AUROC.
2. MNIST vs. another dataset: models trained on all of MNIST score the MNIST
   test digits against natural-image patches (sklearn's bundled photos, 28x28,
   the same binarization): AUROC of -log p(x), 0.5 = chance, below 0.5 = the
   model finds the other dataset more likely.

Every model with a likelihood takes part (the VAE by its importance-weighted
bound). Budgets are seconds, so read the figures with the epochs beside them.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from budget import train_within  # noqa: E402
from components.data.binarization import binarize  # noqa: E402
from components.data.ood import natural_image_patches  # noqa: E402
from components.data.sources import load_source  # noqa: E402
from components.metrics.anomaly import anomaly_auroc  # noqa: E402
from components.metrics.likelihood import per_image_log_prob  # noqa: E402

MODELS = {
    "bernoulli": ("bernoulli", {}),
    "markov_ar": ("markov_ar", {"order_k": 28}),
    "nade": ("nade", {"hidden_units": 100}),
    "vae": ("vae", {"latent_dim": 20, "hidden_units": [200], "iwae_samples": 100}),
    "rnade": ("rnade", {"hidden_units": 100, "components": 5}),  # on binary pixels: a bound (dequantized)
    "pixelcnn": ("pixelcnn", {"features": 16, "residual_blocks": 3, "output_features": 32}),
    "row_lstm": ("row_lstm", {"features": 16, "layers": 1, "output_features": 32}),
    "diagonal_bilstm": ("diagonal_bilstm", {"features": 16, "layers": 1, "output_features": 32}),
}
DEEP_SVDD_MEAN_AUROC = 0.948  # one-class MNIST, Ruff et al. 2018, Table 1


def log_likelihoods(model, images: torch.Tensor, device) -> np.ndarray:
    model.eval()
    return per_image_log_prob(model.log_prob, images.to(device), batch_size=200).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mnist", required=True, help="folder with the MNIST IDX files")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--seconds", type=float, default=8.0, help="one-class training budget per model and digit")
    parser.add_argument("--minutes", type=float, default=0.5, help="all-digit training budget per model")
    parser.add_argument("--test-subset", type=int, default=2000, help="seeded random N test digits (0 = all)")
    parser.add_argument("--ood-count", type=int, default=2000, help="natural-image patches")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (small networks on a shared CPU run fastest on one)")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_num_threads(args.threads)
    started = time.perf_counter()

    splits = load_source("mnist", path=args.mnist)
    train, valid, test = (torch.from_numpy(binarize(splits[s].images, "static")) for s in ("train", "valid", "test"))
    train_labels, valid_labels, test_labels = (splits[s].labels for s in ("train", "valid", "test"))
    if args.test_subset and args.test_subset < len(test):
        chosen = torch.randperm(len(test), generator=torch.Generator().manual_seed(0))[: args.test_subset]
        test, test_labels = test[chosen], test_labels[chosen.numpy()]

    one_class = {key: [] for key in args.models}
    for digit in range(10):
        normal = test_labels == digit
        for key in args.models:
            name, params = MODELS[key]
            print(f"one-class digit {digit}: training {key} for {args.seconds} s", flush=True)
            result = train_within(name, params, train[train_labels == digit], valid[valid_labels == digit],
                                  args.seconds, args.batch_size, args.lr, device)
            scores = log_likelihoods(result["model"], test, device)
            one_class[key].append(anomaly_auroc(scores[normal], scores[~normal]))

    patches = torch.from_numpy(binarize(natural_image_patches(args.ood_count, (1, 28, 28), levels=256), "static"))
    versus, epochs = {}, {}
    for key in args.models:
        name, params = MODELS[key]
        print(f"all digits: training {key} for {args.minutes} min", flush=True)
        result = train_within(name, params, train, valid, args.minutes * 60, args.batch_size, args.lr, device)
        versus[key] = anomaly_auroc(log_likelihoods(result["model"], test, device),
                                    log_likelihoods(result["model"], patches, device))
        epochs[key] = round(result["epochs"], 2)

    print(f"\ndevice: {device} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads), "
          f"{time.perf_counter() - started:.0f} s in all; {len(test)} seeded random MNIST test digits")
    print(f"\none-class MNIST AUROC (train on one digit for {args.seconds} s, score the other nine)")
    print(f"{'model':10} " + " ".join(f"{d:>6}" for d in range(10)) + f" {'mean':>7}")
    for key, values in one_class.items():
        print(f"{key:10} " + " ".join(f"{v:>6.3f}" for v in values) + f" {np.mean(values):>7.4f}")
    print(f"{'Deep SVDD':10} " + " " * 69 + f" {DEEP_SVDD_MEAN_AUROC:>7.4f}  (Ruff et al. 2018)")
    print(f"\nMNIST vs. natural-image patches ({args.ood_count}), models trained on all digits for {args.minutes} min")
    print(f"{'model':10} {'AUROC':>7} {'epochs':>7}")
    for key in args.models:
        print(f"{key:10} {versus[key]:>7.4f} {epochs[key]:>7}")
    print("command: python " + " ".join(sys.argv))
    print(json.dumps({"one_class": {k: [round(v, 4) for v in vals] for k, vals in one_class.items()},
                      "one_class_mean": {k: round(float(np.mean(v)), 4) for k, v in one_class.items()},
                      "mnist_vs_natural_patches": {k: round(v, 4) for k, v in versus.items()}, "epochs": epochs}))


if __name__ == "__main__":
    main()
