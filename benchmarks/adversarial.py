"""Benchmark: the adversarial family on MNIST, and DCGAN's training speed through `fit` beside a plain loop.

    python benchmarks/adversarial.py --mnist ../shared/data/mnist --classifier ../bench/classifier --epochs 2

1. Speed, in one process (runs first: it is quick). DCGAN training images/s through genzoo's `fit`
   (the real loop, taking `run.checkpoint()` and `torch.save`-ing it to a temporary file after every
   epoch, as the Ray adapter does) against a plain PyTorch loop written here over the same model
   object's generator and discriminator, the same loss object, the same Adam optimizers
   (`model.configure_optimizers`), batch size and batches (read once from a prepared folder by the
   streaming reader, the pipeline's data path). The two alternate A/B/A/B, one round of
   `--speed-epochs` epochs each, after one warm-up round of each that is not counted; the median
   round of each is reported and the ratio of the medians (genzoo / plain; above 1: genzoo faster),
   with the range of the per-round ratios. `fit` is given no validation data, so both arms do the
   same training work and the difference is the loop, its per-step metrics and the checkpoints.
   On 28x28 MNIST and on the 8x8 bundled digits (the default pipeline's data).
2. MNIST quality (28x28, intensities in [0, 1]). Each model is its params.yaml entry (architecture,
   optimizers and their rates, schedule, batch size, averaging), trained as the Ray worker trains it:
   `fit` over a prepared Parquet folder of a seeded `--train-subset` of MNIST's 50,000 training
   images (labels, and captions as pipelines/prepare.py writes them: each split its own phrasings)
   through the streaming reader, with sample-quality selection where the model is selected by FID.
   The budget is a number of images, not minutes, so that load from other work on a shared machine
   changes the time, not the figures: `--epochs` of the subset, no early stopping; the CPU seconds
   the training took are printed. Entries are for the 8x8 digits: on 28x28 ProGAN grows 4 -> 8 ->
   16 -> 32 (it pads the digits itself), its phases shares of the budget (PROGAN_PHASES).
   `--components DIR` trains another checkout's components and params.yaml (e.g. the commit before
   a change), judged by this checkout's evaluation code, so before and after are measured alike.
   The evaluation classifier (components/classifier.py; `--classifier`: trained once, then loaded,
   the same network for every run) gives the features of FID, KID, precision/recall and class
   coverage of `--samples` samples against `--reference` seeded MNIST test images, beside the
   real-data floor (the same test images against as many held-out training images, MNIST's last
   10,000, never trained on), as pipelines/evaluate.py computes them (components/metrics/).
   cgan: samples asked for class k (every class equally often) classified as k, per class.
   gan_cls: the same for captions naming class k in the phrasings held out of training
   (`captions.phrasings`), so the wording was never read (its FID is of those samples too), beside
   the training phrasings. infogan: generator side, `--samples` / 10 samples per value of its
   categorical code classified by the evaluation classifier, values matched to classes one-to-one
   (Hungarian); Q side, Q's reading of all 10,000 test digits matched to their labels the same way;
   the paper reaches ~95% (5% error, Chen et al. 2016, section 7.1). progan: its own hook's FID of
   the samples kept as each phase ended, against the test images averaged down to that resolution.

Each run appends its rows to `--rows`; `--table before=FILE after=FILE` prints them side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
# first: budget.py puts the checkout of `--components` on sys.path, before any `components` import
from budget import (COMPONENTS, CheckpointEachEpoch, alternated_rounds, device_line, entry_lookups,  # noqa: E402
                    evaluation_classifier, fit_rate, fmt, read_rows, seeded_subset, source_arrays,
                    write_prepared)
from components.classifier import predict  # noqa: E402
from components.config import load_params  # noqa: E402
from components.data.batch import Batch, DataSpec  # noqa: E402
from components.data.captions import caption_length, make_captions, vocabulary  # noqa: E402
from components.data.prepared import read_spec  # noqa: E402
from components.data.streaming import eval_batches, stream_batches  # noqa: E402
from components.metrics.clustering import unsupervised_accuracy  # noqa: E402
from components.metrics.sample_quality import SampleJudge, conditional_accuracy, sample_quality  # noqa: E402
from components.models import build_model  # noqa: E402
from components.models.families.adversarial import to_signed  # noqa: E402
from components.training import Settings, final_weights, fit  # noqa: E402
from components.training.callbacks import Progress  # noqa: E402
from components.training.selection import SAMPLE_QUALITY, sample_quality_from  # noqa: E402

architecture_params, model_entry, training_settings = entry_lookups()

MODELS = ("gan", "dcgan", "cgan", "infogan", "gan_cls", "progan")
# params.yaml's entries are for the 8x8 digits; on 28x28 ProGAN grows 4 -> 8 -> 16 -> 32 (it pads the
# digits itself), each phase a share of the budget (PROGAN_PHASES of the images shown; the last runs to
# the end), each at the entry's minibatch.
PROGAN_RESOLUTIONS, PROGAN_PHASES = [4, 8, 16, 32], [1 / 8, 1 / 8, 1 / 4]
SPEED_PARAMS = {  # image side -> DCGAN params (28: the MNIST row above; 8: params.yaml's dcgan)
    28: {"latent_dim": 64, "width": 32},
    8: {"latent_dim": 32, "width": 64, "extra_layers": 1},
}
CLASS_NAMES = tuple(str(d) for d in range(10))


# --- speed -----------------------------------------------------------------------------------------

def plain_epoch(model, optimizers, drawn: list) -> int:
    """One epoch of DCGAN's step written inline: the same networks, loss and optimizers, no framework."""
    G, D, loss = model.generator, model.discriminator, model.loss
    opt_d, opt_g = optimizers["discriminator"], optimizers["generator"]
    seen = 0
    for batch in drawn:
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


