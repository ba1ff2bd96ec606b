"""evaluate works from declared capabilities (components/evaluation.py: MEASUREMENTS): a
class-conditional model is sampled per class and scored by how often the evaluation classifier sees
the class asked for, a translating model gets a translation figure, a model that cannot sample gets
no sample metrics but the reason, the classifier reads the test images once, a model's hooks add
figures but replace none, every FID comes with its bootstrap standard error, and nothing probes."""

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from components import evaluation as evaluate
from components.data.batch import Batch, Split, to_batch
from components.metrics.sample_quality import fid_standard_error, frechet_distance
from components.pictures import Grid
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


def evaluation_of(model, test: Split, valid: Split | None = None, train: Split | None = None, classifier=None,
                  num_classes: int = 4, settings=None) -> evaluate.Evaluation:
    """An Evaluation of `model` on these splits (valid and train: the test split when not given)."""
    splits = {"test": test, "valid": valid or test, "train": train or test}
    config = {"num_classes": num_classes} if classifier is not None else {"reason": "the data has no labels"}
    return evaluate.Evaluation(model, settings or CFG, Path("nowhere"), splits,
                               {name: to_batch(split) for name, split in splits.items()}, classifier, config)


def shades(per_class: int = 10) -> Split:
    """Real images of ClassShade's four classes, `per_class` of each."""
    labels = np.repeat(np.arange(4), per_class)
    return Split((labels / 3).astype(np.float32).reshape(-1, 1, 1, 1) * np.ones((1, 1, 2, 2), np.float32), labels)


def pixels(picture) -> np.ndarray:
    return np.asarray(picture, dtype=np.float32) / 255


def cell(grid: np.ndarray, row: int, column: int, size: int = 2, scale: int = 4) -> np.ndarray:
    """The pixels of one image of an `image_grid` (padding 1)."""
    top, left = (1 + row * (size + 1)) * scale, (1 + column * (size + 1)) * scale
    return grid[top:top + size * scale, left:left + size * scale]


def test_conditional_samples_are_asked_for_every_class_and_scored_against_what_was_asked():
    real = shades()
    for model, accuracy in ((ClassShade(class_spec(), ClassShade.Params()), 1.0),
                            (Shifted(class_spec(), ClassShade.Params()), 0.0)):
        ev = evaluation_of(model, real, classifier=ShadeReader())
        assert np.bincount(ev.drawn[1]).tolist() == [10, 10, 10, 10]
        metrics = evaluate.measure(ev)
        assert metrics["conditional_accuracy"] == accuracy and metrics["conditional_accuracy_chance"] == 0.25
        assert metrics["class_coverage"] == 1.0   # both cover every class: only the asked class tells them apart
        # The samples look like the real images either way; real data against itself is the floor.
        assert metrics["fid"] == pytest.approx(0, abs=1e-6) and metrics["real_data_fid"] == pytest.approx(0, abs=1e-6)
        assert not {"log_prob", "anomaly_detection", "encode", "representation"} - metrics.keys()
        assert metrics["log_prob"] == f"not supported: {model.name} defines no likelihood"


def test_an_unconditional_model_is_sampled_without_a_condition_and_scored_without_conditional_accuracy():
    from components.data.batch import DataSpec
    from components.models import build_model

    bernoulli = build_model("bernoulli", DataSpec.single((1, 2, 2)))
    assert evaluate.asked_conditions(bernoulli, 5, Batch(torch.zeros(5, 1, 2, 2))) == (None, None)
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


class Counting(ShadeReader):
    """ShadeReader that keeps every batch of images it is given."""
    def __init__(self):
        super().__init__()
        self.seen = []

    def features(self, x):
        self.seen.append(x.clone())
        return super().features(x)


def test_the_classifier_reads_the_test_images_once_for_every_measurement_that_compares_with_them():
    from components.data.batch import DataSpec
    from components.models import build_model

    model = build_model("nade", DataSpec.single((1, 2, 2)), {"hidden_units": 3}).eval()   # samples and completes
    test, valid = (Split(np.random.default_rng(seed).integers(0, 2, (24, 1, 2, 2)).astype(np.float32),
                         np.arange(24) % 4) for seed in (0, 1))
    counting = Counting()
    metrics = evaluate.measure(evaluation_of(model, test, valid, classifier=counting,
                                             settings={**CFG, "num_samples": 30}))
    assert "fid" in metrics and "completion_fid" in metrics
    assert sum(len(x) == 24 and torch.equal(x, torch.from_numpy(test.images)) for x in counting.seen) == 1


