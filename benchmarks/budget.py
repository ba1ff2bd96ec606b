"""Shared by the benchmarks: train a model in-process under a wall-clock budget, with the pipeline's `fit`
and its data path (a prepared Parquet folder read by the streaming reader, as the Ray worker reads it);
what the Ray adapter adds per epoch; a seeded subset of a split; a table cell."""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def components_checkout(argv: list[str]) -> Path:
    """The checkout whose components (models, data path, training loop) and params.yaml a benchmark trains:
    `--components DIR` on its command line (e.g. a worktree of the commit before a change), else this one.
    What measures them, the evaluation classifier (components/classifier.py) and components/metrics/,
    stays this checkout's, so that two checkouts are judged by the same code."""
    chosen = Path(argv[argv.index("--components") + 1]).resolve() if "--components" in argv else ROOT
    sys.path.insert(0, str(chosen))
    if chosen != ROOT:
        import importlib.util

        import components
        import components.metrics

        components.metrics.__path__ = [str(ROOT / "components" / "metrics")]
        spec = importlib.util.spec_from_file_location("components.classifier", ROOT / "components" / "classifier.py")
        classifier = importlib.util.module_from_spec(spec)
        sys.modules["components.classifier"] = classifier
        spec.loader.exec_module(classifier)
        components.classifier = classifier
    return chosen


COMPONENTS = components_checkout(sys.argv)   # before any other `components` import

from components.classifier import accuracy_of, load_classifier, save_classifier, train_classifier  # noqa: E402
from components.data.batch import DataSpec  # noqa: E402
from components.data.prepared import write_split  # noqa: E402
from components.data.sources import load_source  # noqa: E402
from components.data.streaming import eval_batches, stream_batches  # noqa: E402
from components.models import build_model  # noqa: E402
from components.training import Callback, Settings, final_weights, fit  # noqa: E402
from components.training.callbacks import Budget, Progress  # noqa: E402


class Arrays(NamedTuple):
    """A source's splits as the benchmarks use them: split name -> images (N, C, H, W) in [0, 1], -> labels."""
    images: dict
    labels: dict
    levels: int
    class_names: tuple


def source_arrays(source: str, path: str | None = None) -> Arrays:
    """`load_source`'s splits as `Arrays`. It answers split name -> Split (levels and class names in each
    split's meta); a checkout from before that (--components) answers one object of per-split dicts."""
    splits = load_source(source, path=path)
    if isinstance(splits, dict):
        meta = splits["train"].meta
        return Arrays({k: s.images for k, s in splits.items()}, {k: s.labels for k, s in splits.items()},
                      int(meta["levels"]), tuple(meta["class_names"]))
    return Arrays(splits.images, splits.labels, splits.levels, tuple(splits.class_names))


def write_prepared(images: dict, labels: dict, folder: Path, source: str, levels: int, class_names=(),
                   captions: dict | None = None, caption_meta: dict | None = None) -> Path:
    """Splits (name -> images (N, C, H, W) in [0, 1], labels or None, captions or None) as a single-domain
    prepared folder with the metadata pipelines/prepare.py writes, intensities kept (no binarization):
    what `stream_batches` / `eval_batches` and a domain view read (of the splits given)."""
    first = next(iter(images.values()))
    meta = {"source": source, "image_shape": list(first.shape[1:]), "binarization": "none", "threshold": 0.5,
            "seed": 0, "levels": levels, "class_names": list(class_names),
            "has_labels": labels.get("train") is not None, "attribute_names": [],
            "domains": [{"name": source, "source": source, "transform": "identity"}], **(caption_meta or {})}
    folder.mkdir(parents=True, exist_ok=True)
    for name, split in images.items():
        write_split(folder / f"{name}.parquet", split, labels.get(name), {**meta, "split": name},
                    captions=None if captions is None else captions[name])
    return folder


def train_within(name: str, params: dict, train: torch.Tensor, valid: torch.Tensor, seconds: float,
                 batch_size: int, lr: float, device) -> dict:
    """Train until the budget is spent (checked every step); keep the weights the model's selection picks.

    Returns the model, fractional epochs, training throughput (images/s, training
    time only), the best validation value of the selection metric and `fit`'s run.
    """
    torch.manual_seed(0)
    spec = DataSpec.single(tuple(train.shape[1:]))
    model = build_model(name, spec, params).to(device)
    binary = bool(((train == 0) | (train == 1)).all() and ((valid == 0) | (valid == 1)).all())
    # Epochs and patience without limit: the budget ends training, as it did before `fit` took over.
    settings = Settings(epochs=10**9, batch_size=batch_size, lr=lr, patience=10**9)
    with tempfile.TemporaryDirectory(prefix="genzoo-budget-") as temporary:
        folder = write_prepared({"train": train.numpy(), "valid": valid.numpy()}, {}, Path(temporary), "benchmark",
                                2 if binary else 256)

        def train_batches(epoch: int, size: int):
            return stream_batches(folder, "train", spec.pixels, size, seed=0, epoch=epoch)

        started = time.perf_counter()
        run = fit(model, train_batches, lambda: eval_batches(folder, "valid", spec.pixels, 500), settings,
                  [Budget(seconds), Progress(name, show_total=False)], device=device)
    model.load_state_dict(final_weights(run.checkpoint()))
    busy = sum(r["epoch_seconds"] for r in run.state["history"])
    return {"model": model.eval(), "epochs": run.state["images"] / len(train),
            "images_per_second": run.state["images"] / max(busy, 1e-9),
            "best_val": run.selection.best if run.selection else None,
            "seconds": time.perf_counter() - started, "run": run}


