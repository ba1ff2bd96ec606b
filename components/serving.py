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

`request_signature(model)` is the MLflow signature a logged model carries: every
request column, all optional (which ones a request needs depends on what it asks
for), pixel columns named "0".."C*H*W-1". MLflow enforces it before `predict`:
a wrongly typed column is refused with MLflow's message, and columns it does not
name (integer-named pixel columns included) are dropped, so a request names its
pixel columns as strings (`pd.DataFrame(x).rename(columns=str)`).
"""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema, TensorSpec
from mlflow.types.schema import AnyType

class ServingError(ValueError):
    """A request the model cannot serve; the message says what it can do."""


def refuse(model, request: str) -> ServingError:
    return ServingError(f"{model.name} cannot serve {request}: it declares {model.describe_capabilities()}")


def conditions_of(model, values: list) -> object:
    """The `condition` argument of `model.sample` for one condition per sample."""
    if model.condition == "labels":
        names = list(model.spec.class_names)
        indices = []
        for value in values:
            if isinstance(value, str) and not value.lstrip("-").isdigit():
                if value not in names:
                    raise ServingError(f"{model.name}: unknown class {value!r}; classes: {', '.join(names)}")
                indices.append(names.index(value))
                continue
            index = int(value)
            if names and not 0 <= index < len(names):
                raise ServingError(f"{model.name}: class index {index} is outside 0..{len(names) - 1}")
            indices.append(index)
        return torch.tensor(indices, dtype=torch.long)
    if model.condition == "captions":
        return [str(value) for value in values]
    raise ServingError(f"{model.name}: serving has no reader for conditions of kind {model.condition!r}")


def sample(model, request: pd.DataFrame) -> np.ndarray:
    counts = [int(n) for n in request["num_samples"]]
    if any(n < 0 for n in counts):
        raise ServingError(f"num_samples must be >= 0; got {counts}")
    seed = int(request["seed"].iloc[0]) if "seed" in request.columns else 0
    generator = torch.Generator().manual_seed(seed)
    if "condition" in request.columns:
        if not model.can("conditional_sample"):
            raise refuse(model, "a `condition`: it is not a conditional sampler")
        per_sample = [value for value, n in zip(request["condition"], counts) for _ in range(n)]
        condition = conditions_of(model, per_sample)
    else:
        if not model.can("sample"):
            needs = f" (it needs a `condition` column: {model.condition})" if model.can("conditional_sample") else ""
            raise refuse(model, f"unconditional samples{needs}")
        condition = None
    with torch.no_grad():
        images = model.sample(sum(counts), condition=condition, generator=generator)
    return images.cpu().numpy().astype(np.float32)


def image_table(model, frame) -> np.ndarray:
    x = np.asarray(frame, dtype=np.float32)
    sizes = sorted({d.num_pixels for d in model.spec.domains})
    if x.ndim != 2 or x.shape[1] not in sizes:
        raise ServingError(
            f"expected a table of flattened images with {' or '.join(map(str, sizes))} columns "
            f"(image shape {' or '.join(str(d.image_shape) for d in model.spec.domains)}), or a "
            f"`num_samples` column; got shape {x.shape}")
    return x


def translate(model, request: pd.DataFrame) -> np.ndarray:
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
    with torch.no_grad():
        for target in dict.fromkeys(targets):   # each target domain once, in order of first appearance
            rows = np.flatnonzero(targets == target)
            moved = model.translate(images[rows], target).cpu().numpy().astype(np.float32)
            if out is None:
                out = np.empty((len(x), *moved.shape[1:]), dtype=np.float32)
            out[rows] = moved
    return out if out is not None else np.empty((0, *shape), dtype=np.float32)


def complete(model, request: pd.DataFrame) -> np.ndarray:
    if not model.can("complete"):
        raise refuse(model, "a `complete` request (image completion)")
    seed = int(request["seed"].iloc[0]) if "seed" in request.columns else 0
    x = image_table(model, request.drop(columns=[c for c in ("complete", "seed") if c in request.columns]))
    images = model.unflatten(torch.from_numpy(np.array(x)))   # a copy: the frame's array may be read-only
    hidden = torch.isnan(images)
    observed = None if model.completes_from == "key_patches" and not hidden.any() else ~hidden
    with torch.no_grad():
        out = model.complete(torch.nan_to_num(images), observed, torch.Generator().manual_seed(seed))
    return out.cpu().numpy().astype(np.float32)


def log_likelihood(model, frame) -> np.ndarray:
    if not model.can("log_prob"):
        raise refuse(model, "log-likelihoods of images")
    x = image_table(model, frame)
    with torch.no_grad():
        return model.log_prob(model.unflatten(torch.from_numpy(x))).cpu().numpy()


def serve(model, model_input) -> np.ndarray:
    """Answer one request (see the module docstring) from the model's declared capabilities."""
    if isinstance(model_input, pd.DataFrame):
        if "num_samples" in model_input.columns:
            return sample(model, model_input)
        if "target" in model_input.columns:
            return translate(model, model_input)
        if "complete" in model_input.columns:
            return complete(model, model_input)
        stray = [c for c in ("seed", "condition") if c in model_input.columns]
        if stray:
            raise ServingError(f"column(s) {stray} need a `num_samples` (or `complete`) column")
    return log_likelihood(model, model_input)


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

    # Typed so MLflow recognizes a DataFrame model (a pandas hint infers no schema; the logged
    # signature is request_signature's).
    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> np.ndarray:
        return serve(self.model, model_input)