def test_a_model_without_a_capability_gets_its_reason_and_a_translating_model_its_translation_figures():
    images = torch.rand(40, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    split = Split(images.numpy(), np.arange(40) % 4, domains=np.repeat([0, 1], 20))
    metrics = evaluate.measure(evaluation_of(Inverter(day_night_spec((1, 8, 8)), Inverter.Params()), split,
                                             classifier=ShadeReader()))
    assert {k: v for k, v in metrics.items() if isinstance(v, str)} == {
        "log_prob": "not supported: test_inverter defines no likelihood",
        "anomaly_detection": "not supported: test_inverter defines no likelihood",
        "sample_quality": "not supported: test_inverter cannot sample",
        "encode": "not supported: test_inverter has no encoder",
        "representation": "not supported: test_inverter has no encoder"}
    for name in ("translation_fid", "translation_fid_of_identity", "translation_fid_of_real"):
        assert 0 < metrics[f"{name}_standard_error"] < np.inf
    # Real images of each domain against themselves (valid = test here): no distance, and so no spread.
    assert metrics["translation_fid_of_real"] == pytest.approx(0, abs=1e-6)


class DrawsItsOwnSamples(ClassShade):
    def evaluation_figures(self, test, settings):
        return {"samples.png": Grid(np.zeros((4, 1, 2, 2)))}


class ReportsItsOwnFid(ClassShade):
    def evaluation_metrics(self, test, settings):
        return {"fid": 0.0}


def test_a_models_hooks_add_figures_but_may_not_replace_the_generic_ones():
    with pytest.raises(ValueError, match=r"\['samples.png'\]"):
        evaluate.figures_of(DrawsItsOwnSamples(class_spec(), ClassShade.Params()), "d", Batch(torch.zeros(12, 1, 2, 2)),
                            np.zeros((40, 1, 2, 2)), CFG)
    with pytest.raises(ValueError, match=r"\['fid'\]"):
        evaluate.measure(evaluation_of(ReportsItsOwnFid(class_spec(), ClassShade.Params()), shades(),
                                       classifier=ShadeReader()))


def gaussians(n: int, seed: int, shift: float = 0.5, d: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(0, 1, (n, d)), rng.normal(shift, 1, (n, d))


def test_the_fid_standard_error_is_the_spread_of_fid_over_fresh_draws_and_shrinks_as_one_over_root_n():
    # Against the truth: the standard deviation of FID over 400 independent draws of both sets. One
    # estimate is itself off by ~17% (30 resamples, one draw): their mean over 20 draws is compared.
    truth = np.std([frechet_distance(*gaussians(250, seed)) for seed in range(400)], ddof=1)
    estimates = [fid_standard_error(*gaussians(250, 1000 + seed), seed=seed) for seed in range(20)]
    assert np.mean(estimates) == pytest.approx(truth, rel=0.15)
    # Four times the images: half the error (the mean shift's term dominates the spread).
    larger = [fid_standard_error(*gaussians(1000, 2000 + seed), seed=seed) for seed in range(20)]
    assert np.mean(estimates) / np.mean(larger) == pytest.approx(2, rel=0.15)
    # Seeded by `seed` alone; identical sets are at distance 0.
    real, fake = gaussians(250, 7)
    assert fid_standard_error(real, fake, seed=3) == fid_standard_error(real, fake, seed=3)
    assert frechet_distance(real, real) == pytest.approx(0, abs=1e-8)


def test_the_promotion_metric_is_the_declared_one_else_the_familys():
    from components.data.batch import DataSpec
    from components.models import build_model, model_class
    from components.report import promotion_metric

    expected = {"bernoulli": "test_nll", "vae": "test_nll", "aae": "fid", "gan": "fid", "cgan": "fid",
                "cyclegan": "translation_fid", "stargan": "target_classification_error", "puzzle_gan": "patch_l1"}
    assert {name: promotion_metric(model_class(name)) for name in expected} == expected
    bernoulli = build_model("bernoulli", DataSpec.single((1, 2, 2)))
    assert evaluate.described(bernoulli)["promotion_metric"] == "test_nll"


def test_conditional_accuracy_per_asked_class_and_the_worst_class():
    from components.metrics.sample_quality import conditional_accuracy

    asked = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    seen = np.array([0, 0, 0, 1, 1, 1, 0, 2])   # class 0: 3 of 4, class 1: 2 of 2, class 2: 1 of 2
    metrics = conditional_accuracy(seen, asked, num_classes=4)
    assert metrics["conditional_accuracy"] == 6 / 8 and metrics["conditional_accuracy_chance"] == 0.25
    assert [metrics[f"conditional_accuracy_class_{k}"] for k in range(3)] == [0.75, 1.0, 0.5]
    assert metrics["conditional_accuracy_worst_class"] == 0.5 and "conditional_accuracy_class_3" not in metrics