def evaluation_classifier(folder: Path, splits, count: int, epochs: int):
    """(the judge, its card): kept in `folder`, loaded from there when present, so that every run of every
    checkout is judged by the same network; else trained on `count` of the source's training images
    (seeded), validated on its valid split, and saved there."""
    if (folder / "config.json").is_file():
        return load_classifier(folder)
    chosen = seeded_subset(count, len(splits.images["train"]), seed=3)
    print(f"evaluation classifier: {epochs} epochs on {len(chosen)} training images", flush=True)
    started = time.perf_counter()
    classifier, _ = train_classifier(splits.images["train"][chosen], splits.labels["train"][chosen],
                                     splits.images["valid"], splits.labels["valid"], len(splits.class_names), epochs,
                                     128, 1e-3, seed=0)
    card = {"test_accuracy": accuracy_of(classifier, splits.images["test"], splits.labels["test"]),
            "images": len(chosen), "epochs": epochs, "seconds": time.perf_counter() - started}
    folder.mkdir(parents=True, exist_ok=True)
    save_classifier(classifier, folder, card)
    return classifier, card


def entry_lookups():
    """(architecture_params, model_entry, training_settings) of the checkout in use: components/schema.py
    holds them since the layers were reordered; a checkout from before keeps them in components/config.py."""
    try:
        from components.schema import architecture_params, model_entry, training_settings
    except ImportError:   # a checkout older than components/schema.py's lookups (--components)
        from components.config import architecture_params, model_entry, training_settings
    return architecture_params, model_entry, training_settings


def device_line(threads_note: str = "") -> str:
    """The CPU, its cores, the load average now and torch's threads: how the figures were made."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or platform.machine())
    load = " / ".join(Path("/proc/loadavg").read_text().split()[:3])
    return (f"{cpu}, {os.cpu_count()} cores, load average {load} (1 / 5 / 15 min); {torch.get_num_threads()} "
            f"torch thread(s){threads_note}, torch {torch.__version__}")


class CheckpointEachEpoch(Callback):
    """What the Ray adapter does after every epoch (components/training/ray_worker.py: RayReport)."""

    def __init__(self, path: Path):
        self.path, self.seconds = path, 0.0

    def on_epoch_end(self, run, record):
        started = time.perf_counter()
        torch.save(run.checkpoint(), self.path)
        self.seconds += time.perf_counter() - started


def fit_rate(model, train_data, settings: Settings, saver: CheckpointEachEpoch) -> tuple[float, float]:
    """`fit`'s training images per second (a checkpoint saved each epoch, as under Ray) and the
    checkpoints' share of its time."""
    saver.seconds, started = 0.0, time.perf_counter()
    run = fit(model, train_data, lambda: iter(()), settings, [saver])
    elapsed = time.perf_counter() - started
    return run.state["images"] / elapsed, saver.seconds / elapsed


def alternated_rounds(genzoo, plain, rounds: int, shares: list) -> dict[str, list[float]]:
    """Images/s of each loop per round: both once to warm up (allocator, first-call costs), then
    `rounds` rounds alternating them, so load from other work falls on both alike. `shares` (what
    `genzoo` appends to) is emptied after the warm-up."""
    genzoo(), plain()
    shares.clear()
    rates = {"genzoo": [], "plain": []}
    for _ in range(rounds):
        rates["genzoo"].append(genzoo())
        rates["plain"].append(plain())
    return rates


def seeded_subset(count: int, total: int, seed: int = 0) -> np.ndarray:
    """`count` of `total` indices, in order, the same for a seed (all of them when count is 0 or None)."""
    if not count or count >= total:
        return np.arange(total)
    return np.sort(torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:count].numpy())


def fmt(value, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, float) else "-" if value is None else str(value)


def read_rows(files: list[str]) -> tuple[dict[str, dict[str, dict]], dict]:
    """`--table SIDE=FILE ...`: the rows each side's runs appended (`--rows`), the last row of a model kept."""
    sides, setup = {}, {}
    for item in files:
        side, path = item.split("=", 1)
        for line in Path(path).read_text().splitlines():
            record = json.loads(line)
            sides.setdefault(side, {})[record["row"]["model"]] = record["row"]
            setup = record["setup"]
    return sides, setup
