"""Benchmark: the image-to-image family (CycleGAN, StarGAN, Puzzle-GAN) on MNIST, and their training speed
through `fit` beside a plain loop.

    python benchmarks/image_to_image.py --mnist ../shared/data/mnist --classifier ../bench/classifier --epochs 2

Models are params.yaml's `cyclegan`, `stargan` and `puzzle_gan` entries: their architecture, their
training settings (lr, batch size, schedule) and their `domains`, made as the pipeline makes a model
entry's domain view (components/data/domains.py: `domain_view_folder`, disjoint images per domain,
dealt with the data seed and transformed), from a prepared folder written here in a temporary
directory. The one override: Puzzle-GAN's `patch_size: 3` is for 8x8 digits; on 28x28 it takes the
model's own default (0: side // 4 = 7). The MNIST data are read from `--mnist`, never copied.

1. Speed, in one process (runs first). Training images/s of each model through genzoo's `fit` (the
   real loop, taking `run.checkpoint()` and `torch.save`-ing it after every epoch, as the Ray adapter
   does) against a plain PyTorch loop written here over the same model object's networks, loss
   objects and optimizers (`model.configure_optimizers`), on the very same batches (drawn once from
   the streaming reader, `per_domain` for CycleGAN as the Ray worker asks). A/B alternated: one
   warm-up round of each, then `--speed-rounds` rounds of `--speed-epochs` epochs each; the median
   round of each and the ratio of the medians (genzoo / plain; above 1: genzoo faster). `fit` is
   given no validation data, so both arms do the same training work. On 28x28 MNIST and on the
   8x8 bundled digits (the default pipeline's data); at 8x8 also the seconds one epoch of the
   digits' training split takes through `fit` (what benchmarks/image_to_image_timing.py measured).
2. MNIST quality (28x28). Each model is trained with `fit` on the streaming reader for `--epochs`
   (a budget in images, so that load from other work changes the time, not the figures; the CPU
   seconds are printed; no early stopping; the entry's schedule runs over those epochs) on a seeded
   `--train-subset` of MNIST's 50,000 training images (dealt out to its domains), then
   measured on a seeded `--test` images of MNIST's test split (dealt out alike) with the functions
   pipelines/evaluate.py uses:
   - the model's own `evaluation_metrics` hook (CycleGAN: cycle errors, error against the known
     mapping `thicken` beside the identity map's; StarGAN: its own classifier's target accuracy,
     reconstruction error; Puzzle-GAN: mask IoU beside an all-ones mask's, patch L1);
   - CycleGAN and StarGAN: components/metrics/translation.py (translation FID against the target
     domain, label preservation, target classification error of a domain classifier trained on
     `--domain-classifier-images` of the view's training images), each beside the identity map
     (the untranslated sources) and real images of the target (the floor); the round trip plain ->
     each other domain -> plain, read by the evaluation classifier (does the digit survive?);
   - Puzzle-GAN: the completion FID (whole images generated from the test images' key patches
     against the test images; components/metrics/sample_quality.py), beside the real-data floor.
   The evaluation classifier (components/classifier.py) is benchmarks/adversarial.py's (`--classifier`:
   trained once on plain MNIST training images, then loaded): the pipeline's is trained on the
   prepared data, before any model's domain view. `--components DIR` trains another checkout's
   components and params.yaml, judged by this checkout's evaluation code (as in adversarial.py).

The networks are params.yaml's, sized for 8x8 and CPU; budgets are a few epochs where the papers train
for days. Prints each row when done, then the tables and the command; `--results` writes them as markdown;
`--rows` appends the rows to a file and `--table before=FILE after=FILE` prints them side by side.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
# first: budget.py puts the checkout of `--components` on sys.path, before any `components` import
from budget import (COMPONENTS, CheckpointEachEpoch, alternated_rounds, device_line, entry_lookups,  # noqa: E402
                    Arrays, evaluation_classifier, fit_rate, fmt, read_rows, seeded_subset, source_arrays,
                    write_prepared)
from components.classifier import predict  # noqa: E402
from components.config import load_params  # noqa: E402
from components.data.batch import Batch  # noqa: E402
from components.data.domains import domain_view_folder  # noqa: E402
from components.data.prepared import read_spec, read_split  # noqa: E402
from components.data.streaming import eval_batches, stream_batches  # noqa: E402
from components.metrics.sample_quality import sample_quality  # noqa: E402
from components.metrics.translation import translation_metrics  # noqa: E402
from components.models import build_model  # noqa: E402
from components.models.families.adversarial import to_signed  # noqa: E402
from components.training import Settings, final_weights, fit  # noqa: E402
from components.training.callbacks import Progress  # noqa: E402

architecture_params, model_entry, training_settings = entry_lookups()

MODELS = ("cyclegan", "stargan", "puzzle_gan")
SIDE_OVERRIDES = {28: {"puzzle_gan": {"patch_size": 0}}}   # params.yaml's patch_size 3 is for 8x8 digits


# --- data: a prepared folder, and a model entry's view of it, as the pipeline makes them ----------

def prepared_of(splits: Arrays, source: str, folder: Path) -> Path:
    """`splits` as a single-domain prepared folder (budget.py's `write_prepared`), intensities kept."""
    return write_prepared(splits.images, splits.labels, folder, source, splits.levels, splits.class_names)


def entry_of(key: str, side: int) -> tuple[str, dict, dict, str, list | None]:
    """(model type, architecture params, training settings, pixel format, domains) of params.yaml's entry."""
    params = load_params(COMPONENTS / "params.yaml")
    name, arch = architecture_params(params, key)
    arch.update(SIDE_OVERRIDES.get(side, {}).get(key, {}))
    entry = model_entry(params, key)
    return name, arch, training_settings(params, key), entry.get("pixels", "grayscale"), entry.get("domains")


@contextlib.contextmanager
def view_of(prepared: Path, key: str, side: int):
    """(model type, params, settings, pixels, the data folder the model trains on): the entry's domain
    view of `prepared` (train.py's and evaluate.py's `domain_view_folder`), or `prepared` itself."""
    name, arch, settings, pixels, domains = entry_of(key, side)
    with domain_view_folder(prepared, domains, f"models.{key}.domains") as folder:
        yield name, arch, settings, pixels, folder


def built(name: str, arch: dict, pixels: str, folder: Path):
    torch.manual_seed(0)
    return build_model(name, read_spec(folder, pixels), arch)


def train_stream(folder: Path, pixels: str, model, seed: int = 0):
    """(epoch, batch size) -> batches, as the Ray worker streams them (per domain for unpaired models)."""
    return lambda epoch, size: stream_batches(folder, "train", pixels, size, seed=seed, epoch=epoch,
                                              per_domain=model.unpaired_domains)


def as_batch(split) -> Batch:
    """A whole split as one batch with its fields (evaluate.py's `batch`)."""
    tensor = lambda values: None if values is None else torch.from_numpy(values)  # noqa: E731
    return Batch(torch.from_numpy(split.images), labels=tensor(split.labels), attributes=tensor(split.attributes),
                 domains=tensor(split.domains))


# --- speed: each model's step written inline, no framework ----------------------------------------

def step(optimizer, loss: torch.Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def plain_cyclegan(model, optimizers, batch: Batch, count: int) -> None:
    """Zhu et al.'s generator step (adversarial, cycle, identity) then the discriminators' on the pools."""
    from components.models.cyclegan import l1   # the speed part's steps: imported when run (see PLAIN)
    p, loss = model.params, model.loss
    x, y = (to_signed(part.images) for part in batch.by_domain(2))
    fake_y, fake_x = model.G(x), model.F(y)
    cycle = p.lambda_cycle * (l1(model.F(fake_y), x) + l1(model.G(fake_x), y))
    identity = p.lambda_identity * (l1(model.G(y), y) + l1(model.F(x), x))
    adversarial = 2 * (loss.generator(model.D_Y(fake_y)) + loss.generator(model.D_X(fake_x)))
    step(optimizers["generator"], adversarial + cycle + identity)
    shown_y, shown_x = model.pool_Y.query(fake_y.detach()), model.pool_X.query(fake_x.detach())
    step(optimizers["discriminator"], loss.discriminator(model.D_Y(y), model.D_Y(shown_y))
         + loss.discriminator(model.D_X(x), model.D_X(shown_x)))


def plain_stargan(model, optimizers, batch: Batch, count: int) -> None:
    """A critic step (WGAN-GP + domain classification) every batch, a generator step every n_critic-th."""
    p, loss, D = model.params, model.loss, model.discriminator
    x, c_org = to_signed(batch.images), model.real_labels(batch)
    c_trg = c_org[torch.randperm(len(x))]
    src_real, cls_real = D(x)
    fake = model.G(x, c_trg)
    src_fake, _ = D(fake.detach())
    step(optimizers["discriminator"], loss.discriminator(src_real, src_fake)
         + loss.penalty(lambda images: D(images)[0], x, fake)
         + p.lambda_cls * model.classification_loss(cls_real, c_org))
    if count % p.n_critic == 0:
        src_fake, cls_fake = D(fake)
        step(optimizers["generator"], loss.generator(src_fake) + p.lambda_cls * model.classification_loss(
            cls_fake, c_trg) + p.lambda_rec * (x - model.G(fake, c_org)).abs().mean())


def plain_puzzle_gan(model, optimizers, batch: Batch, count: int) -> None:
    """The discriminator on images (generated and mismatched composites as fakes) every batch; the
    generator's adversarial, spatial and appearance terms every `discriminator_steps`-th."""
    from components.models.puzzle_gan import appearance_loss, key_patches, mismatched, spatial_loss
    p, loss, D = model.params, model.loss, model.discriminator
    x = to_signed(batch.images)
    key = key_patches(batch.images, p.patches, model.patch_size)
    generator_step = count % p.discriminator_steps == 0
    with torch.set_grad_enabled(generator_step):
        generated, mask = model.generate(key.patches)
    fakes = torch.cat([generated.detach(), mismatched(x, key.mask)]) if p.mismatched_fakes else generated.detach()
    step(optimizers["discriminator"], loss.discriminator(D(x), D(fakes)) + loss.penalty(D, x, generated.detach()))
    if generator_step:
        lambda_spatial, lambda_appearance = model.weights()
        step(optimizers["generator"], loss.generator(D(generated)) + lambda_spatial * spatial_loss(mask, key.mask)
             + lambda_appearance * appearance_loss(generated, mask, x, key.mask))


# The plain loops restate this checkout's training steps, so their helpers are imported when a loop runs:
# the quality part alone also runs against an older checkout (--components) whose models lack them.
PLAIN = {"cyclegan": plain_cyclegan, "stargan": plain_stargan, "puzzle_gan": plain_puzzle_gan}


def speed_row(key: str, side: int, prepared: Path, args) -> dict:
    with view_of(prepared, key, side) as (name, arch, training, pixels, folder):
        model = built(name, arch, pixels, folder)
        settings = Settings.from_dict({**training, "epochs": args.speed_epochs, "patience": 10**9})
        size = settings.batch_size
        stream = train_stream(folder, pixels, model)
        # the same batches for both arms, read once: the comparison is of the loops, not of the reader
        drawn = [list(itertools.islice(stream(epoch, size), max(1, args.speed_images // size)))
                 for epoch in range(1, args.speed_epochs + 1)]
        view_train = len(read_split(folder, "train").images)
    per_round = sum(len(b) for epoch in drawn for b in epoch)
    shares = []
    plain_steps = [0]   # across rounds, as StarGAN's own step count runs on across fit calls (n_critic)
    with tempfile.TemporaryDirectory() as temporary:
        saver = CheckpointEachEpoch(Path(temporary) / "state.pt")

        def genzoo() -> float:
            rate, share = fit_rate(model, lambda epoch, _: iter(drawn[epoch - 1]), settings, saver)
            shares.append(share)
            return rate

        def plain() -> float:
            started = time.perf_counter()
            optimizers = model.configure_optimizers(settings.lr)   # fit makes fresh ones each call, too
            model.train()
            for epoch in drawn:
                for batch in epoch:
                    plain_steps[0] += 1
                    PLAIN[key](model, optimizers, batch, plain_steps[0])
            return per_round / (time.perf_counter() - started)

        rates = alternated_rounds(genzoo, plain, args.speed_rounds, shares)
    ratios = [g / p for g, p in zip(rates["genzoo"], rates["plain"])]
    row = {"model": key, "image": f"{side}x{side}", "batch_size": settings.batch_size, "images_per_round": per_round,
           "genzoo_images_per_s": statistics.median(rates["genzoo"]),
           "plain_images_per_s": statistics.median(rates["plain"]),
           "ratio_round_min": min(ratios), "ratio_round_max": max(ratios),
           "checkpoint_share": statistics.median(shares), "view_train_images": view_train,
           "genzoo_rounds": [round(r, 1) for r in rates["genzoo"]],
           "plain_rounds": [round(r, 1) for r in rates["plain"]]}
    row["ratio"] = row["genzoo_images_per_s"] / row["plain_images_per_s"]
    # at 8x8, an epoch of the default pipeline's training data (the digits' training split, dealt out to the
    # entry's domains): what a default `dvc repro` pays per epoch; at 28x28 the split is the speed subset only
    row["genzoo_epoch_seconds"] = view_train / row["genzoo_images_per_s"] if side == 8 else None
    print(f"speed {key} {row['image']}: genzoo fit {row['genzoo_images_per_s']:.1f} img/s, plain loop "
          f"{row['plain_images_per_s']:.1f} img/s, ratio {row['ratio']:.3f} (rounds {min(ratios):.3f}.."
          f"{max(ratios):.3f}), checkpoints {100 * row['checkpoint_share']:.1f}% of genzoo's time", flush=True)
    return row


def mnist_splits(args) -> Arrays:
    """MNIST's training subset, `--reference` of its held-out training images (valid), `--test` test images."""
    splits = source_arrays("mnist", args.mnist)
    picks = {"train": seeded_subset(args.train_subset, len(splits.images["train"])),
             "valid": seeded_subset(args.reference, len(splits.images["valid"]), seed=1),
             "test": seeded_subset(args.test, len(splits.images["test"]), seed=2)}
    return Arrays({k: splits.images[k][p] for k, p in picks.items()}, {k: splits.labels[k][p] for k, p in picks.items()},
                  splits.levels, splits.class_names)


def speed_rows(args, folder: Path) -> list[dict]:
    rows = []
    for side in args.speed_sizes:
        if side == 28:
            mnist = mnist_splits(args)
            train = seeded_subset(args.speed_images * (args.speed_epochs + 1) * 4, len(mnist.images["train"]))
            source = Arrays({**mnist.images, "train": mnist.images["train"][train]},
                            {**mnist.labels, "train": mnist.labels["train"][train]}, mnist.levels, mnist.class_names)
            prepared = prepared_of(source, "mnist", folder / "speed-mnist")
        else:
            prepared = prepared_of(source_arrays("digits"), "digits", folder / "speed-digits")
        for key in args.models:
            rows.append(speed_row(key, side, prepared, args))
    return rows


# --- MNIST quality ----------------------------------------------------------------------------------

def train_fixed(key: str, name: str, arch: dict, training: dict, pixels: str, folder: Path, args) -> dict:
    """`fit` on the view through the streaming reader for the entry's settings with `--epochs` epochs (its
    schedule, e.g. a linear decay over the second half, runs over those) and no early stopping."""
    model = built(name, arch, pixels, folder)
    settings = Settings.from_dict({**training, "epochs": args.epochs, "patience": 10**9})
    cpu, started = time.process_time(), time.perf_counter()
    run = fit(model, train_stream(folder, pixels, model, settings.seed),
              lambda: eval_batches(folder, "valid", pixels, 500), settings, [Progress(key, show_total=False)])
    model.load_state_dict(final_weights(run.checkpoint()))
    return {"model": model.eval(), "images": run.state["images"], "steps": run.state["step"],
            "cpu_seconds": time.process_time() - cpu, "train_seconds": time.perf_counter() - started,
            "batch_size": settings.batch_size, "lr": settings.lr,
            "schedule": training.get("schedule") or {"kind": "constant"}}   # the entry's, as plain data


def domain_classifier_subset(train: Batch, count: int) -> Batch:
    """The first count / D training images of each of the D domains (the domain classifier's data)."""
    domains = int(train.domains.max()) + 1
    rows = torch.cat([torch.nonzero(train.domains == d).flatten()[:max(1, count // domains)] for d in range(domains)])
    return train.select(rows)


def quality_rows(args, folder: Path) -> tuple[list[dict], dict]:
    mnist = mnist_splits(args)
    prepared = prepared_of(mnist, "mnist", folder / "mnist")
    classifier, card = evaluation_classifier(args.classifier, source_arrays("mnist", args.mnist),
                                             args.classifier_images, args.classifier_epochs)
    setup = {"classifier": card}
    print(f"evaluation classifier: test accuracy {card['test_accuracy']:.4f}", flush=True)

    rows = []
    for key in args.models:
        with view_of(prepared, key, 28) as (name, arch, training, pixels, view):
            print(f"MNIST: training {key} for {args.epochs} epochs, components of {COMPONENTS}", flush=True)
            result = train_fixed(key, name, arch, training, pixels, view, args)
            model, tick = result["model"], time.perf_counter()
            test, valid, train = (as_batch(read_split(view, split, pixels)) for split in ("test", "valid", "train"))
            metrics = dict(model.evaluation_metrics(test, {"seed": 0}))
            if model.can("translate"):
                # this checkout's translation metrics (--components: the same code for every side); their
                # target_accuracy, of a domain classifier trained here, replaces a model's self-graded one
                metrics.update(translation_metrics(model, test, valid,
                                                   domain_classifier_subset(train, args.domain_classifier_images),
                                                   0, classifier))
            if model.can("complete"):
                # key patches: the model picks its own (evaluate's `completion_observed` is None for it)
                completed = model.complete(test.images, None, torch.Generator().manual_seed(0)).cpu()
                real_features, _ = predict(classifier, test.images)
                for prefix, images in (("completion_", completed), ("real_data_", valid.images)):
                    features, labels = predict(classifier, images)
                    quality = sample_quality(real_features.numpy(), features.numpy(), labels.numpy(), 10, seed=0)
                    metrics.update({prefix + k: v for k, v in quality.items()})
            row = {"model": key, "components": str(COMPONENTS), **metrics, "images_shown": result["images"],
                   "steps": result["steps"], "epochs": result["images"] / len(train), "train_images": len(train),
                   "test_images": len(test), "cpu_seconds": result["cpu_seconds"],
                   "train_seconds": result["train_seconds"], "eval_seconds": time.perf_counter() - tick,
                   "batch_size": result["batch_size"], "lr": result["lr"], "schedule": result["schedule"],
                   "params": arch, "domains": model.spec.domain_names}
            print("row " + json.dumps(row, default=str), flush=True)
            rows.append(row)
            if args.out:
                from pipelines.evaluate import figures_of   # the grids evaluate draws (imports MLflow: only here)
                from components.plots import plt

                args.out.mkdir(parents=True, exist_ok=True)
                for file, picture in figures_of(model, key, test, None, {"seed": 0}).items():
                    target = args.out / f"{key}_{file}"
                    picture.savefig(target, dpi=90) if isinstance(picture, plt.Figure) else picture.save(target)
    return rows, setup


# --- report -----------------------------------------------------------------------------------------

def tables(speed: list[dict], sides: dict[str, dict[str, dict]], setup: dict, args) -> list[str]:
    """sides: side name (a checkout) -> model -> quality row."""
    lines = []
    if speed:
        lines += [f"Training speed, params.yaml's batch sizes, median of {args.speed_rounds} alternated rounds of "
                  f"{args.speed_epochs} epochs (genzoo: fit + checkpoint saved each epoch; plain: the same "
                  "networks, losses, optimizers and batches in a loop written inline)", "",
                  "| model | images | batch | genzoo fit (img/s) | plain loop (img/s) | genzoo / plain | per-round ratios "
                  "| checkpoint share | genzoo s per epoch of the digits' training split |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in speed:
            lines.append(f"| {r['model']} | {r['image']} | {r['batch_size']} | {r['genzoo_images_per_s']:.1f} | "
                         f"{r['plain_images_per_s']:.1f} | {r['ratio']:.3f} | {r['ratio_round_min']:.3f} to "
                         f"{r['ratio_round_max']:.3f} | {100 * r['checkpoint_share']:.1f}% | "
                         + ("-" if r["genzoo_epoch_seconds"] is None else
                            f"{r['genzoo_epoch_seconds']:.1f} ({r['view_train_images']} images)") + " |")
        lines.append("")
    if sides:
        card = setup["classifier"]
        names = list(sides)
        lines += [f"MNIST 28x28. Budget per model: the images shown below (epochs of its share of a seeded "
                  f"{args.train_subset}-image training subset, dealt out to the model's domains), the same "
                  "for every side; each side's own params.yaml entry otherwise (architecture, optimizer rates, batch "
                  "size, schedule run over those epochs; no early stopping); seed 0. Measured on "
                  f"{args.test} seeded test images (dealt alike). Evaluation classifier: {card['epochs']} epoch(s) on "
                  f"{card['images']} plain MNIST training images, test accuracy {card['test_accuracy']:.4f}.", "",
                  f"| model | metric | {' | '.join(names)} | identity map / all-ones mask | real images (floor) |",
                  "|---|---|" + "---|" * (len(names) + 2)]
        shown = [("round_trip_label_preservation", "round trip plain -> other -> plain keeps the digit, "
                  "evaluation classifier (higher better)"),
                 ("target_accuracy", "target domain classifier accepts the translation (higher better)"),
                 ("label_preservation", "one-way label preservation (higher better)"),
                 ("translation_fid", "translation FID vs target domain (lower better)"),
                 ("known_mapping_error", "mean abs. error vs thicken(x) (lower better)"),
                 ("cycle_error_x", "cycle error x -> y -> x"),
                 ("aux_classifier_target_accuracy", "target accuracy by its own D_cls (self-graded)"),
                 ("reconstruction_error", "reconstruction error"),
                 ("mask_iou", "mask IoU (higher better)"), ("patch_l1", "patch L1 (lower better)"),
                 ("completion_fid", "completion FID vs test images (lower better)")]
        baseline = {"known_mapping_error": "known_mapping_error_of_identity", "mask_iou": "mask_iou_of_all_ones",
                    "target_accuracy": None}
        floor = {"completion_fid": "real_data_fid", "target_accuracy": None}
        for model in MODELS:
            present = [rows[model] for rows in sides.values() if model in rows]
            for metric, label in shown:
                if not any(metric in r for r in present):
                    continue
                first = next(r for r in present if metric in r)
                base_key = baseline.get(metric, f"{metric}_of_identity")
                real_key = floor.get(metric, f"{metric}_of_real")
                values = " | ".join(fmt(rows.get(model, {}).get(metric)) for rows in sides.values())
                lines.append(f"| {model} | {label} | {values} | {fmt(first.get(base_key) if base_key else None)} | "
                             f"{fmt(first.get(real_key) if real_key else None)} |")
        lines += ["", "| model | side | domains | images shown (epochs of its training images) | steps | batch | lr "
                  "| schedule | CPU s (train) | train wall s | eval wall s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for model in MODELS:
            for side, rows in sides.items():
                r = rows.get(model)
                if r:
                    lines.append(f"| {model} | {side} | {', '.join(r['domains'])} | {r['images_shown']} "
                                 f"({r['epochs']:.2f} of {r['train_images']}) | {r['steps']} | {r['batch_size']} | "
                                 f"{r['lr']:g} | {r['schedule'].get('kind', 'constant')} | {r['cpu_seconds']:.0f} | "
                                 f"{r['train_seconds']:.0f} | {r['eval_seconds']:.0f} |")
        lines.append("")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mnist", help="folder with the MNIST IDX files")
    parser.add_argument("--components", type=Path, default=COMPONENTS,
                        help="checkout whose components and params.yaml are trained (default: this one); the "
                             "evaluation (classifier, components/metrics) stays this checkout's")
    parser.add_argument("--parts", nargs="*", default=["speed", "quality"], choices=["speed", "quality"])
    parser.add_argument("--epochs", type=int, default=2,
                        help="training budget: epochs of the model's view of the training subset")
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--train-subset", type=int, default=12_000, help="seeded MNIST training images used")
    parser.add_argument("--test", type=int, default=4_000, help="seeded MNIST test images measured on")
    parser.add_argument("--reference", type=int, default=2_000,
                        help="seeded held-out training images (MNIST's last 10,000): validation and the floor")
    parser.add_argument("--classifier", type=Path,
                        help="folder of the evaluation classifier: loaded if there, else trained and saved there")
    parser.add_argument("--classifier-images", type=int, default=20_000)
    parser.add_argument("--classifier-epochs", type=int, default=2)
    parser.add_argument("--domain-classifier-images", type=int, default=1_600,
                        help="training images (split evenly over the domains) of the domain classifier")
    parser.add_argument("--speed-images", type=int, default=256, help="images per speed epoch")
    parser.add_argument("--speed-epochs", type=int, default=2, help="epochs per speed round (a checkpoint each)")
    parser.add_argument("--speed-rounds", type=int, default=3)
    parser.add_argument("--speed-sizes", type=int, nargs="*", default=[28, 8], choices=[28, 8],
                        help="28: MNIST, 8: the bundled digits (the default pipeline's data)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (small networks on a shared CPU run fastest on one)")
    parser.add_argument("--out", type=Path, help="folder for evaluate's grids of each model")
    parser.add_argument("--rows", type=Path, help="file to append each quality row (JSON, one a line) to")
    parser.add_argument("--table", nargs="*", metavar="SIDE=FILE",
                        help="print the quality table of rows appended by earlier runs (`--rows`), a column per side")
    parser.add_argument("--results", type=Path, help="markdown file to write the tables, device and command to")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    threads = os.environ.get("OMP_NUM_THREADS")   # part of how the figures were made: shown with the command
    command = (f"OMP_NUM_THREADS={threads} " if threads else "") + "python " + " ".join(sys.argv)
    if args.table:
        sides, setup = read_rows(args.table)
        print("\n".join(tables([], sides, setup, args)))
        return
    if not args.mnist or ("quality" in args.parts and not args.classifier):
        parser.error("--mnist is required, and --classifier for the quality part")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="genzoo-i2i-") as temporary:
        speed = speed_rows(args, Path(temporary)) if "speed" in args.parts else []
        rows, setup = quality_rows(args, Path(temporary)) if "quality" in args.parts else ([], {})
    if args.rows:
        with args.rows.open("a") as out:
            for row in rows:
                out.write(json.dumps({"row": row, "setup": setup, "command": command}, default=str) + "\n")
    report = [f"Device: {device_line()}; {time.perf_counter() - started:.0f} s in all.", "",
              *tables(speed, {COMPONENTS.name: {r["model"]: r for r in rows}} if rows else {}, setup, args),
              f"Command: `{command}`"]
    print("\n" + "\n".join(report))
    print(json.dumps({"speed": speed, "quality": rows, "setup": setup}, default=str))
    if args.results:
        args.results.write_text("# Image-to-image benchmark: figures as printed\n\n" + "\n".join(report) + "\n")


if __name__ == "__main__":
    main()
