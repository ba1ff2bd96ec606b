"""The MLflow pyfunc face of a trained genzoo model.

Logged with `code_paths=["components"]`, so `mlflow.pyfunc.load_model(...)`
needs only torch, numpy and pandas, not the genzoo training pipeline. What a
request may ask for follows the model's declared capabilities; a request it
cannot serve is refused with a `ServingError` naming what the model can do.

`predict(model_input)`, by the columns of the DataFrame:
* `num_samples` (optional `seed`, and `condition` for a conditional model):
  samples, float32 (N, C, H, W) with pixels in [0, 1]. Each row asks for
  `num_samples` samples of its own `condition`; the rows' samples are
  concatenated in row order, drawn from one generator seeded by the first
  row's `seed` (default 0). So one row gives all samples one condition, and
  one row per condition (e.g. `num_samples` 1 each) gives one each. A
  condition is what the model's `condition` names: a class index (or class
  name) for "labels", a caption string for "captions".
* flattened images (C*H*W columns, row-major, pixels in [0, 1]) and a
  `target` column (a domain name): the images translated into their row's
  target domain, float32 (N, C, H, W), in row order.
* flattened images and a `complete` column (true): the images completed, float32 (N, C, H, W):
  pixels given as NaN are hidden and filled in; a model that completes from key patches it picks
  (Puzzle-GAN) makes, from a row without NaN, the whole image out of that image's key patches.
  Optional `seed`.
* flattened images alone (a DataFrame or array): the per-image
  log-likelihood in nats, shape (N,) (exact, or the bound the model names).

Every request is bounded (`Limits`, set per logged model by its `model_config`:
`max_samples`, default 10,000 per request, `max_rows`, default 10,000, and
`batch_size`, the rows or samples computed at once), and bad input is refused,
not guessed at: non-finite or out-of-range pixels, a `num_samples`, `seed` or
class that is not a whole number (2.9, NaN), a missing (None) or list condition.
A refusal is a `ServingError`, an `MlflowException` of INVALID_PARAMETER_VALUE,
which `mlflow models serve` answers with HTTP 400 and the message.

`request_signature(model)` is the MLflow signature a logged model carries: every
request column, all optional (which ones a request needs depends on what it asks
for), pixel columns named "0".."C*H*W-1". MLflow enforces it before `predict`:
a wrongly typed column is refused with MLflow's message, and columns it does not
name (integer-named pixel columns included) are dropped, so a request names its
pixel columns as strings (`pd.DataFrame(x).rename(columns=str)`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.types import ColSpec, Schema, TensorSpec
from mlflow.types.schema import AnyType


class ServingError(MlflowException, ValueError):
    """A request the model cannot serve; the message says what it can do. MLflow's scoring server
    answers an MlflowException of INVALID_PARAMETER_VALUE with HTTP 400 and this message."""

    def __init__(self, message: str):
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)


@dataclass(frozen=True)
class Limits:
    """The most one request may ask for, and how many samples or rows are computed at once (memory
    follows the batch, not the request)."""

    max_samples: int = 10_000
    max_rows: int = 10_000
    batch_size: int = 256

    @classmethod
    def from_config(cls, config: dict | None) -> "Limits":
        config = dict(config or {})
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(config) - set(names))
        if unknown:
            raise ValueError(f"model_config: unknown serving limit(s) {unknown}; known: {', '.join(names)}")
        for name, value in config.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"model_config: {name} = {value!r} is not a positive integer")
        return cls(**config)


def whole(value, what: str, minimum: int | None = 0) -> int:
    """`value` as an int when it is a whole number (2 or 2.0; not 2.9, NaN, None, True or "2"), at least
    `minimum`."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        number = int(value)
    elif isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer():
        number = int(value)
    else:
        shown = value.item() if isinstance(value, np.generic) else value
        raise ServingError(f"{what} must be a whole number; got {shown!r}")
    if minimum is not None and number < minimum:
        raise ServingError(f"{what} must be >= {minimum}; got {number}")
    return number


def batched(n: int, size: int, part) -> np.ndarray:
    """`part(rows)` over consecutive slices of at most `size` of `n` rows, concatenated as float32."""
    with torch.no_grad():
        parts = [part(slice(start, min(start + size, n))) for start in range(0, max(n, 1), size)]
    return np.concatenate([p.cpu().numpy().astype(np.float32) for p in parts])


def refuse(model, request: str) -> ServingError:
    return ServingError(f"{model.name} cannot serve {request}: it declares {model.describe_capabilities()}")


