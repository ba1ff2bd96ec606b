"""The MLflow pyfunc face of a trained genzoo model.

Logged with `code_paths=["components"]`, so `mlflow.pyfunc.load_model(...)`
needs only torch, numpy and pandas, not the genzoo training pipeline.

`predict(model_input)`:
* a DataFrame with one column `num_samples` (and optionally `seed`): returns
  float32 samples of shape (num_samples, C, H, W) with pixels in [0, 1];
* a DataFrame or array with C*H*W columns (flattened images, row-major, pixels
  in [0, 1]; {0, 1} for binary models): returns the per-image log-likelihood in
  nats, shape (N,) (exact, or the bound the model names in its metadata).
"""

from __future__ import annotations

import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch


class GenzooPyfunc(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        from components.models import load_model

        self.model = load_model(context.artifacts["model_dir"])

    def predict(self, context, model_input, params=None):
        model = self.model
        if isinstance(model_input, pd.DataFrame) and "num_samples" in model_input.columns:
            n = int(model_input["num_samples"].iloc[0])
            seed = int(model_input["seed"].iloc[0]) if "seed" in model_input.columns else 0
            with torch.no_grad():
                return model.sample(n, generator=torch.Generator().manual_seed(seed)).numpy().astype(np.float32)
        x = np.asarray(model_input, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != model.num_pixels:
            raise ValueError(
                f"expected a table of flattened images with {model.num_pixels} columns "
                f"(image shape {model.image_shape}), or a `num_samples` column; got shape {x.shape}"
            )
        with torch.no_grad():
            return model.log_prob(model.unflatten(torch.from_numpy(x))).numpy()
