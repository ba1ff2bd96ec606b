"""Benchmark: the latent-variable family, under a time budget per model.

    python benchmarks/latent_variable.py --binarized ../shared/data/binarized_mnist \
        --mnist ../shared/data/mnist --minutes 1 --out /tmp/genzoo-latent

1. Statically binarized MNIST (Larochelle & Murray): VAE with MLP and with
   convolutional encoder/decoder, and the IWAE objective (k=50), each trained
   with the pipeline's model code; test NLL (nats) by the importance-weighted
   bound with k=5000 beside Burda et al. (2015, appendix, one stochastic
   layer): VAE 88.71, IWAE k=50 87.10. Dynamic-binarization figures are about
   2 nats lower and not comparable.
2. MNIST with labels (pixel > 0.5): VAE (MLP, conv) and the adversarial
   autoencoder trained without labels; test accuracy of a linear probe and
   of 5-NN on their codes (fitted on 10,000 training codes); an AAE sample grid.

The budgets here are minutes where the papers train for days: the table says
how far each model got (epochs), so the gap to the published figure is read
with that in mind. Prints the command that made it.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from components.data.binarization import binarize  # noqa: E402
from components.data.batch import Batch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from budget import train_within  # noqa: E402
from components.data.sources import load_source  # noqa: E402
from components.metrics.likelihood import mean_nll  # noqa: E402
from components.metrics.representation import probe_accuracies  # noqa: E402
from components.plots import image_grid  # noqa: E402

LIKELIHOOD_MODELS = {  # key -> (registry name, params, published test NLL)
    "vae_mlp": ("vae", {"latent_dim": 50, "hidden_units": [200, 200], "iwae_chunk": 250},
                "88.71 (VAE, k=5000; Burda et al. 2015)"),
    "vae_conv": ("vae", {"latent_dim": 50, "architecture": "conv", "conv_channels": [16, 32],
                         "hidden_units": [256], "iwae_chunk": 250}, "(no published conv figure)"),
    "iwae_mlp_k50": ("vae", {"latent_dim": 50, "hidden_units": [200, 200], "train_samples": 50,
                             "iwae_chunk": 250}, "87.10 (IWAE k=50, k=5000; Burda et al. 2015)"),
}
CODE_MODELS = {
    "vae_mlp": ("vae", {"latent_dim": 50, "hidden_units": [200, 200]}),
    "vae_conv": ("vae", {"latent_dim": 50, "architecture": "conv", "conv_channels": [16, 32], "hidden_units": [256]}),
    "aae": ("aae", {"latent_dim": 8, "prior": "gaussian", "hidden_units": [512, 512],
                    "discriminator_units": [512, 512]}),
}


def seeded_subset(images: torch.Tensor, count: int, *others):
    """A seeded random subset (MNIST's first test digits are the easier half)."""
    if not count or count >= len(images):
        return (images, *others)
    chosen = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[:count]
    return (images[chosen], *(o[chosen.numpy()] for o in others))


@torch.no_grad()
def codes(model, images: torch.Tensor, device) -> torch.Tensor:
    return torch.cat([model.encode(x.to(device)).cpu() for x in images.split(500)])


def likelihood_rows(args, device) -> list[dict]:
    splits = load_source("binarized_mnist", path=args.binarized)
    train, valid, test = (torch.from_numpy(splits[s].images) for s in ("train", "valid", "test"))
    (test,) = seeded_subset(test, args.test_subset)
    rows = []
    for key in args.likelihood_models:
        name, params, published = LIKELIHOOD_MODELS[key]
        print(f"binarized MNIST: training {key} for {args.minutes} min", flush=True)
        result = train_within(name, params, train, valid, args.minutes * 60, args.batch_size, args.lr, device)
        tick = time.perf_counter()
        model = result["model"]
        nll = mean_nll(lambda x: model.iwae_log_prob(x, args.iwae_k), test.to(device), batch_size=20)
        rows.append({"model": key, "test_nll_nats": round(nll, 2), "iwae_k": args.iwae_k,
                     "epochs": round(result["epochs"], 2), "eval_seconds": round(time.perf_counter() - tick, 1),
                     "published": published})
    return rows


def representation_rows(args, device) -> list[dict]:
    splits = load_source("mnist", path=args.mnist)
    train, valid, test = (torch.from_numpy(binarize(splits[s].images, "static")) for s in ("train", "valid", "test"))
    train_labels, test_labels = splits["train"].labels, splits["test"].labels
    probe_images, probe_labels = seeded_subset(train, 10_000, train_labels)
    rows = []
    for key in args.code_models:
        name, params = CODE_MODELS[key]
        print(f"MNIST: training {key} for {args.minutes} min (no labels)", flush=True)
        result = train_within(name, params, train, valid, args.minutes * 60, args.batch_size, args.lr, device)
        model = result["model"]
        accuracies = probe_accuracies(codes(model, probe_images, device).numpy(), probe_labels,
                                      codes(model, test, device).numpy(), test_labels)
        rows.append({"model": key, **{k: round(v, 4) for k, v in accuracies.items()},
                     "latent_dim": params["latent_dim"], "epochs": round(result["epochs"], 2)})
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            grid = image_grid(model.sample(100, generator=torch.Generator().manual_seed(0)).cpu().numpy(), scale=2)
            grid.save(args.out / f"{key}_samples.png")
            with torch.no_grad():
                means = model.decode(model.prior_sample(100, torch.Generator().manual_seed(0)))
            image_grid(means.cpu().numpy(), scale=2).save(args.out / f"{key}_sample_means.png")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binarized", help="folder with binarized_mnist_{train,valid,test}.amat[.gz]")
    parser.add_argument("--mnist", help="folder with the MNIST IDX files")
    parser.add_argument("--minutes", type=float, default=1.0, help="training budget per model")
    parser.add_argument("--likelihood-models", nargs="*", default=list(LIKELIHOOD_MODELS),
                        choices=list(LIKELIHOOD_MODELS))
    parser.add_argument("--code-models", nargs="*", default=list(CODE_MODELS), choices=list(CODE_MODELS))
    parser.add_argument("--iwae-k", type=int, default=5000, help="importance samples of the test NLL")
    parser.add_argument("--test-subset", type=int, default=200,
                        help="a seeded random N binarized-MNIST test images for the NLL (0 = all 10,000)")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (small networks on a shared CPU run fastest on one)")
    parser.add_argument("--out", type=Path, help="folder for the sample grids")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    nll_rows = likelihood_rows(args, device) if args.binarized and args.likelihood_models else []
    probe_rows = representation_rows(args, device) if args.mnist and args.code_models else []

    print(f"\ndevice: {device} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads), "
          f"budget {args.minutes} min per model, {time.perf_counter() - started:.0f} s in all")
    if nll_rows:
        print(f"\nbinarized MNIST (static), test NLL in nats on {args.test_subset or 10000} seeded random test images")
        print(f"{'model':14} {'NLL':>8} {'k':>6} {'epochs':>7} {'eval s':>7}  published")
        for r in nll_rows:
            print(f"{r['model']:14} {r['test_nll_nats']:>8.2f} {r['iwae_k']:>6} {r['epochs']:>7.2f} "
                  f"{r['eval_seconds']:>7.1f}  {r['published']}")
    if probe_rows:
        print("\nMNIST (pixel > 0.5), label accuracy from codes learned without labels (10,000 test digits)")
        print(f"{'model':10} {'latent':>6} {'linear':>7} {'5-NN':>7} {'majority':>8} {'epochs':>7}")
        for r in probe_rows:
            print(f"{r['model']:10} {r['latent_dim']:>6} {r['linear_probe_accuracy']:>7.4f} {r['knn_accuracy']:>7.4f} "
                  f"{r['majority_class_accuracy']:>8.4f} {r['epochs']:>7.2f}")
    print("command: python " + " ".join(sys.argv))
    print(json.dumps({"likelihood": nll_rows, "representation": probe_rows}))


if __name__ == "__main__":
    main()