def speed_row(size: int, images: np.ndarray, levels: int, args) -> dict:
    torch.manual_seed(0)
    model = build_model("dcgan", DataSpec.single((1, size, size), 256, pixels="grayscale"), SPEED_PARAMS[size])
    settings = Settings(epochs=args.speed_epochs, batch_size=args.speed_batch_size, lr=2e-4, patience=10**9)
    checkpoint_shares = []
    with tempfile.TemporaryDirectory(prefix="genzoo-adversarial-") as folder:
        prepared = write_prepared({"train": images}, {}, Path(folder) / "data", "speed", levels)
        # the same batches for both arms, read once through the streaming reader: the comparison is of the loops
        drawn = [list(stream_batches(prepared, "train", "grayscale", settings.batch_size, seed=0, epoch=epoch))
                 for epoch in range(1, args.speed_epochs + 1)]
        saver = CheckpointEachEpoch(Path(folder) / "state.pt")

        def genzoo() -> float:
            rate, share = fit_rate(model, lambda epoch, _: iter(drawn[epoch - 1]), settings, saver)
            checkpoint_shares.append(share)
            return rate

        def plain() -> float:
            started = time.perf_counter()
            optimizers = model.configure_optimizers(settings.lr)   # fit makes fresh ones each call, too
            model.train()
            seen = sum(plain_epoch(model, optimizers, epoch) for epoch in drawn)
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
        source = source_arrays("mnist", args.mnist) if size == 28 else source_arrays("digits")
        train = source.images["train"]
        images = train[seeded_subset(args.speed_images, len(train))] if size == 28 else train
        rows.append(speed_row(size, images, source.levels, args))
    return rows


# --- MNIST quality ---------------------------------------------------------------------------------

def captions_of(labels: np.ndarray, split: str) -> list[str]:
    """One caption per label in the phrasings `split` may use (the pipeline's data seed, 0)."""
    return make_captions(split, labels, CLASS_NAMES, ["mnist"] * len(labels), None, (), seed=0)


