"""Tiny models with capabilities no registered model has yet (conditional sampling, translation),
for testing evaluation and serving against the declared contract. Their pictures are known
exactly, so a test can tell which condition or domain was used.

They are not registered (other tests enumerate the registry); `register` puts them in for one
test that loads one from disk, and takes them out after it."""

import torch
from torch import nn

from components.data.batch import DataSpec, DomainSpec
from components.models.base import REGISTRY, GenerativeModel


class ClassShade(GenerativeModel):
    """Samples of class k are uniform images of intensity k / (classes - 1)."""
    name = "test_class_shade"
    family = "adversarial"
    capabilities = {"sample", "conditional_sample"}
    requires = {"labels"}
    condition = "labels"

    def __init__(self, spec, params):
        super().__init__(spec, params)
        self.scale = nn.Parameter(torch.ones(()))   # something for the state dict to hold

    def sample(self, n, condition=None, generator=None):
        if condition is None:
            condition = torch.randint(self.spec.num_classes, (n,), generator=generator)
        if len(condition) != n:
            raise ValueError(f"{n} samples, {len(condition)} conditions")
        shade = torch.as_tensor(condition, dtype=torch.float32) / (self.spec.num_classes - 1)
        return (shade.view(-1, 1, 1, 1) * self.scale.detach()).expand(n, *self.image_shape).clone()


class Inverter(GenerativeModel):
    """Two domains, "day" and "night": translating into "night" inverts an image, into "day" keeps it."""
    name = "test_inverter"
    family = "adversarial"
    capabilities = {"translate"}

    def translate(self, images, target):
        if target not in self.spec.domain_names:
            raise ValueError(f"unknown domain {target!r}")
        return 1 - images if target == "night" else images.clone()


def class_spec(image_shape=(1, 2, 2), classes=4) -> DataSpec:
    return DataSpec.single(image_shape, 2, class_names=tuple(f"c{k}" for k in range(classes)), fields=("labels",))


def day_night_spec(image_shape=(1, 2, 2)) -> DataSpec:
    return DataSpec(source="synthetic", domains=(DomainSpec("day", image_shape, 2), DomainSpec("night", image_shape, 2)),
                    fields=("domains",))


def register(monkeypatch, *models):
    for model in models:
        monkeypatch.setitem(REGISTRY, model.name, model)