def condition_of(model, value, row: int):
    """One row's condition as `model.sample` takes it: a class index for "labels", a caption string
    for "captions"."""
    if model.condition == "labels":
        names = list(model.spec.class_names)
        if isinstance(value, str) and not value.lstrip("-").isdecimal():
            if value not in names:
                raise ServingError(f"{model.name}: unknown class {value!r}; classes: {', '.join(names)} (row {row})")
            return names.index(value)
        index = whole(int(value) if isinstance(value, str) else value,
                      f"{model.name}: the condition of row {row} (a class index or name)", minimum=None)
        if names and not 0 <= index < len(names):
            raise ServingError(f"{model.name}: class index {index} is outside 0..{len(names) - 1}")
        return index
    if model.condition == "captions":
        if not isinstance(value, str) or not value.strip():
            raise ServingError(f"{model.name}: the condition of row {row} must be a caption (a non-empty "
                               f"string); got {value!r}")
        return value
    raise ServingError(f"{model.name}: serving has no reader for conditions of kind {model.condition!r}")


def sample(model, request: pd.DataFrame, limits: Limits) -> np.ndarray:
    counts = [whole(n, f"num_samples (row {row})") for row, n in enumerate(request["num_samples"])]
    if sum(counts) > limits.max_samples:
        raise ServingError(f"the request asks for {sum(counts)} samples; at most {limits.max_samples} per request")
    seed = whole(request["seed"].iloc[0], "seed") if "seed" in request.columns else 0
    generator = torch.Generator().manual_seed(seed)
    if "condition" in request.columns:
        if not model.can("conditional_sample"):
            raise refuse(model, "a `condition`: it is not a conditional sampler")
        per_row = [condition_of(model, value, row) for row, value in enumerate(request["condition"])]
        per_sample = [value for value, n in zip(per_row, counts) for _ in range(n)]
        condition = torch.tensor(per_sample, dtype=torch.long) if model.condition == "labels" else per_sample
    else:
        if not model.can("sample"):
            needs = f" (it needs a `condition` column: {model.condition})" if model.can("conditional_sample") else ""
            raise refuse(model, f"unconditional samples{needs}")
        condition = None
    return batched(sum(counts), limits.batch_size, lambda rows: model.sample(
        rows.stop - rows.start, condition=None if condition is None else condition[rows], generator=generator))


def image_table(model, frame, hidden: bool = False) -> np.ndarray:
    """Flattened images as float32, every pixel a finite number in [0, 1] (or NaN, when `hidden`)."""
    try:
        with np.errstate(over="ignore"):   # a value beyond float32 becomes inf, refused below
            x = np.array(frame, dtype=np.float32)   # a copy: the frame's array may be read-only
    except (TypeError, ValueError) as error:
        raise ServingError(f"pixels must be numbers in [0, 1] ({error})") from error
    sizes = sorted({d.num_pixels for d in model.spec.domains})
    if x.ndim != 2 or x.shape[1] not in sizes:
        raise ServingError(
            f"expected a table of flattened images with {' or '.join(map(str, sizes))} columns "
            f"(image shape {' or '.join(str(d.image_shape) for d in model.spec.domains)}), or a "
            f"`num_samples` column; got shape {x.shape}")
    bad = (np.isinf(x) if hidden else ~np.isfinite(x)) | (x < 0) | (x > 1)
    if bad.any():
        row, column = np.argwhere(bad)[0]
        raise ServingError(f"pixel {column} of row {row} is {x[row, column]}: pixels must be finite numbers "
                           f"in [0, 1]{' (NaN: hidden)' if hidden else ''}; {int(bad.sum())} such pixel(s)")
    return x


def translate(model, request: pd.DataFrame, limits: Limits) -> np.ndarray:
    if not model.can("translate"):
        raise refuse(model, "a `target` (image translation)")
    targets = request["target"].astype(str).to_numpy()
    known = model.spec.domain_names
    unknown = sorted(set(targets) - set(known))
    if unknown:
        raise ServingError(f"{model.name}: unknown target domain(s) {unknown}; domains: {', '.join(known)}")
    x = image_table(model, request.drop(columns=["target"]))
    shape = next(d.image_shape for d in model.spec.domains if d.num_pixels == x.shape[1])
    images = torch.from_numpy(x).reshape(len(x), *shape)
    out = None
    for target in dict.fromkeys(targets):   # each target domain once, in order of first appearance
        rows = np.flatnonzero(targets == target)
        moved = batched(len(rows), limits.batch_size, lambda part: model.translate(images[rows[part]], target))
        if out is None:
            out = np.empty((len(x), *moved.shape[1:]), dtype=np.float32)
        out[rows] = moved
    return out if out is not None else np.empty((0, *shape), dtype=np.float32)