def mnist_prepared(args, folder: Path) -> dict:
    """The seeded training subset, `--reference` held-out training images (valid: the floor and the
    selection's reference) and `--reference` test images, captioned as pipelines/prepare.py captions
    (each split its own phrasings), written as a prepared folder."""
    splits = source_arrays("mnist", args.mnist)
    picks = {"train": seeded_subset(args.train_subset, len(splits.images["train"])),
             "valid": seeded_subset(args.reference, len(splits.images["valid"]), seed=1),
             "test": seeded_subset(args.reference, len(splits.images["test"]), seed=2)}
    images = {k: splits.images[k][p] for k, p in picks.items()}
    labels = {k: splits.labels[k][p] for k, p in picks.items()}
    captions = {k: captions_of(labels[k], k) for k in picks}
    every = [c for split in captions.values() for c in split]
    meta = {"vocabulary": vocabulary(captions["train"]), "caption_length": caption_length(every)}
    write_prepared(images, labels, folder, "mnist", splits.levels, CLASS_NAMES, captions, meta)
    return {"images": images, "labels": labels, "splits": splits, "folder": folder}


def entry_of(key: str, args) -> tuple[str, dict, dict, str]:
    """(model type, architecture params, training settings, pixels) of the checkout's params.yaml entry, with
    the benchmark's budget (`--epochs` of the subset, no early stopping) and ProGAN's 28x28 phases."""
    params = load_params(COMPONENTS / "params.yaml")
    name, arch = architecture_params(params, key)
    training = {**training_settings(params, key), "epochs": args.epochs, "patience": 10**9}
    if name == "progan":
        budget = args.epochs * args.train_subset
        arch.update(resolutions=PROGAN_RESOLUTIONS, phase_images=[round(f * budget) for f in PROGAN_PHASES] + [10**9],
                    phase_batch_sizes=[arch.get("phase_batch_sizes", [training["batch_size"]])[0]] * 4)
    return name, arch, training, model_entry(params, key).get("pixels", "grayscale")


def train_fixed(key: str, folder: Path, args) -> dict:
    """`fit` on the prepared folder through the streaming reader, as the Ray worker runs it, for the entry's
    settings with `--epochs` of the subset; selection by sample quality (with the evaluation classifier) for
    models selected by FID, as the pipeline selects them. CPU seconds are the process's own."""
    name, arch, training, pixels = entry_of(key, args)
    settings = Settings.from_dict(training)
    torch.manual_seed(settings.seed)
    model = build_model(name, read_spec(folder, pixels), arch)
    quality = None
    if model.selection and model.selection[0] in SAMPLE_QUALITY:
        reference = next(eval_batches(folder, "valid", pixels, batch_size=1 << 62))   # the split as one batch
        quality, _ = sample_quality_from(args.classifier, reference, settings.select_samples, settings.seed)

    def train_data(epoch: int, size: int):
        return stream_batches(folder, "train", pixels, size, seed=settings.seed, epoch=epoch,
                              per_domain=model.unpaired_domains)

    cpu, started = time.process_time(), time.perf_counter()
    run = fit(model, train_data, lambda: eval_batches(folder, "valid", pixels, settings.batch_size), settings,
              [Progress(key, show_total=False)], quality=quality)
    model.load_state_dict(final_weights(run.checkpoint()))
    return {"model": model.eval(), "images": run.state["images"], "epochs": run.state["epoch"],
            "cpu_seconds": time.process_time() - cpu, "train_seconds": time.perf_counter() - started,
            "settings": {k: v for k, v in training.items() if k not in ("patience",)}, "params": arch,
            "pixels": pixels, "selected_epoch": (run.checkpoint().get("selection") or {}).get("best_epoch")}


@torch.no_grad()
def draw(model, n: int, condition, seed: int) -> np.ndarray:
    """n samples in chunks (conditions split alongside), one seeded generator throughout."""
    generator = torch.Generator().manual_seed(seed)
    out = []
    for start in range(0, n, 500):
        part = None if condition is None else condition[start:start + 500]
        out.append(model.sample(min(500, n - start), condition=part, generator=generator).cpu())
    return torch.cat(out).numpy()


def per_class_accuracy(predicted: np.ndarray, asked: np.ndarray) -> dict:
    return {f"conditional_accuracy_class_{k}": float((predicted[asked == k] == k).mean()) for k in range(10)}


