"""Benchmark: NADE training and cached autoregressive sampling, each beside the plain way, in one run.

    python benchmarks/speed.py --seconds 4 --before-budget 60

* NADE (28x28 binary, H = 500): training images/s of the model (components/layers/nade.py: one pass
  over cache-sized blocks of pixels) against a plain NADE written here that loops over the 784 pixels
  with autograd, at batch 64 and 512, 1 and 2 torch threads. The two alternate step by step (one
  Adam step each) so that a shared machine's load falls on both; the fastest step of each is reported
  (load only ever slows a step down). `indexed loop`: the same loop indexing V[d] and W[:, d], whose
  backward writes a whole-V zero tensor per pixel. `previous`: the code this replaced (autograd through NADE's
  `conditionals`, 16-pixel blocks). The ceilings: what one sigmoid, or one multiply, over every
  (image, pixel, hidden unit) element alone would allow.
* RNADE (28x28 intensities, H = 100, K = 10, the params.yaml default): the same, against its
  per-pixel autograd code, 1 thread.
* Sampling 64 images of 28x28 (random weights; the time does not depend on them) from PixelCNN, Row
  LSTM and Diagonal BiLSTM as in the README's autoregressive table (h = 16, 7 layers, 32 output
  features): before = one pass of the network over the rows down to each pixel (the path before
  caching, `pixel_conditionals`), after = the cached path (`step_conditionals`, what `sample` and
  completion use). The before path runs row by row until --before-budget seconds are spent; when it
  stops early both paths are also timed on the same first rows (the before path's rows get dearer
  further down, so that ratio understates the whole image's).
Random data and weights: no dataset needed.
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from components.data.batch import DataSpec  # noqa: E402
from components.models import build_model  # noqa: E402
from components.models.families.autoregressive import Autoregressive  # noqa: E402

SAMPLERS = {
    "pixelcnn": {"features": 16, "residual_blocks": 7, "output_features": 32},
    "row_lstm": {"features": 16, "layers": 7, "output_features": 32},
    "diagonal_bilstm": {"features": 16, "layers": 7, "output_features": 32},
}


def plain_nade_log_prob(model, x):
    """NADE one pixel at a time through autograd (unbind, not V[d]: indexing's backward would write a
    whole-V zero tensor per pixel)."""
    a, logits = model.c.expand(len(x), -1), []
    for V_d, W_d, x_d in zip(model.V.unbind(0), model.W.T.unbind(0), x.T.unbind(0)):
        logits.append(torch.sigmoid(a) @ V_d)
        a = a + x_d[:, None] * W_d
    return -F.binary_cross_entropy_with_logits(torch.stack(logits, 1) + model.b, x, reduction="none").sum(1)


def indexed_nade_log_prob(model, x):
    """The same loop written the obvious way, indexing V[d] and W[:, d] (as the issue's reference did)."""
    a, logits = model.c.expand(len(x), -1), []
    for d in range(x.shape[1]):
        logits.append(torch.sigmoid(a) @ model.V[d])
        a = a + x[:, d:d + 1] * model.W[:, d]
    return -F.binary_cross_entropy_with_logits(torch.stack(logits, 1) + model.b, x, reduction="none").sum(1)


def plain_rnade_log_prob(model, y):
    """RNADE's dequantized density one pixel at a time through autograd (its code before the one pass)."""
    a, K, log_p = model.c.expand(len(y), -1), model.params.components, 0
    for d, (V_d, W_d, y_d) in enumerate(zip(model.V.unbind(0), model.W.T.unbind(0), y.T.unbind(0))):
        logits, mu, log_sigma = (torch.sigmoid(model.rho[d] * a) @ V_d.T + model.b[d]).split(K, dim=1)
        log_sigma = log_sigma.clamp(-7.0, 3.0)
        log_normal = -0.5 * ((y_d[:, None] - mu) / log_sigma.exp()) ** 2 - log_sigma - 0.5 * math.log(2 * math.pi)
        log_p = log_p + torch.logsumexp(torch.log_softmax(logits, -1) + log_normal, dim=-1)
        a = a + y_d[:, None] * W_d
    return log_p


def train_rates(name: str, batch: int, seconds: float, hidden: int) -> tuple[float, ...]:
    """(ours, plain[, indexed, previous]) training images/s of NADE or RNADE: the fastest Adam step of each,
    alternating."""
    torch.manual_seed(0)
    params, levels = (({"hidden_units": hidden}, 2) if name == "nade"
                      else ({"hidden_units": hidden, "components": 10}, 256))
    ours = build_model(name, DataSpec.single((1, 28, 28), levels), params)
    plain = build_model(name, DataSpec.single((1, 28, 28), levels), params)
    plain.load_state_dict(ours.state_dict())
    if name == "nade":
        x = torch.bernoulli(torch.rand(batch, 784))
        previous, indexed = (build_model(name, DataSpec.single((1, 28, 28), levels), params) for _ in range(2))
        previous.load_state_dict(ours.state_dict())
        indexed.load_state_dict(ours.state_dict())
        steps = {"ours": (ours, lambda: ours.log_prob(x)), "plain": (plain, lambda: plain_nade_log_prob(plain, x)),
                 "indexed": (indexed, lambda: indexed_nade_log_prob(indexed, x)),
                 # the code this replaced: autograd through `conditionals` (16-pixel blocks)
                 "previous": (previous, lambda: Autoregressive.log_prob(previous, x))}
    else:
        y = torch.rand(batch, 784)
        steps = {"ours": (ours, lambda: ours.density_log_prob(y)),
                 "plain": (plain, lambda: plain_rnade_log_prob(plain, y))}
    optimizers = {k: torch.optim.Adam(m.parameters(), lr=1e-3) for k, (m, _) in steps.items()}
    times = {k: [] for k in steps}
    start = time.perf_counter()
    while time.perf_counter() - start < 2 * seconds or min(len(t) for t in times.values()) < 4:
        for key, (model, log_prob) in steps.items():
            tick = time.perf_counter()
            loss = -log_prob().mean()
            optimizers[key].zero_grad()
            loss.backward()
            optimizers[key].step()
            times[key].append(time.perf_counter() - tick)
    return tuple(batch / min(times[k][1:]) for k in steps)


@torch.no_grad()
def elementwise_ceilings(batch: int, hidden: int, block: int = 8, repeats: int = 3) -> tuple[float, float]:
    """Images/s that one sigmoid, or one multiply, over every (image, pixel, hidden unit) element would
    allow, on cache-sized blocks (the least an exact NADE step does: it needs each h_d at least once)."""
    work, out = torch.rand(block, batch, hidden), torch.empty(block, batch, hidden)
    rates = []
    for op in (lambda: torch.sigmoid(work, out=out), lambda: torch.mul(work, 0.5, out=out)):
        best = float("inf")
        for _ in range(repeats):
            tick = time.perf_counter()
            for _ in range(784 // block):
                op()
            best = min(best, time.perf_counter() - tick)
        rates.append(batch / best)
    return tuple(rates)


@torch.no_grad()
def sample_rows(model, n: int, rows: int, cached: bool, generator: torch.Generator, budget: float = float("inf")):
    """Draw the first `rows` rows of n images; returns (seconds, rows done) (stops after `budget` s)."""
    width = model.image_shape[2]
    x, cache = torch.zeros(n, model.num_pixels), {}
    start = time.perf_counter()
    for r in range(rows):
        for step in range(r * width, (r + 1) * width):
            conditionals = model.step_conditionals(x, step, cache) if cached else model.pixel_conditionals(x, step)
            x[:, step] = model.draw(conditionals, generator)
        if time.perf_counter() - start > budget:
            return time.perf_counter() - start, r + 1
    return time.perf_counter() - start, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=4.0, help="time per NADE measurement (each side)")
    parser.add_argument("--hidden", type=int, default=500)
    parser.add_argument("--rnade-hidden", type=int, default=100, help="0: skip RNADE")
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 512])
    parser.add_argument("--threads", type=int, nargs="*", default=[1, 2], help="none: skip NADE")
    parser.add_argument("--samplers", nargs="*", default=list(SAMPLERS), choices=list(SAMPLERS))
    parser.add_argument("--sample-threads", type=int, default=1)
    parser.add_argument("--before-budget", type=float, default=60.0,
                        help="seconds for the uncached sampler per model (it stops after the row that passes it)")
    args = parser.parse_args()
    print("command: python " + " ".join(sys.argv))
    print(f"device: CPU ({platform.processor() or platform.machine()}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads available; figures from a shared machine are noisy, the "
          "ratios (measured alternately, in one run) are what count\n")

    if args.threads:
        print(f"NADE training, 28x28 binary, H={args.hidden}, Adam steps (fastest of each)")
        print(f"{'threads':>7} {'batch':>5} {'ours img/s':>10} {'plain loop img/s':>16} {'ratio':>6} "
              f"{'indexed loop':>13} {'ratio':>6} {'previous img/s':>14}   "
              "ceilings: one sigmoid / one multiply per (image, pixel, hidden) element")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for batch in args.batches:
            ours, plain, indexed, previous = train_rates("nade", batch, args.seconds, args.hidden)
            sigmoid, multiply = elementwise_ceilings(batch, args.hidden)
            print(f"{threads:>7} {batch:>5} {ours:>10.0f} {plain:>16.0f} {ours / plain:>5.1f}x "
                  f"{indexed:>13.0f} {ours / indexed:>5.1f}x {previous:>14.0f}   "
                  f"{sigmoid:.0f} / {multiply:.0f} img/s", flush=True)

    if args.rnade_hidden:
        torch.set_num_threads(1)
        print(f"\nRNADE training, 28x28 intensities, H={args.rnade_hidden}, K=10, 1 thread, against its "
              "per-pixel autograd code")
        for batch in args.batches:
            ours, plain = train_rates("rnade", batch, args.seconds, args.rnade_hidden)
            print(f"  batch {batch:>3}: {ours:.0f} img/s vs {plain:.0f} img/s: {ours / plain:.1f}x", flush=True)

    torch.set_num_threads(args.sample_threads)
    print(f"\nSampling 64 images of 28x28, {args.sample_threads} thread(s), seconds")
    for name in args.samplers:
        model = build_model(name, DataSpec.single((1, 28, 28)), SAMPLERS[name]).eval()
        after, _ = sample_rows(model, 64, 28, True, torch.Generator().manual_seed(0))
        before, rows = sample_rows(model, 64, 28, False, torch.Generator().manual_seed(0), args.before_budget)
        line = f"{name:>16} {SAMPLERS[name]}: after (cached) {after:.2f} s"
        if rows == 28:
            line += f", before (full pass per pixel) {before:.2f} s: {before / after:.1f}x"
        else:
            after_rows, _ = sample_rows(model, 64, rows, True, torch.Generator().manual_seed(0))
            line += (f"; first {rows} rows: before {before:.2f} s, after {after_rows:.2f} s: "
                     f"{before / after_rows:.1f}x (the before path stopped at its budget)")
        print(line, flush=True)


if __name__ == "__main__":
    main()
