"""evaluate works from declared capabilities: a class-conditional model is sampled per class and
scored by how often the evaluation classifier sees the class asked for, a translating model gets
a translation figure, a model that cannot sample gets no sample metrics, and nothing probes."""

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from components.data.batch import Batch
from pipelines import evaluate
from tiny_models import ClassShade, Inverter, class_spec, day_night_spec

REPO = Path(__file__).resolve().parents[1]
CFG = {"seed": 0, "num_samples": 40, "iwae_samples": 10}


class ShadeReader(nn.Module):
    """An evaluation classifier that reads a ClassShade sample's class from its intensity."""
    def features(self, x):
        shade = x.flatten(1).mean(1, keepdim=True)
        return torch.cat([shade, shade ** 2, torch.sin(9 * shade)], 1)

    def head(self, features):
        return -(features[:, :1] * 3 - torch.arange(4.0)).abs()   # highest at the nearest class


class Shifted(ClassShade):
    """Asked for class k, draws class k + 1: its samples look fine, its conditioning is wrong."""
    def sample(self, n, condition=None, generator=None):
        return super().sample(n, None if condition is None else (condition + 1) % 4, generator)


def pixels(picture) -> np.ndarray:
    return np.asarray(picture, dtype=np.float32) / 255


def cell(grid: np.ndarray, row: int, column: int, size: int = 2, scale: int = 4) -> np.ndarray:
    """The pixels of one image of an `image_grid` (padding 1)."""
    top, left = (1 + row * (size + 1)) * scale, (1 + column * (size + 1)) * scale
    return grid[top:top + size * scale, left:left + size * scale]


def test_conditional_samples_are_asked_for_every_class_and_scored_against_what_was_asked(monkeypatch):
    monkeypatch.setattr(evaluate, "load_classifier", lambda folder: (ShadeReader(), {"num_classes": 4}))
    real = np.repeat(np.arange(4.0) / 3, 10).reshape(40, 1, 1, 1) * np.ones((1, 1, 2, 2))
    real = real.astype(np.float32)
    for model, accuracy in ((ClassShade(class_spec(), ClassShade.Params()), 1.0),
                            (Shifted(class_spec(), ClassShade.Params()), 0.0)):
        condition = evaluate.sample_conditions(model, 40, Batch(torch.from_numpy(real)))
        assert np.bincount(condition.numpy()).tolist() == [10, 10, 10, 10]
        samples = evaluate.draw_samples(model, 40, condition, seed=0)
        metrics = evaluate.quality_metrics(samples, real, real, 0, condition.numpy())
        assert metrics["conditional_accuracy"] == accuracy and metrics["conditional_accuracy_chance"] == 0.25
        assert metrics["class_coverage"] == 1.0   # both cover every class: only the asked class tells them apart


def test_an_unconditional_model_is_sampled_without_a_condition_and_scored_without_conditional_accuracy():
    from components.data.batch import DataSpec
    from components.models import build_model

    bernoulli = build_model("bernoulli", DataSpec.single((1, 2, 2)))
    assert evaluate.sample_conditions(bernoulli, 5, Batch(torch.zeros(5, 1, 2, 2))) is None
    figures = evaluate.figures_of(bernoulli, "b", Batch(torch.zeros(12, 1, 2, 2)), np.zeros((5, 1, 2, 2)), CFG)
    assert set(figures) == {"samples.png"}


@pytest.mark.parametrize("name, params, expected", [
    ("nade", {"hidden_units": 4}, {"samples.png", "completions.png"}),
    ("vae", {"latent_dim": 2, "hidden_units": [8]},
     {"samples.png", "reconstructions.png", "interpolations.png", "latent_scatter.png"}),
])
def test_each_declared_capability_gets_its_figure(name, params, expected):
    from components.data.batch import DataSpec
    from components.models import build_model

    model = build_model(name, DataSpec.single((1, 4, 4)), params).eval()
    test = Batch(torch.bernoulli(torch.full((20, 1, 4, 4), 0.5)), labels=torch.arange(20) % 3)
    samples = evaluate.draw_samples(model, 12, None, seed=0)
    figures = evaluate.figures_of(model, name, test, samples, CFG)
    assert expected <= set(figures) and not {"class_samples.png", "translations.png"} & set(figures)


def test_a_class_conditional_model_gets_one_row_of_samples_per_class():
    model = ClassShade(class_spec(classes=4), ClassShade.Params())
    figures = evaluate.figures_of(model, "c", Batch(torch.zeros(12, 1, 2, 2)), np.zeros((40, 1, 2, 2)), CFG)
    assert set(figures) == {"samples.png", "class_samples.png"}
    grid = pixels(figures["class_samples.png"])
    assert grid.shape == ((4 * 3 + 1) * 4, (10 * 3 + 1) * 4)
    for row in range(4):
        for column in (0, 9):
            np.testing.assert_allclose(cell(grid, row, column), row / 3, atol=1 / 255)


def test_a_translating_model_gets_sources_then_each_domain_and_the_way_back_and_no_sample_figures():
    model = Inverter(day_night_spec(), Inverter.Params())
    images = torch.rand(16, 1, 2, 2)
    domains = torch.tensor([0] * 8 + [1] * 8)
    figures = evaluate.figures_of(model, "t", Batch(images, domains=domains), None, CFG)
    assert set(figures) == {"translations.png"}
    grid = pixels(figures["translations.png"])
    # sources, then per target (day, night) the translations and their way back; 6 images of each domain
    assert grid.shape == ((5 * 3 + 1) * 4, (12 * 3 + 1) * 4)
    sources = torch.cat([images[:6], images[8:14]])
    for column in range(12):
        source = sources[column, 0].repeat_interleave(4, 0).repeat_interleave(4, 1).numpy()
        night_source = column >= 6   # back into night inverts again
        back_from_day = 1 - source if night_source else source
        back_from_night = source if night_source else 1 - source
        for row, expected in enumerate((source, source, back_from_day, 1 - source, back_from_night)):
            np.testing.assert_allclose(cell(grid, row, column), expected, atol=1 / 255)


def test_samples_of_the_wrong_shape_or_range_stop_evaluation():
    class Bright(ClassShade):
        def sample(self, n, condition=None, generator=None):
            return super().sample(n, condition, generator) + 1

    with pytest.raises(RuntimeError, match=r"expected \(3, \*\(1, 2, 2\)\) in \[0, 1\]"):
        evaluate.draw_samples(Bright(class_spec(), ClassShade.Params()), 3, torch.tensor([1, 2, 3]), seed=0)


def test_no_capability_is_probed_by_attribute():
    found = subprocess.run(["grep", "-rn", "--include=*.py", "hasattr", "components", "pipelines"], cwd=REPO,
                           capture_output=True, text=True)
    assert found.stdout == ""