@torch.no_grad()
def code_accuracy(model, judge: SampleJudge, splits, samples: int) -> dict:
    """InfoGAN's categorical code, measured the same way for every checkout (the model's own hook reports
    different things at different commits): generator side, `samples` / 10 samples per code value (z and
    the continuous codes from their priors) classified by the evaluation classifier, values matched to
    classes one-to-one (Hungarian); Q side, Q's argmax on all 10,000 test digits matched to their labels."""
    k = model.params.categorical
    generator = torch.Generator().manual_seed(0)
    values = torch.arange(k).repeat_interleave(samples // k)
    _, continuous = model.draw_codes(len(values), generator)
    images = torch.cat([model.sample_with_codes(values[i:i + 500], continuous[i:i + 500], generator).cpu()
                        for i in range(0, len(values), 500)])
    test = torch.from_numpy(splits.images["test"])
    inferred = torch.cat([model.encode(test[i:i + 500])[:, :k].argmax(1).cpu() for i in range(0, len(test), 500)])
    return {"code_accuracy_generator": judge.matched_accuracy(images, values.numpy()),
            "code_accuracy_q_on_real": unsupervised_accuracy(inferred.numpy(), splits.labels["test"])}


def quality_row(key: str, args) -> tuple[dict, dict]:
    with tempfile.TemporaryDirectory(prefix="genzoo-adversarial-") as temporary:
        data = mnist_prepared(args, Path(temporary) / "mnist")
        classifier, card = evaluation_classifier(args.classifier, data["splits"], args.classifier_images,
                                                 args.classifier_epochs)
        test_x, test_y, valid_x = data["images"]["test"], data["labels"]["test"], data["images"]["valid"]
        real_features, _ = predict(classifier, test_x)
        held_features, held_labels = predict(classifier, valid_x)
        floor = sample_quality(real_features.numpy(), held_features.numpy(), held_labels.numpy(), 10, seed=0)
        setup = {"classifier": card, "real_data_floor": floor}
        print(f"{key}: {args.epochs} epochs of {args.train_subset} MNIST images, components of {COMPONENTS}",
              flush=True)
        result = train_fixed(key, data["folder"], args)
    model, tick = result["model"], time.perf_counter()
    judge = SampleJudge(classifier, test_x, test_y, 10, reference=(data["images"]["train"], data["labels"]["train"]))
    asked = condition = None
    if key == "cgan":
        asked = np.arange(args.samples) % 10
        condition = torch.from_numpy(asked)
    elif key == "gan_cls":   # captions naming class i % 10 in the phrasings only the test split uses
        asked = np.arange(args.samples) % 10
        condition = captions_of(asked, "test")
    samples = draw(model, args.samples, condition, seed=0)
    fake_features, fake_labels = predict(classifier, samples)
    metrics = sample_quality(real_features.numpy(), fake_features.numpy(), fake_labels.numpy(), 10, seed=0)
    if asked is not None:
        metrics.update(conditional_accuracy(fake_labels.numpy(), asked, 10))
        metrics.update(per_class_accuracy(fake_labels.numpy(), asked))
    if key == "gan_cls":   # the same classes in the training phrasings, for comparison
        _, seen = predict(classifier, draw(model, args.samples, captions_of(asked, "train"), seed=0))
        metrics["conditional_accuracy_train_phrasings"] = float((seen.numpy() == asked).mean())
    if key == "infogan":
        metrics.update(code_accuracy(model, judge, data["splits"], args.samples))
    if key == "progan":   # its own hook: FID of the samples kept as each phase ended
        hook_test = Batch(torch.from_numpy(test_x), labels=torch.from_numpy(test_y))
        metrics.update({k: v for k, v in model.evaluation_metrics(hook_test, {"seed": 0, "num_samples": args.samples,
                                                                              "judge": judge}).items()
                        if k.startswith("fid_phase_")})
        metrics["final_resolution"] = int(4 * 2 ** int(model.level))
    row = {"model": key, "components": str(COMPONENTS), **metrics, "images_shown": result["images"],
           "epochs": result["epochs"], "cpu_seconds": result["cpu_seconds"], "train_seconds": result["train_seconds"],
           "eval_seconds": time.perf_counter() - tick, "settings": result["settings"], "params": result["params"],
           "pixels": result["pixels"], "selected_epoch": result["selected_epoch"]}
    print("row " + json.dumps(row, default=str), flush=True)
    if args.out:
        from components.plots import image_grid

        args.out.mkdir(parents=True, exist_ok=True)
        image_grid(samples[:100], columns=10, scale=2).save(args.out / f"{key}_samples.png")
    return row, setup


# --- report -----------------------------------------------------------------------------------------

def quality_table(sides: dict[str, dict[str, dict]], setup: dict, args) -> list[str]:
    """sides: side name -> model -> row. One line per model and side."""
    floor, card = setup["real_data_floor"], setup["classifier"]
    lines = [f"MNIST 28x28. Budget per model: the images shown below (epochs of a seeded {args.train_subset}-image "
             "MNIST training subset), the same for every side; each side's own params.yaml entry otherwise (its "
             "optimizers, rates, schedules, batch sizes; no early stopping); seed 0. Metrics of "
             f"{args.samples} samples against {args.reference} seeded test images in the features of the evaluation "
             f"classifier ({card['epochs']} epochs on {card['images']} training images, test accuracy "
             f"{card['test_accuracy']:.4f}); CPU s: the training's CPU time in its process.", "",
             "| model | side | FID | KID | precision | recall | class coverage | conditional acc. "
             "| code acc. generator side | code acc. Q on real | images shown | CPU s (train) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|",
             f"| real-data floor | - | {floor['fid']:.3f} | {floor['kid']:.4f} | {floor['precision']:.3f} | "
             f"{floor['recall']:.3f} | {floor['class_coverage']:.2f} | - | - | - | - | - |"]
    models = [m for m in MODELS if any(m in rows for rows in sides.values())]
    for m in models:
        for side, rows in sides.items():
            r = rows.get(m)
            if r is None:
                continue
            lines.append(f"| {m} | {side} | {r['fid']:.3f} | {r['kid']:.4f} | {r['precision']:.3f} | "
                         f"{r['recall']:.3f} | {r['class_coverage']:.2f} | {fmt(r.get('conditional_accuracy'))} | "
                         f"{fmt(r.get('code_accuracy_generator'))} | {fmt(r.get('code_accuracy_q_on_real'))} | "
                         f"{r['images_shown']} | {r['cpu_seconds']:.0f} |")
    conditional = [(m, side, r) for m in models for side, rows in sides.items()
                   if (r := rows.get(m)) and "conditional_accuracy_class_0" in r]
    if conditional:
        lines += ["", "Conditional accuracy per class (samples asked for class k that the evaluation classifier "
                  "reads as k; gan_cls: captions in the held-out phrasings)", "",
                  "| model | side | " + " | ".join(str(k) for k in range(10)) + " | all | min |",
                  "|---|---|" + "---|" * 12]
        for m, side, r in conditional:
            per = [r[f"conditional_accuracy_class_{k}"] for k in range(10)]
            lines.append(f"| {m} | {side} | " + " | ".join(f"{v:.2f}" for v in per)
                         + f" | {r['conditional_accuracy']:.3f} | {min(per):.2f} |")
        for m, side, r in conditional:
            if "conditional_accuracy_train_phrasings" in r:
                lines.append(f"\ngan_cls {side}: held-out phrasings {r['conditional_accuracy']:.3f}, training "
                             f"phrasings {r['conditional_accuracy_train_phrasings']:.3f} (chance 0.1)")
    for side, rows in sides.items():
        r = rows.get("progan")
        if r:
            phases = ", ".join(f"{k[len('fid_phase_'):]}: " + (v if isinstance(v, str) else f"{v:.1f}")
                               for k, v in r.items() if k.startswith("fid_phase_"))
            lines.append(f"\nprogan {side}: ended at {r['final_resolution']}x{r['final_resolution']}; FID as each phase "
                         f"ended (against the test images averaged down to that size): {phases}")
    lines += ["", "| model | side | settings (params.yaml entry, budget applied) | images shown | epochs "
              "| selected epoch | train wall s | eval wall s |", "|---|---|---|---|---|---|---|---|"]
    for m in models:
        for side, rows in sides.items():
            r = rows.get(m)
            if r:
                shown = {k: v for k, v in r["settings"].items() if k in ("lr", "batch_size", "optimizers", "schedule",
                                                                        "ema_decay", "ema_kimg", "ema_rampup")}
                lines.append(f"| {m} | {side} | `{json.dumps(shown)}` | {r['images_shown']} | {r['epochs']} | "
                             f"{fmt(r['selected_epoch'])} | {r['train_seconds']:.0f} | {r['eval_seconds']:.0f} |")
    return lines


def speed_table(speed: list[dict], args) -> list[str]:
    lines = [f"DCGAN training speed, batch {args.speed_batch_size}, median of {args.speed_rounds} alternated rounds "
             f"of {args.speed_epochs} epochs (genzoo: fit + checkpoint saved each epoch)", "",
             "| images | genzoo fit (img/s) | plain loop (img/s) | genzoo / plain (medians) | per-round ratios "
             "| fastest rounds' ratio | checkpoint share of genzoo's time |", "|---|---|---|---|---|---|---|"]
    for r in speed:
        lines.append(f"| {r['image']} | {r['genzoo_images_per_s']:.1f} | {r['plain_images_per_s']:.1f} | "
                     f"{r['ratio']:.3f} | {r['ratio_round_min']:.3f} to {r['ratio_round_max']:.3f} | "
                     f"{r['ratio_fastest']:.3f} | {100 * r['checkpoint_share']:.1f}% |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mnist", help="folder with the MNIST IDX files")
    parser.add_argument("--components", type=Path, default=COMPONENTS,
                        help="checkout whose components and params.yaml are trained (default: this one); the "
                             "evaluation (classifier, components/metrics) stays this checkout's")
    parser.add_argument("--parts", nargs="*", default=["speed", "quality"], choices=["speed", "quality"])
    parser.add_argument("--epochs", type=int, default=6, help="training budget: epochs of the subset per model")
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--train-subset", type=int, default=5_000, help="seeded MNIST training images trained on")
    parser.add_argument("--classifier", type=Path, required=False,
                        help="folder of the evaluation classifier: loaded if there, else trained and saved there")
    parser.add_argument("--classifier-images", type=int, default=20_000)
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
    parser.add_argument("--rows", type=Path, help="file to append each quality row (JSON, one a line) to")
    parser.add_argument("--table", nargs="*", metavar="SIDE=FILE",
                        help="print the quality table of rows appended by earlier runs (`--rows`), a line per side")
    parser.add_argument("--out", type=Path, help="folder for the sample grids")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    threads = os.environ.get("OMP_NUM_THREADS")
    command = (f"OMP_NUM_THREADS={threads} " if threads else "") + "python " + " ".join(sys.argv)
    if args.table:
        sides, setup = read_rows(args.table)
        print("\n".join(quality_table(sides, setup, args)))
        return
    if not args.mnist or ("quality" in args.parts and not args.classifier):
        parser.error("--mnist is required, and --classifier for the quality part")
    started = time.perf_counter()
    speed = speed_rows(args) if "speed" in args.parts else []
    rows, setup = [], {}
    for key in args.models if "quality" in args.parts else []:
        row, setup = quality_row(key, args)
        rows.append(row)
        if args.rows:
            with args.rows.open("a") as out:
                out.write(json.dumps({"row": row, "setup": setup, "command": command}, default=str) + "\n")
    report = [f"Device: {device_line()}; {time.perf_counter() - started:.0f} s in all.", ""]
    if speed:
        report += speed_table(speed, args) + [""]
    if rows:
        report += quality_table({COMPONENTS.name: {r["model"]: r for r in rows}}, setup, args) + [""]
    print("\n" + "\n".join(report + [f"Command: `{command}`"]))
    print(json.dumps({"speed": speed, "quality": rows, "setup": setup}, default=str))


if __name__ == "__main__":
    main()
