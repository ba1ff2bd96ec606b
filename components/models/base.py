"""The one interface every genzoo model implements.

A model is an `nn.Module` with typed `Params`, its own optimizers and its own
training step (so a one-optimizer likelihood model and a GAN that alternates
two optimizers fit the same trainer), and the capabilities it really has:
`sample`, `log_prob` (exact, or a named bound) and `encode`. Subclasses
register themselves by `name` when their module is imported.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import ClassVar, Literal

import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from components.config import ConfigError

REGISTRY: dict[str, type["GenerativeModel"]] = {}


class NotSupported(NotImplementedError):
    """The model does not have this capability (e.g. `log_prob` of a GAN)."""


class GenerativeModel(nn.Module):
    name: ClassVar[str]                         # registry name, used in params.yaml
    family: ClassVar[Literal["explicit", "latent", "adversarial"]]
    likelihood: ClassVar[str | None] = None     # "exact", a bound's name ("iwae"), or None
    # The pixel format it reads (see read_split): binary only, the intensities (grayscale; a binary
    # source gives 2 levels), or either, chosen by its params entry's `pixels`.
    pixels: ClassVar[Literal["binary", "grayscale", "any"]] = "any"
    monitor: ClassVar[str | None] = None        # validation metric (lower is better) for early stopping

    @dataclasses.dataclass
    class Params:
        pass

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            REGISTRY[cls.name] = cls

    def __init__(self, image_shape: tuple[int, int, int], params: "GenerativeModel.Params", levels: int = 2):
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.params = params
        self.levels = levels  # distinct pixel values in the data: 2 = binary, 256 = 8-bit

    @property
    def data_pixels(self) -> str:
        """The pixel format of the data the model was built for (see `read_split`)."""
        return "binary" if self.levels == 2 else "grayscale"

    @property
    def num_pixels(self) -> int:
        c, h, w = self.image_shape
        return c * h * w

    # --- training -------------------------------------------------------
    def configure_optimizers(self, lr: float) -> dict[str, torch.optim.Optimizer]:
        return {"model": torch.optim.Adam(self.parameters(), lr=lr)}

    def on_epoch_start(self) -> None:
        """Called before each training epoch (closed-form models reset statistics here)."""

    def training_step(self, x: torch.Tensor, optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, float]:
        """Default: one maximum-likelihood step. Models trained otherwise (ELBO, adversarial) override it."""
        loss = -self.log_prob(x).mean()
        self.optimize(optimizers["model"], loss)
        return {"loss": loss.item()}

    @torch.no_grad()
    def validation_metrics(self, x: torch.Tensor) -> dict[str, float]:
        """Metrics on a validation batch, averaged per image (the trainer averages over batches)."""
        if self.likelihood is None:
            return {}
        return {"nll": float(-self.log_prob(x).mean())}

    def optimize(self, optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        """One gradient step. Gradients are averaged over data-parallel workers.

        Averaging the gradients of the optimizer's own parameters (rather than
        wrapping the model in DDP) keeps alternating two-optimizer updates, where
        each loss touches only part of the model, correct.
        """
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        if world > 1:
            for group in optimizer.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        dist.all_reduce(p.grad)
                        p.grad /= world
        optimizer.step()

    @staticmethod
    def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
        """Sum a statistic over data-parallel workers (identity when there is one)."""
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(tensor)
        return tensor

    # --- capabilities ---------------------------------------------------
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """`n` images (n, C, H, W) in [0, 1]."""
        raise NotSupported(f"{self.name} cannot sample")

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Per-image log-likelihood in nats (exact, or the bound named by `likelihood`)."""
        raise NotSupported(f"{self.name} has no likelihood")

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Per-image feature vector (n, d) from the model's latent space."""
        raise NotSupported(f"{self.name} has no encoder")

    @classmethod
    def capabilities(cls) -> list[str]:
        return [c for c in ("sample", "log_prob", "encode")
                if getattr(cls, c) is not getattr(GenerativeModel, c)]

    def pixel_steps(self, what: str = "sampling"):
        """range(D) with a progress bar on a terminal: pixel-by-pixel loops are the slow part."""
        return tqdm(range(self.num_pixels), desc=f"{self.name}: {what}", disable=None, leave=False,
                    mininterval=1.0)

    def flatten(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(len(x), self.num_pixels)

    def unflatten(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(len(x), *self.image_shape)

    @property
    def device(self) -> torch.device:
        return next(iter(self.state_dict().values())).device


# --- typed parameters ---------------------------------------------------------

def _check_type(where: str, value, hint) -> None:
    origin = typing.get_origin(hint)
    if origin is Literal:
        if value not in typing.get_args(hint):
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, typing.get_args(hint)))}")
        return
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        for i, item in enumerate(value):
            _check_type(f"{where}[{i}]", item, typing.get_args(hint)[0])
        return
    ok = {
        bool: lambda v: isinstance(v, bool),
        int: lambda v: isinstance(v, int) and not isinstance(v, bool),
        float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        str: lambda v: isinstance(v, str),
    }[hint](value)
    if not ok:
        raise ConfigError(f"{where}: expected {hint.__name__}, got {type(value).__name__} {value!r}")


def parse_params(cls: type[GenerativeModel], values: dict) -> GenerativeModel.Params:
    """Build `cls.Params` from a params.yaml mapping, failing early on unknown keys or wrong types."""
    hints = typing.get_type_hints(cls.Params)
    fields = {f.name for f in dataclasses.fields(cls.Params)}
    unknown = set(values) - fields
    if unknown:
        raise ConfigError(
            f"model {cls.name!r}: unknown parameter(s) {', '.join(sorted(unknown))}; "
            f"valid: {', '.join(sorted(fields)) or 'none'}"
        )
    for key, value in values.items():
        _check_type(f"model {cls.name!r} parameter {key!r}", value, hints[key])
    coerced = {k: float(v) if hints[k] is float else v for k, v in values.items()}
    return cls.Params(**coerced)
