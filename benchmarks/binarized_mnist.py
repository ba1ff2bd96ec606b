"""Benchmark: NADE and the VAE on statically binarized MNIST, under a time budget.

    python benchmarks/binarized_mnist.py --data ../shared/data/binarized_mnist --minutes 10

Trains each model with the same model code as the pipeline (in-process, one
worker, so the throughput is the model's, not Ray's), keeps the weights with
the best validation NLL, and prints the test NLL in nats beside the published
figures for the same static binarization. Prints the command that made it.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from components.data.sources import load_source  # noqa: E402
from components.metrics.likelihood import mean_nll  # noqa: E402
from budget import train_within  # noqa: E402

PUBLISHED = {
    "nade": "88.33-88.86 (Uria et al. 2016; Larochelle & Murray 2011)",
    "vae": "88.71 (1 stochastic layer, k=5000; Burda et al. 2015 appendix)",
}
CONFIGS = {
    "nade": {"hidden_units": 500},
    "vae": {"latent_dim": 50, "hidden_units": [200, 200], "iwae_chunk": 250},
}


def evaluate(model, images, name: str, iwae_k: int) -> float:
    model.eval()
    if name == "vae":
        return mean_nll(lambda x: model.iwae_log_prob(x, iwae_k), images, batch_size=20)
    return mean_nll(model.log_prob, images, batch_size=500)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="folder with binarized_mnist_{train,valid,test}.amat[.gz]")
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget per model")
    parser.add_argument("--models", nargs="+", default=["nade", "vae"], choices=sorted(CONFIGS))
    parser.add_argument("--iwae-k", type=int, default=5000, help="importance samples of the VAE test NLL")
    parser.add_argument("--test-subset", type=int, default=0, help="evaluate on a seeded random N test images (0 = all)")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_num_threads(torch.get_num_threads())

    splits = load_source("binarized_mnist", path=args.data)
    train, valid, test = (torch.from_numpy(splits[s].images) for s in ("train", "valid", "test"))
    if args.test_subset:  # random, not the first N: MNIST's first 5,000 test digits are the easier half
        test = test[torch.randperm(len(test), generator=torch.Generator().manual_seed(0))[: args.test_subset]]
    rows = []
    for name in args.models:
        print(f"training {name} for {args.minutes} min on {device}", flush=True)
        result = train_within(name, CONFIGS[name], train, valid, args.minutes * 60, args.batch_size, args.lr, device)
        tick = time.perf_counter()
        nll = evaluate(result["model"], test.to(device), name, args.iwae_k)
        rows.append({"model": name, "test_nll_nats": round(nll, 2), "published": PUBLISHED[name],
                     "epochs": round(result["epochs"], 2), "train_images_per_second": round(result["images_per_second"]),
                     "eval_seconds": round(time.perf_counter() - tick, 1),
                     "estimator": f"IWAE k={args.iwae_k}" if name == "vae" else "exact"})

    print(f"\nbinarized MNIST (static binarization, Larochelle & Murray split), test images: {len(test)}")
    print(f"device: {device} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads), "
          f"budget {args.minutes} min per model")
    print(f"{'model':6} {'test NLL (nats)':>16} {'estimator':>12} {'epochs':>7} {'img/s':>7}  published")
    for r in rows:
        print(f"{r['model']:6} {r['test_nll_nats']:>16.2f} {r['estimator']:>12} {r['epochs']:>7.2f} "
              f"{r['train_images_per_second']:>7}  {r['published']}")
    print("command: python " + " ".join(sys.argv))
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
