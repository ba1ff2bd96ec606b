"""Benchmark: the adversarial family on MNIST, and DCGAN's training speed through `fit` beside a plain loop.

    python benchmarks/adversarial.py --mnist ../shared/data/mnist --minutes 1.5 --threads 1

1. Speed, in one process (runs first: it is quick). DCGAN training images/s through genzoo's `fit`
   (the real loop, taking `run.checkpoint()` and `torch.save`-ing it to a temporary file after every
   epoch, as the Ray adapter does) against a plain PyTorch loop written here over the same model
   object's generator and discriminator, the same loss object, the same Adam optimizers
   (`model.configure_optimizers`), batch size and batches. The two alternate A/B/A/B, one round of
   `--speed-epochs` epochs each, after one warm-up round of each that is not counted; the median
   round of each is reported and the ratio of the medians (genzoo / plain; above 1: genzoo faster),
   with the range of the per-round ratios. `fit` is given no validation data, so both arms do the
   same training work and the difference is the loop, its per-step metrics and the checkpoints.
   On 28x28 MNIST and on the 8x8 bundled digits (the default pipeline's data).
2. MNIST quality (28x28, intensities in [0, 1]; ProGAN grows to 32x32, padding the digits itself).
   dcgan, cgan, infogan, gan_cls and progan are each trained with `fit` for `--minutes` on a seeded
   `--train-subset` of MNIST's 50,000 training images, the batches carrying labels and captions
   (captions from components/data/captions.py, tokenized by `DataSpec.tokenize` with the training
   captions' vocabulary). An evaluation classifier (components/classifier.py) is trained here on
   the same subset for `--classifier-epochs` epochs; in its features FID, KID, precision/recall and
   class coverage of `--samples` samples against `--reference` seeded MNIST test images, beside the
   real-data floor (the same test images against as many held-out training images, MNIST's last
   10,000, never trained on), as pipelines/evaluate.py computes them. cgan: samples asked for class
   k (every class equally often) classified as k. gan_cls: the same for captions naming class k in
   the two phrasings held out of training (`captions.phrasings`), so the wording was never read
   (its FID is of those samples too). infogan (its `evaluation_metrics`): generator side, `--samples`
   / 10 samples per value of its categorical code classified by the evaluation classifier, values
   matched to classes one-to-one (Hungarian); Q side, Q's reading of all 10,000 test digits matched
   to their labels the same way; beside the paper's ~95% (5% error, Chen et al. 2016, section 7.1).
   Each model trains with its authors' Adam rates per optimizer (OPTIMIZERS below). The models' own evaluation
   hooks, as evaluate runs them (judged against the same test images, the training subset as the
   per-class floor): cgan and gan_cls per-class FID (`--samples` / 10 per class) beside the floor;
   gan_cls accuracy on held-out vs training phrasings with the same noise; progan FID of the samples
   kept as each phase ended, against the test images averaged down to that resolution.

Widths are smaller than the papers' (MODELS below) and the budgets are minutes where the papers
train for hours: the table says how far each model got (images shown, epochs of the subset).
An "epoch" of `fit` here is `--epoch-images` images (a fresh seeded draw from the subset each
time), so progress lines, ProGAN's phase changes (which happen at epoch ends) and the budget
check keep a useful cadence. Prints each row when done, then the tables and the command.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from components.classifier import accuracy_of, predict, train_classifier  # noqa: E402
from components.data.batch import Batch, DataSpec  # noqa: E402
from components.data.captions import caption_length, make_captions, phrasings, vocabulary  # noqa: E402
from components.data.sources import load_source  # noqa: E402
from components.metrics.sample_quality import SampleJudge, conditional_accuracy, sample_quality  # noqa: E402
from components.models import build_model  # noqa: E402
from components.models.families.adversarial import to_signed  # noqa: E402
from components.training import Settings, final_weights, fit  # noqa: E402
from budget import CheckpointEachEpoch, alternated_rounds, fit_rate, fmt, seeded_subset  # noqa: E402
from components.training.callbacks import Budget, Progress  # noqa: E402
from components.training.memory import batches  # noqa: E402

# key -> (params, batch size, lr, ema_decay). Smaller than the papers' networks so that a CPU
# budget of minutes shows them a few epochs of the subset.
MODELS = {
    "dcgan": ({"latent_dim": 64, "width": 32}, 64, 2e-4, None),
    "cgan": ({"latent_dim": 64, "noise_units": 256, "label_units": 64, "hidden_units": 512,
              "discriminator_image_units": 240, "discriminator_label_units": 50,
              "discriminator_hidden_units": 240, "maxout_pieces": 5}, 64, 2e-4, None),
    "infogan": ({"latent_dim": 62, "categorical": 10, "continuous": 2, "width": 32, "q_units": 128}, 64, 2e-4, None),
    "gan_cls": ({"latent_dim": 64, "embedding_dim": 32, "word_dim": 32, "text_hidden": 32, "width": 32},
                64, 2e-4, None),
    # 4 -> 8 -> 16 -> 32: each new block fades in over half its phase; the last phase runs to the budget.
    # EMA decay 0.99, not the paper's 0.999: a budget of ~700 generator steps would leave 0.999^700 =
    # half of the average on the random initial weights (the paper averages over millions of images).
    "progan": ({"latent_dim": 64, "width": 64, "resolutions": [4, 8, 16, 32],
                "phase_images": [5000, 5000, 10000, 10**9], "phase_batch_sizes": [32, 32, 32, 32]},
               32, 1e-3, 0.99),
}
# Per-optimizer rates beside MODELS' lr (the rest of a model's optimizers): openai/InfoGAN's MNIST run
# trains the generator at 1e-3 and the discriminator with Q at 2e-4.
OPTIMIZERS = {"infogan": {"generator": {"lr": 1e-3}}}
SPEED_PARAMS = {  # image side -> DCGAN params (28: the MNIST row above; 8: params.yaml's dcgan)
    28: {"latent_dim": 64, "width": 32},
    8: {"latent_dim": 32, "width": 64, "extra_layers": 1},
}
CLASS_NAMES = tuple(str(d) for d in range(10))


# --- speed -----------------------------------------------------------------------------------------

def plain_epoch(model, optimizers, data: Batch, batch_size: int, epoch: int) -> int:
    """One epoch of DCGAN's step written inline: the same networks, loss and optimizers, no framework."""
    G, D, loss = model.generator, model.discriminator, model.loss
    opt_d, opt_g = optimizers["discriminator"], optimizers["generator"]
    seen = 0
    for batch in batches(data, batch_size, torch.Generator().manual_seed(epoch)):
        real = to_signed(batch.images)
        fake = G(torch.randn(len(real), model.params.latent_dim))
        d_loss = loss.discriminator(D(real), D(fake.detach()))
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        g_loss = loss.generator(D(fake))
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
        seen += len(real)
    return seen