def complete(model, request: pd.DataFrame, limits: Limits) -> np.ndarray:
    if not model.can("complete"):
        raise refuse(model, "a `complete` request (image completion)")
    seed = whole(request["seed"].iloc[0], "seed") if "seed" in request.columns else 0
    x = image_table(model, request.drop(columns=[c for c in ("complete", "seed") if c in request.columns]),
                    hidden=True)
    images = model.unflatten(torch.from_numpy(x))
    hidden = torch.isnan(images)
    observed = None if model.completes_from == "key_patches" and not hidden.any() else ~hidden
    generator = torch.Generator().manual_seed(seed)
    return batched(len(images), limits.batch_size, lambda rows: model.complete(
        torch.nan_to_num(images[rows]), None if observed is None else observed[rows], generator))


def log_likelihood(model, frame, limits: Limits) -> np.ndarray:
    if not model.can("log_prob"):
        raise refuse(model, "log-likelihoods of images")
    images = model.unflatten(torch.from_numpy(image_table(model, frame)))
    return batched(len(images), limits.batch_size, lambda rows: model.log_prob(images[rows]))


def serve(model, model_input, limits: Limits = Limits()) -> np.ndarray:
    """Answer one request (see the module docstring) from the model's declared capabilities."""
    try:
        rows = len(model_input)
    except TypeError:   # not a table at all: image_table refuses it below
        rows = 0
    if rows > limits.max_rows:
        raise ServingError(f"the request has {rows} rows; at most {limits.max_rows} per request")
    if isinstance(model_input, pd.DataFrame):
        if "num_samples" in model_input.columns:
            return sample(model, model_input, limits)
        if "target" in model_input.columns:
            return translate(model, model_input, limits)
        if "complete" in model_input.columns:
            return complete(model, model_input, limits)
        stray = [c for c in ("seed", "condition") if c in model_input.columns]
        if stray:
            raise ServingError(f"column(s) {stray} need a `num_samples` (or `complete`) column")
    return log_likelihood(model, model_input, limits)


def logged_metadata(model) -> dict:
    """The logged model's metadata: what it is, what it can do, and the images it takes and gives
    (each domain's name and shape: a translating model's `target` names one of them)."""
    return {"genzoo_model": model.name, "likelihood": model.likelihood or "none",
            "capabilities": sorted(model.capabilities), "image_shape": list(model.image_shape),
            "domains": [{"name": d.name, "image_shape": list(d.image_shape)} for d in model.spec.domains]}


def request_signature(model) -> ModelSignature:
    """Input: the request columns this model can use. Output: samples or translations when it can
    produce images (float32 (N, C, H, W)), else its log-likelihoods (float32 (N,))."""
    columns = []
    if model.can("sample") or model.can("conditional_sample"):
        columns += [ColSpec("long", "num_samples", required=False), ColSpec("long", "seed", required=False)]
    if model.can("conditional_sample"):  # a class index, a class name or a caption
        columns.append(ColSpec(AnyType(), "condition", required=False))
    if model.can("translate"):
        columns.append(ColSpec("string", "target", required=False))
    if model.can("complete"):
        columns.append(ColSpec("boolean", "complete", required=False))
        if not (model.can("sample") or model.can("conditional_sample")):
            columns.append(ColSpec("long", "seed", required=False))
    pixels = max(d.num_pixels for d in model.spec.domains)
    if model.can("log_prob") or model.can("translate") or model.can("complete"):
        columns += [ColSpec("double", str(i), required=False) for i in range(pixels)]
    shape = tuple(model.spec.domains[0].image_shape)
    images = (model.can("sample") or model.can("conditional_sample") or model.can("translate")
              or (model.can("complete") and not model.can("log_prob")))
    output = (TensorSpec(np.dtype("float32"), (-1, *shape), "images") if images
              else TensorSpec(np.dtype("float32"), (-1,), "log_likelihood"))
    return ModelSignature(inputs=Schema(columns), outputs=Schema([output]))


class GenzooPyfunc(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        from components.models import load_model

        self.model = load_model(context.artifacts["model_dir"])
        self.limits = Limits.from_config(context.model_config)

    # Typed so MLflow recognizes a DataFrame model (a pandas hint infers no schema; the logged
    # signature is request_signature's).
    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> np.ndarray:
        return serve(self.model, model_input, self.limits)
