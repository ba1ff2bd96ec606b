"""Benchmark: the autoregressive family on statically binarized MNIST, under a time budget.

    python benchmarks/autoregressive.py --data ../shared/data/binarized_mnist --minutes 5

Each model trains in-process with the pipeline's model code for the same
wall-clock budget, keeps its best-validated weights, and is scored by exact
test NLL in nats. The table puts each beside the published figure for the
same static binarization, with the compute each used, the training
throughput and the time to sample 64 images.
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

from budget import train_within  # noqa: E402
from components.data.sources import load_source  # noqa: E402
from components.metrics.likelihood import mean_nll  # noqa: E402

MODELS = {  # row -> (model name, params, published test NLL in nats and its source)
    "markov_ar": ("markov_ar", {"order_k": 28}, "~97 for a logistic fully visible AR model (FVSBN; all predecessors)"),
    # k = D - 1: every pixel sees all its predecessors, i.e. the logistic fully visible model (FVSBN) itself.
    "markov_ar_full": ("markov_ar", {"order_k": 783}, "~97 (logistic FVSBN, all predecessors)"),
    "nade": ("nade", {"hidden_units": 500}, "88.33-88.86 (Uria et al. 2016; Larochelle & Murray 2011)"),
    "pixelcnn": ("pixelcnn", {"features": 16, "residual_blocks": 7, "output_features": 32},
                 "81.30 (van den Oord et al. 2016)"),
    "row_lstm": ("row_lstm", {"features": 16, "layers": 7, "output_features": 32}, "80.54 (van den Oord et al. 2016)"),
    "diagonal_bilstm_7x16": ("diagonal_bilstm", {"features": 16, "layers": 7, "output_features": 32},
                             "79.20 (7 layers, h=16; van den Oord et al. 2016)"),
    "diagonal_bilstm_1x32": ("diagonal_bilstm", {"features": 32, "layers": 1, "output_features": 32},
                             "80.75 (1 layer, h=32; van den Oord et al. 2016)"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="folder with binarized_mnist_{train,valid,test}.amat[.gz]")
    parser.add_argument("--minutes", type=float, default=5.0, help="training budget per model")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--test-subset", type=int, default=0, help="score a seeded random N test images (0 = all)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--linear-lr", type=float, default=1e-2,
                        help="learning rate of the linear AR(k) model (a convex fit: 1e-3 crawls)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (on a shared 2-core machine one thread per benchmark is fastest)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    splits = load_source("binarized_mnist", path=args.data)
    train, valid, test = (torch.from_numpy(splits[s].images) for s in ("train", "valid", "test"))
    if args.test_subset:  # random, not the first N: MNIST's first 5,000 test digits are the easier half
        test = test[torch.randperm(len(test), generator=torch.Generator().manual_seed(0))[: args.test_subset]]
    valid = valid[:2000]  # per-epoch model selection: a fixed slice keeps it cheap
    rows = []
    for row in args.models:
        name, params, published = MODELS[row]
        print(f"training {row}: {name} {params} for {args.minutes} min on {device}", flush=True)
        lr = args.linear_lr if name == "markov_ar" else args.lr
        result = train_within(name, params, train, valid, args.minutes * 60, args.batch_size, lr, device)
        model = result["model"]
        nll = mean_nll(model.log_prob, test.to(device), batch_size=200)
        tick = time.perf_counter()
        model.sample(64, generator=torch.Generator().manual_seed(0))
        sample_seconds = time.perf_counter() - tick
        rows.append({"model": row, "test_nll_nats": round(nll, 2), "published": published, "lr": lr,
                     "epochs": round(result["epochs"], 2), "train_seconds": round(result["seconds"]),
                     "images_per_second": round(result["images_per_second"]),
                     "sample_64_seconds": round(sample_seconds, 2),
                     "parameters": sum(p.numel() for p in model.parameters())})
        print(json.dumps(rows[-1]), flush=True)  # each row as it is done: a long run keeps what it measured

    print(f"\nbinarized MNIST (static), test images: {len(test)}; device: {device} "
          f"({platform.machine()}, {torch.get_num_threads()} threads); budget {args.minutes} min per model")
    print(f"{'model':21} {'NLL nats':>9} {'epochs':>7} {'train s':>8} {'img/s':>7} {'64 samples s':>13} "
          f"{'params':>9}  published")
    for r in rows:
        print(f"{r['model']:21} {r['test_nll_nats']:>9.2f} {r['epochs']:>7.2f} {r['train_seconds']:>8} "
              f"{r['images_per_second']:>7} {r['sample_64_seconds']:>13} {r['parameters']:>9}  {r['published']}")
    print("command: python " + " ".join(sys.argv))
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