def speed_row(size: int, images: torch.Tensor, args) -> dict:
    torch.manual_seed(0)
    model = build_model("dcgan", DataSpec.single((1, size, size), 256, pixels="grayscale"), SPEED_PARAMS[size])
    data = Batch(images)
    settings = Settings(epochs=args.speed_epochs, batch_size=args.speed_batch_size, lr=2e-4, patience=10**9)
    checkpoint_shares = []
    with tempfile.TemporaryDirectory() as folder:
        saver = CheckpointEachEpoch(Path(folder) / "state.pt")

        def genzoo() -> float:
            rate, share = fit_rate(model, lambda epoch, bs: batches(data, bs, torch.Generator().manual_seed(epoch)),
                                   settings, saver)
            checkpoint_shares.append(share)
            return rate

        def plain() -> float:
            started = time.perf_counter()
            optimizers = model.configure_optimizers(settings.lr)   # fit makes fresh ones each call, too
            model.train()
            seen = sum(plain_epoch(model, optimizers, data, settings.batch_size, e)
                       for e in range(1, settings.epochs + 1))
            return seen / (time.perf_counter() - started)

        rates = alternated_rounds(genzoo, plain, args.speed_rounds, checkpoint_shares)
    ratios = [g / p for g, p in zip(rates["genzoo"], rates["plain"])]
    row = {"image": f"{size}x{size}", "images_per_round": len(images) * args.speed_epochs,
           "batch_size": args.speed_batch_size, "genzoo_images_per_s": statistics.median(rates["genzoo"]),
           "plain_images_per_s": statistics.median(rates["plain"]),
           "ratio_round_min": min(ratios), "ratio_round_max": max(ratios),
           # load from other work only ever slows a round down: the fastest round of each is the least disturbed
           "ratio_fastest": max(rates["genzoo"]) / max(rates["plain"]),
           "checkpoint_share": statistics.median(checkpoint_shares),
           "genzoo_rounds": [round(r, 1) for r in rates["genzoo"]],
           "plain_rounds": [round(r, 1) for r in rates["plain"]]}
    row["ratio"] = row["genzoo_images_per_s"] / row["plain_images_per_s"]
    print(f"speed {row['image']}: genzoo fit {row['genzoo_images_per_s']:.1f} img/s, plain loop "
          f"{row['plain_images_per_s']:.1f} img/s, ratio {row['ratio']:.3f} (rounds {min(ratios):.3f}.."
          f"{max(ratios):.3f}), fastest rounds' ratio {row['ratio_fastest']:.3f}, checkpoints "
          f"{100 * row['checkpoint_share']:.1f}% of genzoo's time", flush=True)
    return row


