"""The one interface every genzoo model implements.

A model is an `nn.Module` with typed `Params`, built from the `DataSpec` of
the data it will see. It owns its optimizers and its training step, which
receives a `Batch` (images and, where the data has them, labels, attributes,
captions, domains), so a one-optimizer likelihood model, a GAN alternating
two optimizers and a conditional model fit the same trainer.

What a model can do is declared, not probed: `capabilities` names the methods
it really implements (`sample`, `conditional_sample`, `log_prob`, `encode`,
`decode`, `translate`, `complete`), checked when the class is defined, and
`requires` names the batch fields it needs, checked against the data before
training. Evaluation, serving and the report read these declarations and call
the evaluation hooks below, whose defaults do nothing. A model trained in
phases (a growing network) adds the `Phased` mixin and its hooks. Models join
the registry by `name` through the `register` decorator.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import ClassVar, Literal

import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from components.data.batch import FIELDS, Batch, DataSpec

REGISTRY: dict[str, type["GenerativeModel"]] = {}


class NotSupported(NotImplementedError):
    """The model does not have this capability (e.g. `log_prob` of a GAN)."""


# capability -> the method that provides it
CAPABILITIES = {"sample": "sample", "conditional_sample": "sample", "log_prob": "log_prob",
                "encode": "encode", "decode": "decode", "translate": "translate", "complete": "complete"}


class GenerativeModel(nn.Module):
    name: ClassVar[str]                         # registry name, used in params.yaml
    family: ClassVar[Literal["explicit", "latent", "adversarial"]]
    likelihood: ClassVar[str | None] = None     # "exact", a bound's name ("iwae"), or None
    # The pixel format it reads (see read_split): binary only, the intensities (grayscale; a binary
    # source gives 2 levels), or either, chosen by its params entry's `pixels`.
    pixels: ClassVar[Literal["binary", "grayscale", "any"]] = "any"
    # Which epoch's weights to keep, and when to stop early: (validation metric, "min" | "max"). The
    # metric is one of `validation_metrics` or a sample-quality metric the trainer measures ("fid").
    selection: ClassVar[tuple[str, str] | None] = None
    # Submodules whose parameters the trainer averages (EMA, when `ema_decay` is set); the average is
    # what validation, selection and the saved weights use.
    ema_modules: ClassVar[tuple[str, ...]] = ()
    capabilities: ClassVar[frozenset[str]] = frozenset()   # what it can do (keys of CAPABILITIES)
    requires: ClassVar[frozenset[str]] = frozenset()       # batch fields it needs (of batch.FIELDS)
    # What `sample`'s condition is, a batch field ("labels" | "captions" | ...); it joins `requires`.
    condition: ClassVar[str | None] = None
    # The evaluation metric promote ranks its versions by (lower is better); None: its family's
    # (the test NLL of a likelihood model, else FID).
    promotion_metric: ClassVar[str | None] = None
    # What `complete` is given: "pixels" (any observed pixels: evaluation shows it the upper half), or
    # "key_patches" (it picks its key patches itself, from the observed pixels or, with `observed`
    # None, from the whole image: evaluation passes None).
    completes_from: ClassVar[Literal["pixels", "key_patches"]] = "pixels"
    # True: every training batch holds equally many images of each domain, drawn from independent
    # shuffles (unpaired), for models that translate between domains (`Batch.by_domain` splits it).
    unpaired_domains: ClassVar[bool] = False

    @dataclasses.dataclass
    class Params:
        pass

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.capabilities = frozenset(cls.capabilities)
        # a conditional sampler trains on its condition, so the data must have that field
        cls.requires = frozenset(cls.requires) | ({cls.condition} if cls.condition else set())
        unknown = (cls.capabilities - set(CAPABILITIES)) | (cls.requires - set(FIELDS))
        if unknown:
            raise TypeError(f"{cls.__name__}: unknown capabilities or batch fields {sorted(unknown)}")
        check_selection(cls.__name__, cls.selection)
        if "name" in cls.__dict__:
            missing = [c for c in cls.capabilities
                       if getattr(cls, CAPABILITIES[c]) is getattr(GenerativeModel, CAPABILITIES[c])]
            if missing:
                raise TypeError(f"{cls.__name__} declares {missing} but does not implement them")
            if "conditional_sample" in cls.capabilities and cls.condition is None:
                raise TypeError(f"{cls.__name__}: a conditional sampler names its `condition` field")

    def __init__(self, spec: DataSpec, params: "GenerativeModel.Params"):
        super().__init__()
        self.spec = spec
        self.image_shape = tuple(spec.image_shape)
        self.params = params
        self.levels = spec.levels  # distinct pixel values in the data: 2 = binary, 256 = 8-bit

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

    def on_step(self, step: int) -> None:
        """Called after every training step; `step` counts steps since the run began (1, 2, ...)."""

    def training_step(self, batch: Batch, optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, float]:
        """Default: one maximum-likelihood step. Models trained otherwise (ELBO, adversarial) override it."""
        loss = -self.log_prob(batch.images).mean()
        self.optimize(optimizers["model"], loss)
        return {"loss": loss.item()}

    @torch.no_grad()
    def validation_metrics(self, batch: Batch) -> dict[str, float]:
        """Metrics on a validation batch, averaged per image (the trainer averages over batches)."""
        if self.likelihood is None:
            return {}
        return {"nll": float(-self.log_prob(batch.images).mean())}

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

    # --- capabilities (declared in `capabilities`) -----------------------
    def sample(self, n: int, condition=None, generator: torch.Generator | None = None) -> torch.Tensor:
        """`n` images (n, C, H, W) in [0, 1]; a conditional model takes `condition` (n class indices,
        captions, ... as its `condition` says), an unconditional one refuses it."""
        raise NotSupported(f"{self.name} cannot sample")

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Per-image log-likelihood in nats (exact, or the bound named by `likelihood`)."""
        raise NotSupported(f"{self.name} has no likelihood")

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Per-image feature vector (n, d) from the model's latent space."""
        raise NotSupported(f"{self.name} has no encoder")

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images (n, C, H, W) in [0, 1] from latent codes (n, d)."""
        raise NotSupported(f"{self.name} has no decoder")

    def translate(self, images: torch.Tensor, target) -> torch.Tensor:
        """`images` moved to domain `target` (a domain name or index), same shape."""
        raise NotSupported(f"{self.name} does not translate between domains")

    def complete(self, images: torch.Tensor, observed: torch.Tensor,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """`images` with the pixels where `observed` is False filled in by the model."""
        raise NotSupported(f"{self.name} cannot complete images")

    def check_unconditional(self, condition) -> None:
        if condition is not None:
            raise NotSupported(f"{self.name} is unconditional: sample(n) takes no condition")

    def can(self, capability: str) -> bool:
        return capability in self.capabilities

    def describe_capabilities(self) -> str:
        return ", ".join(sorted(self.capabilities)) or "nothing"

    # --- evaluation hooks (evaluate calls these; defaults do nothing) ------
    def evaluation_log_prob(self, x: torch.Tensor, settings: dict) -> torch.Tensor:
        """The per-image log-likelihood evaluation reports (`settings`: params.yaml's `evaluate`)."""
        return self.log_prob(x)

    def evaluation_metrics(self, test: Batch, settings: dict) -> dict:
        """Model-specific figures beside the common ones (e.g. the ELBO's split)."""
        return {}

    def evaluation_figures(self, test: Batch, settings: dict) -> dict:
        """Model-specific pictures: file name -> a description (components/pictures.py) evaluation draws."""
        return {}

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
        # The first parameter or buffer: building the state dict to read one tensor cost ~1% of a step.
        return next(itertools.chain(self.parameters(), self.buffers())).device


@dataclasses.dataclass(frozen=True)
class Phase:
    """One stage of training: it lasts until `images` images were shown (at an epoch's end; None:
    until training ends), with its own batch size (None: the `batch_size` setting)."""
    name: str
    images: int | None = None
    batch_size: int | None = None
    resolution: int | None = None    # for the model's own use (e.g. the side of a growing network)


class Phased:
    """Mixin for a model trained in phases (e.g. ProGAN's network growing one resolution at a time).

    `fit` reads this declaration once (`isinstance(model, Phased)`): it walks `phases()`, calls the
    hooks as each phase starts and ends, offers selection only the epochs `selectable()` allows, and
    keeps `records` as the last epoch left them. A model without it trains in one phase of all epochs,
    every epoch a candidate for selection.
    """
    # Buffers that record the run rather than define the model (e.g. samples kept as each training
    # phase ended): saved as the last epoch left them, whichever epoch's weights selection keeps.
    records: ClassVar[tuple[str, ...]] = ()

    def phases(self) -> list[Phase]:
        """The training phases, in order."""
        raise NotImplementedError

    def on_phase_start(self, phase: Phase) -> None:
        """Called before the first epoch of `phase`, and again for the current phase when a run resumes
        (so it must set state from `phase`, not toggle it)."""

    def on_phase_end(self, phase: Phase, averaged: bool = True) -> None:
        """Called twice when a phase ends: with the live weights in place (`averaged` False), then with
        the averaged (EMA) ones, the weights validation and selection see (the live ones again when
        training keeps no average); after its last epoch when the next phase follows (before selection
        sees the epoch), and after training's last epoch; e.g. to keep samples of what the phase reached
        in `records`."""

    def selectable(self) -> bool:
        """Whether the model as it stands is a candidate for selection: a network still growing (ProGAN
        before its last resolution is faded in) is not the model the run is meant to produce."""
        return True


DIRECTIONS = ("min", "max")


def check_selection(where: str, selection) -> None:
    if selection is None:
        return
    if not (isinstance(selection, tuple) and len(selection) == 2 and isinstance(selection[0], str)
            and selection[1] in DIRECTIONS):
        raise TypeError(f"{where}: selection is (metric, 'min' | 'max'), got {selection!r}")


def register(cls: type[GenerativeModel]) -> type[GenerativeModel]:
    """Class decorator: the model joins the registry under its `name`, the name params.yaml uses.
    Registration is explicit, so a subclass defined elsewhere (a test's toy model) stays out of it."""
    if "name" not in cls.__dict__:
        raise TypeError(f"{cls.__name__}: a registered model declares its own `name`")
    if REGISTRY.get(cls.name, cls) is not cls:
        raise TypeError(f"model name {cls.name!r} is registered twice ({REGISTRY[cls.name].__name__}, {cls.__name__})")
    REGISTRY[cls.name] = cls
    return cls