def speed_rows(args) -> list[dict]:
    rows = []
    for size in args.speed_sizes:
        if size == 28:
            train = load_source("mnist", path=args.mnist).images["train"]
            images = torch.from_numpy(train[seeded_subset(args.speed_images, len(train))])
        else:
            images = torch.from_numpy(load_source("digits").images["train"])
        rows.append(speed_row(size, images, args))
    return rows


# --- MNIST quality ---------------------------------------------------------------------------------

def captions_of(labels: np.ndarray, split: str) -> list[str]:
    """One caption per label in the phrasings `split` may use (the pipeline's data seed, 0)."""
    return make_captions(split, labels, CLASS_NAMES, ["mnist"] * len(labels), None, (), seed=0)


def with_fields(images: np.ndarray, labels: np.ndarray, captions: list[str], spec: DataSpec) -> Batch:
    tokens = torch.tensor([spec.tokenize(c, spec.caption_length) for c in captions], dtype=torch.int64)
    return Batch(torch.from_numpy(images), labels=torch.from_numpy(labels), captions=captions,
                 caption_tokens=tokens)


def train_budgeted(name: str, spec: DataSpec, train: Batch, valid: Batch, args, device) -> dict:
    """`benchmarks/budget.py`'s `train_within` for batches with labels and captions: `fit` until the
    budget is spent, each epoch `--epoch-images` images drawn afresh from the subset."""
    params, batch_size, lr, ema_decay = MODELS[name]
    torch.manual_seed(0)
    model = build_model(name, spec, params).to(device)
    settings = Settings(epochs=10**9, batch_size=batch_size, lr=lr, patience=10**9, ema_decay=ema_decay,
                        optimizers=OPTIMIZERS.get(name, {}))

    def train_batches(epoch: int, size: int):
        shuffle = torch.Generator().manual_seed(epoch)
        drawn = train.select(torch.randperm(len(train), generator=shuffle)[:args.epoch_images])
        return batches(drawn, size)

    started = time.perf_counter()
    run = fit(model, train_batches, lambda: batches(valid, 500), settings,
              [Budget(args.minutes * 60), Progress(name, show_total=False)], device=device)
    model.load_state_dict(final_weights(run.checkpoint()))
    busy = sum(r["epoch_seconds"] for r in run.state["history"])
    return {"model": model.eval(), "images": run.state["images"], "epochs": run.state["images"] / len(train),
            "images_per_second": run.state["images"] / max(busy, 1e-9),
            "train_seconds": time.perf_counter() - started, "run": run}


@torch.no_grad()
def draw(model, n: int, condition, seed: int) -> np.ndarray:
    """n samples in chunks (conditions split alongside), one seeded generator throughout."""
    generator = torch.Generator().manual_seed(seed)
    out = []
    for start in range(0, n, 500):
        part = None if condition is None else condition[start:start + 500]
        out.append(model.sample(min(500, n - start), condition=part, generator=generator).cpu())
    return torch.cat(out).numpy()


def held_out_captions(n: int) -> tuple[list[str], np.ndarray]:
    """n captions, class i % 10 for the i-th, in the phrasings only the test split uses."""
    asked = np.arange(n) % 10
    return captions_of(asked, "test"), asked


def quality_rows(args, device) -> tuple[list[dict], dict]:
    splits = load_source("mnist", path=args.mnist)
    chosen = seeded_subset(args.train_subset, len(splits.images["train"]))
    train_x, train_y = splits.images["train"][chosen], splits.labels["train"][chosen]
    valid_pick = seeded_subset(args.reference, len(splits.images["valid"]), seed=1)
    valid_x, valid_y = splits.images["valid"][valid_pick], splits.labels["valid"][valid_pick]
    test_pick = seeded_subset(args.reference, len(splits.images["test"]), seed=2)
    test_x, test_y = splits.images["test"][test_pick], splits.labels["test"][test_pick]

    train_captions = captions_of(train_y, "train")
    valid_captions = captions_of(valid_y, "valid")
    vocab = vocabulary(train_captions)
    spec = DataSpec.single((1, 28, 28), 256, pixels="grayscale", source="mnist", class_names=CLASS_NAMES,
                           vocabulary=tuple(vocab), fields=("labels", "captions"),
                           caption_length=caption_length(train_captions + valid_captions
                                                          + captions_of(np.arange(10), "test")))
    train = with_fields(train_x, train_y, train_captions, spec)
    valid = with_fields(valid_x[:500], valid_y[:500], valid_captions[:500], spec)

    print(f"evaluation classifier: {args.classifier_epochs} epochs on the {len(train_x)} training images",
          flush=True)
    started = time.perf_counter()
    classifier, _ = train_classifier(train_x, train_y, valid_x, valid_y, 10, args.classifier_epochs, 128, 1e-3,
                                     seed=0)
    test_accuracy = accuracy_of(classifier, splits.images["test"], splits.labels["test"])
    real_features, _ = predict(classifier, test_x)
    held_features, held_labels = predict(classifier, valid_x)
    floor = sample_quality(real_features.numpy(), held_features.numpy(), held_labels.numpy(), 10, seed=0)
    setup = {"classifier_test_accuracy": test_accuracy, "classifier_epochs": args.classifier_epochs,
             "classifier_seconds": time.perf_counter() - started, "real_data_floor": floor,
             "held_out_phrasings": [i for i in phrasings(0)["test"]]}
    print(f"classifier test accuracy {test_accuracy:.4f}; real-data floor: "
          + ", ".join(f"{k}={v:.4g}" for k, v in floor.items()), flush=True)

    judge = SampleJudge(classifier, test_x, test_y, 10, reference=(train_x, train_y))
    hook_test = Batch(torch.from_numpy(test_x), labels=torch.from_numpy(test_y), captions=captions_of(test_y, "test"))
    hook_settings = {"seed": 0, "num_samples": args.samples, "judge": judge}
    rows = []
    for name in args.models:
        print(f"MNIST: training {name} for {args.minutes} min", flush=True)
        result = train_budgeted(name, spec, train, valid, args, device)
        model, tick = result["model"], time.perf_counter()
        asked = condition = None
        if name == "cgan":
            asked = np.arange(args.samples) % 10
            condition = torch.from_numpy(asked)
        elif name == "gan_cls":
            condition, asked = held_out_captions(args.samples)
        samples = draw(model, args.samples, condition, seed=0)
        fake_features, fake_labels = predict(classifier, samples)
        metrics = sample_quality(real_features.numpy(), fake_features.numpy(), fake_labels.numpy(), 10, seed=0)
        if asked is not None:
            metrics.update(conditional_accuracy(fake_labels.numpy(), asked, 10))
        if name == "infogan":   # generator side judged against the seeded test images; Q side on all 10,000
            test = Batch(torch.from_numpy(splits.images["test"]), labels=torch.from_numpy(splits.labels["test"]))
            metrics.update(model.evaluation_metrics(test, hook_settings))
        if name in ("cgan", "gan_cls", "progan"):   # per-class FID, caption phrasings, per-phase FID
            metrics.update({k: v for k, v in model.evaluation_metrics(hook_test, hook_settings).items()})
        if name == "gan_cls":   # the same classes in the training phrasings, for comparison
            _, seen_labels = predict(classifier, draw(model, args.samples, captions_of(asked, "train"), seed=0))
            metrics["conditional_accuracy_train_phrasings"] = float((seen_labels.numpy() == asked).mean())
        row = {"model": name, **metrics, "images_shown": result["images"], "epochs": result["epochs"],
               "train_images_per_s": result["images_per_second"], "train_seconds": result["train_seconds"],
               "eval_seconds": time.perf_counter() - tick, "params": MODELS[name][0],
               "batch_size": MODELS[name][1], "lr": MODELS[name][2], "optimizers": OPTIMIZERS.get(name, {})}
        if name == "progan":
            row["final_resolution"] = int(4 * 2 ** int(model.level))
            row["final_alpha"] = float(model.alpha)
        print("row " + json.dumps(row), flush=True)
        rows.append(row)
        if args.out:
            from components.plots import image_grid

            args.out.mkdir(parents=True, exist_ok=True)
            image_grid(samples[:100], columns=10, scale=2).save(args.out / f"{name}_samples.png")
    return rows, setup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mnist", required=True, help="folder with the MNIST IDX files")
    parser.add_argument("--parts", nargs="*", default=["speed", "quality"], choices=["speed", "quality"])
    parser.add_argument("--minutes", type=float, default=1.5, help="training budget per model")
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--train-subset", type=int, default=20_000, help="seeded MNIST training images used")
    parser.add_argument("--epoch-images", type=int, default=5_000, help="images per fit epoch (quality part)")
    parser.add_argument("--classifier-epochs", type=int, default=2)
    parser.add_argument("--samples", type=int, default=2_000, help="samples per model for the metrics")
    parser.add_argument("--reference", type=int, default=2_000,
                        help="seeded test images (and as many held-out training images for the floor)")
    parser.add_argument("--speed-images", type=int, default=1_280, help="MNIST images per speed epoch")
    parser.add_argument("--speed-epochs", type=int, default=2, help="epochs per speed round (a checkpoint each)")
    parser.add_argument("--speed-rounds", type=int, default=7)
    parser.add_argument("--speed-batch-size", type=int, default=64)
    parser.add_argument("--speed-sizes", type=int, nargs="*", default=[28, 8], choices=[28, 8],
                        help="28: MNIST (--speed-images of it), 8: the bundled digits' training split")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (small networks on a shared CPU run fastest on one)")
    parser.add_argument("--out", type=Path, help="folder for the sample grids")
    args = parser.parse_args()
    device = torch.device("cpu")   # the speed part compares CPU loops; the quality part follows it
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    speed = speed_rows(args) if "speed" in args.parts else []
    rows, setup = quality_rows(args, device) if "quality" in args.parts else ([], {})

    print(f"\ndevice: {device} ({platform.machine()}, {platform.processor() or 'cpu'}, {os.cpu_count()} cores, "
          f"{torch.get_num_threads()} torch threads), torch {torch.__version__}, {time.perf_counter() - started:.0f} s "
          "in all")
    if speed:
        print(f"\nDCGAN training speed, batch {args.speed_batch_size}, median of {args.speed_rounds} alternated "
              f"rounds of {args.speed_epochs} epochs (genzoo: fit + checkpoint saved each epoch)\n")
        print("| images | genzoo fit (img/s) | plain loop (img/s) | genzoo / plain (medians) | per-round ratios "
              "| fastest rounds' ratio | checkpoint share of genzoo's time |")
        print("|---|---|---|---|---|---|---|")
        for r in speed:
            print(f"| {r['image']} | {r['genzoo_images_per_s']:.1f} | {r['plain_images_per_s']:.1f} | "
                  f"{r['ratio']:.3f} | {r['ratio_round_min']:.3f} to {r['ratio_round_max']:.3f} | "
                  f"{r['ratio_fastest']:.3f} | {100 * r['checkpoint_share']:.1f}% |")
    if rows:
        floor = setup["real_data_floor"]
        print(f"\nMNIST 28x28, {args.minutes} min per model on {args.train_subset} training images; metrics of "
              f"{args.samples} samples vs {args.reference} test images in the features of the evaluation classifier "
              f"({args.classifier_epochs} epochs, test accuracy {setup['classifier_test_accuracy']:.4f})\n")
        print("| model | FID | KID | precision | recall | class coverage | conditional acc. "
              "| code acc. (generator side) | code acc. (Q on real) | images shown (epochs of subset) |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        print(f"| real-data floor | {floor['fid']:.3f} | {floor['kid']:.4f} | {floor['precision']:.3f} | "
              f"{floor['recall']:.3f} | {floor['class_coverage']:.2f} | - | - | - | - |")
        for r in rows:
            conditional = r.get("conditional_accuracy")
            code, q = r.get("categorical_code_accuracy"), r.get("q_accuracy_on_real")
            print(f"| {r['model']} | {r['fid']:.3f} | {r['kid']:.4f} | {r['precision']:.3f} | {r['recall']:.3f} | "
                  f"{r['class_coverage']:.2f} | {fmt(conditional)} | "
                  f"{fmt(code) + ' (paper ~0.95)' if isinstance(code, float) else '-'} | "
                  f"{fmt(q) if isinstance(q, float) else '-'} | {r['images_shown']} ({r['epochs']:.2f}) |")
        for r in rows:
            if "conditional_accuracy_train_phrasings" in r:
                print(f"\ngan_cls conditional accuracy: held-out phrasings {r['conditional_accuracy']:.3f}, "
                      f"training phrasings {r['conditional_accuracy_train_phrasings']:.3f} (chance 0.1)")
            if "final_resolution" in r:
                print(f"progan ended at {r['final_resolution']}x{r['final_resolution']}, alpha {r['final_alpha']:.2f}")
                print("progan FID as each phase ended (against the test images averaged down to that size): "
                      + ", ".join(f"{k[len('fid_phase_'):]}x{k[len('fid_phase_'):]} "
                                  + ("not reached" if isinstance(v, str) else f"{v:.1f}")
                                  for k, v in r.items() if k.startswith("fid_phase_")))
            if "per_class_fid_mean" in r:
                per_class = " ".join(fmt(r.get(f"fid_class_{k}"), 0) for k in range(10))
                print(f"{r['model']} per-class FID (0..9): {per_class}; mean {r['per_class_fid_mean']:.1f}, floor "
                      f"(as many training images per class) {fmt(r.get('real_data_per_class_fid_mean'), 1)}")
            if "heldout_caption_accuracy" in r:
                print(f"gan_cls hook, same noise: held-out phrasings {r['heldout_caption_accuracy']:.3f}, "
                      f"training phrasings {r['train_caption_accuracy']:.3f}")
    print("command: python " + " ".join(sys.argv))
    print(json.dumps({"speed": speed, "quality": rows, "setup": setup}, default=str))


if __name__ == "__main__":
    main()
