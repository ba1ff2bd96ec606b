"""The image-to-image family: CycleGAN's pool, losses, schedule and translation; StarGAN's label
conditioning and classification losses; Puzzle-GAN's key-patch selection and losses."""

import math

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from components.errors import ConfigError
from components.data.batch import Batch, DataSpec, DomainSpec
from components.models import build_model
from components.models.cyclegan import ImagePool
from components.models.families.adversarial import to_signed, to_unit
from components.models.puzzle_gan import appearance_loss, key_patches, select_windows, spatial_loss

pytestmark = pytest.mark.usefixtures("one_thread")


def params_with_overlays(params: dict) -> dict:
    """params.yaml with the models of the two overlays that give cyclegan and stargan prepare-time domains."""
    import yaml

    for name in ("cyclegan", "stargan"):
        overlay = yaml.safe_load((Path(__file__).resolve().parents[1] / f"benchmarks/{name}_pipeline.yaml").read_text())
        params["models"].update(overlay["models"])
    return params


def spec(names, shape=(1, 8, 8), attributes=()):
    fields = ("domains", "attributes") if attributes else ("domains",)
    return DataSpec("synthetic", tuple(DomainSpec(n, shape, 256) for n in names),
                    attribute_names=tuple(attributes), fields=fields)


TINY_CYCLE = {"width": 8, "residual_blocks": 1, "discriminator_width": 8}
TINY_STAR = {"width": 8, "residual_blocks": 1, "discriminator_width": 8}
TINY_PUZZLE = {"width": 8, "code_dim": 16}


def digits() -> torch.Tensor:
    from sklearn.datasets import load_digits
    return torch.tensor(load_digits().images / 16.0, dtype=torch.float32)[:, None]


# --- shapes and ranges, all three ----------------------------------------------------------------

@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 8, 8), (1, 32, 32), (3, 32, 32)])
def test_shapes_and_ranges(shape):
    torch.manual_seed(0)
    x = torch.rand(4, *shape)
    cycle = build_model("cyclegan", spec(("a", "b"), shape), TINY_CYCLE).eval()
    star = build_model("stargan", spec(("a", "b", "c"), shape), TINY_STAR).eval()
    puzzle = build_model("puzzle_gan", DataSpec.single(shape, 256), TINY_PUZZLE).eval()
    outputs = [cycle.translate(x, "a"), cycle.translate(x, 1), star.translate(x, "c"), star.translate(x, 0),
               puzzle.complete(x)]
    images, masks = puzzle.generate_from_patches(puzzle.key_patches(x).patches)
    for out in outputs + [images, masks]:
        assert out.shape[0] == 4 and out.min() >= 0 and out.max() <= 1
    assert all(out.shape == x.shape for out in outputs + [images]) and masks.shape == (4, 1, *shape[1:])
    assert puzzle.patch_size == (3 if shape[1] == 8 else 8)


# --- CycleGAN -------------------------------------------------------------------------------------

def test_image_pool_follows_the_papers_rule_and_lives_in_the_state_dict():
    pool = ImagePool(4, (1,))
    first = torch.arange(4.0)[:, None]
    assert torch.equal(pool.query(first), first)   # filling: every image stored and shown
    assert torch.equal(pool.images, first) and int(pool.count) == 4
    new = torch.arange(100.0, 400.0)[:, None]
    shown = pool.query(new, torch.Generator().manual_seed(3))
    # the same draws by hand: u < 1/2 -> show stored[i] and store the new image there; else show the new
    rng, stored, expected = torch.Generator().manual_seed(3), first.clone(), []
    for image in new:
        if torch.rand((), generator=rng) < 0.5:
            i = int(torch.randint(4, (), generator=rng))
            expected.append(stored[i].clone())
            stored[i] = image
        else:
            expected.append(image)
    assert torch.equal(shown, torch.stack(expected)) and torch.equal(pool.images, stored)
    old = (shown != new).float().mean().item()
    assert 0.4 < old < 0.6   # once full, an old image comes back half the time
    model = build_model("cyclegan", spec(("a", "b")), TINY_CYCLE)
    model.pool_Y.query(torch.rand(7, 1, 8, 8))
    resumed = build_model("cyclegan", spec(("a", "b")), TINY_CYCLE)
    resumed.load_state_dict(model.state_dict())
    assert int(resumed.pool_Y.count) == 7 and torch.equal(resumed.pool_Y.images, model.pool_Y.images)


def test_cycle_and_identity_losses_are_their_formulas():
    model = build_model("cyclegan", spec(("a", "b")), TINY_CYCLE)
    assert (model.params.lambda_cycle, model.params.lambda_identity) == (10.0, 5.0)
    x, y = torch.zeros(2, 1, 2, 2), torch.ones(2, 1, 2, 2)
    rx, ry = torch.full_like(x, 0.5), torch.full_like(y, 0.25)
    assert model.cycle_loss(x, y, rx, ry).item() == pytest.approx(10 * (0.5 + 0.75))
    assert model.identity_loss(x, y, F_of_x=rx, G_of_y=ry).item() == pytest.approx(5 * (0.5 + 0.75))
    identity = nn.Identity()
    x, y = torch.randn(3, 1, 8, 8), torch.randn(3, 1, 8, 8)
    assert model.cycle_loss(x, y, identity(identity(x)), identity(identity(y))).item() == 0.0
    assert model.identity_loss(x, y, identity(x), identity(y)).item() == 0.0


def test_translate_goes_both_ways_and_refuses_a_third_domain():
    model = build_model("cyclegan", spec(("plain", "thick")), TINY_CYCLE).eval()
    x = torch.rand(5, 1, 8, 8)
    assert torch.equal(model.translate(x, "thick"), model.translate(x, 1))
    assert torch.allclose(model.translate(x, "thick"), to_unit(model.G(to_signed(x))))
    assert torch.allclose(model.translate(x, "plain"), to_unit(model.F(to_signed(x))))
    assert not torch.allclose(model.translate(x, 0), model.translate(x, 1))
    with pytest.raises(ValueError, match="out of range"):
        model.translate(x, 2)
    with pytest.raises(ValueError, match="unknown domain 'zebra'"):
        model.translate(x, "zebra")
    with pytest.raises(ConfigError, match="exactly 2 domains.*has 3"):
        build_model("cyclegan", spec(("a", "b", "c")), TINY_CYCLE)
    with pytest.raises(ConfigError, match="needs domains"):
        build_model("cyclegan", DataSpec.single((1, 8, 8)), TINY_CYCLE)


def test_the_params_schedule_is_constant_then_linear_decay_over_the_second_half():
    from components.config import load_params
    from components.schema import training_settings
    from components.training.fit import Settings, fit

    settings = training_settings(load_params(), "cyclegan")
    assert settings["lr"] == 2e-4 and settings["schedule"] == {"kind": "linear_decay", "decay_fraction": 0.5}
    model = build_model("cyclegan", spec(("a", "b")), TINY_CYCLE)
    batch = Batch(torch.rand(4, 1, 8, 8), domains=torch.tensor([0, 1, 0, 1]))
    run = fit(model, lambda epoch, size: [batch], lambda: [batch],
              Settings.from_dict({**settings, "epochs": 6, "patience": 100}))
    rates = [record["lr_generator"] for record in run.state["history"]]
    # epochs 1-3 at 2e-4; then 1 - k / (3 + 1) of it for k = 1, 2, 3 (CycleGAN's code's rule)
    assert rates == pytest.approx([2e-4] * 3 + [2e-4 * 3 / 4, 2e-4 * 2 / 4, 2e-4 * 1 / 4])
    assert [r["lr_discriminator"] for r in run.state["history"]] == pytest.approx(rates)


def test_training_on_a_toy_pair_approaches_the_true_mapping():
    torch.manual_seed(0)
    images = digits()
    test = images[1500:]
    # digits vs their inverses: the identity loss is off, since the true map is far from the identity
    model = build_model("cyclegan", spec(("plain", "inverted")), {**TINY_CYCLE, "lambda_identity": 0.0})
    error = lambda: ((model.translate(test, 1) - (1 - test)).abs().mean().item(),
                     (model.translate(1 - test, 0) - test).abs().mean().item())
    before = error()
    optimizers = model.configure_optimizers(1e-3)
    rng = torch.Generator().manual_seed(0)
    for _ in range(200):   # unpaired: x and y from disjoint halves of the training images
        x, y = images[torch.randint(0, 700, (16,), generator=rng)], 1 - images[torch.randint(700, 1400, (16,), generator=rng)]
        model.training_step(Batch(torch.cat([x, y]), domains=torch.arange(2).repeat_interleave(16)), optimizers)
    after = error()
    assert after[0] < before[0] / 2 and after[1] < before[1] / 2, (before, after)


def test_evaluation_measures_the_error_against_the_known_mapping():
    from components.data.domains import TRANSFORMS

    model = build_model("cyclegan", spec(("plain", "thick")), {**TINY_CYCLE, "known_mapping": "thicken"}).eval()
    x = digits()[:20]
    test = Batch(torch.cat([x, x]), domains=torch.arange(2).repeat_interleave(20))
    metrics = model.evaluation_metrics(test, {})
    truth = torch.from_numpy(TRANSFORMS["thicken"].apply(x.numpy()))
    assert metrics["known_mapping_error"] == pytest.approx((model.translate(x, 1) - truth).abs().mean().item())
    assert metrics["known_mapping_error_of_identity"] == pytest.approx((x - truth).abs().mean().item())
    assert "not measured" in model.evaluation_metrics(Batch(x), {})["translation"]
    with pytest.raises(ConfigError, match="known_mapping"):
        build_model("cyclegan", spec(("a", "b")), {**TINY_CYCLE, "known_mapping": "blur"})


# --- StarGAN --------------------------------------------------------------------------------------

def test_stargan_generator_depends_on_the_target_label():
    model = build_model("stargan", spec(("a", "b", "c")), TINY_STAR).eval()
    x = torch.rand(4, 1, 8, 8)
    outs = [model.translate(x, d) for d in ("a", "b", "c")]
    assert not torch.allclose(outs[0], outs[1]) and not torch.allclose(outs[1], outs[2])
    assert torch.equal(outs[2], model.translate(x, 2)) and torch.equal(outs[2], model.translate(x, [0, 0, 1]))
    assert model.generator.net[1].in_channels == 1 + 3   # the image and the tiled one-hot label


def test_classification_losses_are_their_formulas_on_hand_made_logits():
    domains = build_model("stargan", spec(("a", "b", "c")), TINY_STAR)
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, -1.0]])
    labels = torch.tensor([[1.0, 0, 0], [0, 0, 1.0]])
    by_hand = -(math.log(math.exp(2) / (math.exp(2) + 2)) + math.log(math.exp(-1) / (1 + math.e + math.exp(-1)))) / 2
    assert domains.classification_loss(logits, labels).item() == pytest.approx(by_hand, rel=1e-6)
    attributes = build_model("stargan", spec(("a", "b"), attributes=("thick", "thin")),
                             {**TINY_STAR, "labels": "attributes"})
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.0]])
    labels = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    sigmoid = lambda v: 1 / (1 + math.exp(-v))
    by_hand = -(math.log(sigmoid(2)) + math.log(sigmoid(-1)) + math.log(1 - sigmoid(0.5)) + math.log(sigmoid(0))) / 2
    assert attributes.classification_loss(logits, labels).item() == pytest.approx(by_hand, rel=1e-6)


def test_real_images_are_classified_by_their_labels_and_fakes_by_their_targets():
    model = build_model("stargan", spec(("a", "b", "c")), {**TINY_STAR, "n_critic": 1})
    optimizers = model.configure_optimizers(1e-4)
    calls = []
    original = model.classification_loss
    model.classification_loss = lambda logits, labels: calls.append(labels.clone()) or original(logits, labels)
    domains = torch.tensor([0, 1, 2, 0, 1, 2])
    batch = Batch(torch.rand(6, 1, 8, 8), domains=domains)
    torch.manual_seed(5)
    permutation = torch.randperm(6)   # the step's first draw: its target labels
    torch.manual_seed(5)
    model.training_step(batch, optimizers)
    real, target = F.one_hot(domains, 3).float(), F.one_hot(domains[permutation], 3).float()
    assert len(calls) == 2 and torch.equal(calls[0], real) and torch.equal(calls[1], target)
    assert not torch.equal(real, target)


def test_the_generator_is_updated_once_per_n_critic_steps():
    model = build_model("stargan", spec(("a", "b")), TINY_STAR)
    assert model.params.n_critic == 5 and model.params.lambda_gp == 10 and model.params.lambda_rec == 10
    optimizers = model.configure_optimizers(1e-3)
    batch = Batch(torch.rand(4, 1, 8, 8), domains=torch.tensor([0, 1, 0, 1]))
    weights = lambda: [p.detach().clone() for p in model.generator.parameters()]
    start = weights()
    for _ in range(4):
        assert "g_loss" not in model.training_step(batch, optimizers)
    assert all(torch.equal(a, b) for a, b in zip(start, weights()))
    assert "g_loss" in model.training_step(batch, optimizers)
    assert not all(torch.equal(a, b) for a, b in zip(start, weights()))
    assert int(model.state_dict()["steps"]) == 5   # the count resumes with the weights


def test_multi_label_attributes():
    attrs = ("thick", "thin")
    with pytest.raises(ConfigError, match="needs attributes"):
        build_model("stargan", spec(("a", "b")), {**TINY_STAR, "labels": "attributes"})
    model = build_model("stargan", spec(("plain", "thick", "thin"), attributes=attrs),
                        {**TINY_STAR, "labels": "attributes", "n_critic": 1})
    assert model.discriminator.cls.out_channels == 2
    domains = torch.tensor([0, 1, 2, 0, 1, 2])
    attributes = torch.tensor([[0.0, 0], [1, 0], [0, 1]])[domains]
    batch = Batch(torch.rand(6, 1, 8, 8), domains=domains, attributes=attributes)
    out = model.training_step(batch, model.configure_optimizers(1e-4))
    assert math.isfinite(out["g_loss"]) and math.isfinite(out["d_cls_loss"])
    model.eval()
    x = batch.images
    both = model.translate(x, [1, 1])   # several attributes at once
    assert not torch.allclose(both, model.translate(x, [1, 0]))
    assert torch.equal(model.translate(x, "thin"), model.translate(x, [0, 1]))     # an attribute's name
    assert torch.equal(model.translate(x, "plain"), model.translate(x, [0, 0]))    # a domain's attributes
    assert torch.equal(model.translate(x, torch.tensor([[1.0, 1.0]] * 6)), both)
    with pytest.raises(ValueError, match="one entry per attribute"):
        model.translate(x, [1, 0, 1])
    # A classifier that says "no attribute" for every image is right only for the all-zero target:
    # one of the three targets (none, thick, thin), so target-attribute accuracy is exactly 1/3.
    with torch.no_grad():
        model.discriminator.cls.weight.zero_()
        model.discriminator.cls.bias.fill_(-10.0)
    metrics = model.evaluation_metrics(batch, {})
    assert metrics["aux_classifier_target_accuracy"] == pytest.approx(1 / 3)
    # The reconstruction error is the mean |G(G(x, c), c_org) - x| over the three targets.
    c_org = attributes
    expected = sum((model.translate(model.translate(x, list(c)), c_org) - x).abs().mean().item()
                   for c in ([0.0, 0.0], [1.0, 0.0], [0.0, 1.0])) / 3
    assert metrics["reconstruction_error"] == pytest.approx(expected, rel=1e-5)


# --- Puzzle-GAN -----------------------------------------------------------------------------------

def test_key_patches_are_the_highest_gradient_energy_windows():
    image = torch.zeros(1, 1, 8, 8)
    # impulses: a Sobel response spreads over the 3x3 around each, so the 3x3 window centred on an
    # impulse holds all its energy, and the brightest impulse's window comes first
    image[0, 0, 2, 2], image[0, 0, 5, 5], image[0, 0, 1, 6] = 1.0, 0.8, 0.6
    key = key_patches(image, 3, 3)
    assert key.positions.tolist() == [[[1, 1], [4, 4], [0, 5]]]
    for (y, x), patch in zip(key.positions[0].tolist(), key.patches[0]):
        assert torch.equal(patch, image[0, :, y:y + 3, x:x + 3])
    expected = torch.zeros(1, 1, 8, 8)
    expected[..., 1:4, 1:4] = expected[..., 4:7, 4:7] = expected[..., 0:3, 5:8] = 1
    assert torch.equal(key.mask, expected)


def test_key_patches_never_overlap_and_are_deterministic():
    images = torch.rand(50, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    key = key_patches(images, 3, 8)
    assert torch.equal(key.positions, key_patches(images, 3, 8).positions)
    assert key.mask.sum((1, 2, 3)).tolist() == [3 * 64] * 50   # three disjoint 8x8 windows
    one = torch.zeros(1, 5, 5)
    with pytest.raises(ValueError, match="do not fit"):
        select_windows(one, 2, 5)


def test_spatial_loss_is_zero_for_the_true_mask_and_appearance_reads_the_masked_region():
    mask = (torch.rand(4, 1, 8, 8) > 0.5).float()
    assert spatial_loss(mask, mask).item() == 0.0
    assert spatial_loss(torch.full_like(mask, 0.5), mask).item() == pytest.approx(0.5 * 64)   # L1, summed
    x, generated = torch.zeros(1, 3, 4, 4), torch.ones(1, 3, 4, 4)
    m = torch.zeros(1, 1, 4, 4)
    m[..., :2, :2] = 1
    assert appearance_loss(generated, m, x, m).item() == pytest.approx(3 * 4)   # only the mask's pixels count


def test_training_restores_the_patches_at_their_positions():
    torch.manual_seed(0)
    images = digits()[:64]
    # a generator step every step (the authors: every second), so that 400 steps train it 400 times
    model = build_model("puzzle_gan", DataSpec.single((1, 8, 8), 17), {**TINY_PUZZLE, "discriminator_steps": 1})
    before = model.eval().scores(images, torch.Generator().manual_seed(0))
    model.train()
    optimizers = model.configure_optimizers(2e-3)
    for _ in range(400):
        model.training_step(Batch(images), optimizers)
    after = model.eval().scores(images, torch.Generator().manual_seed(0))
    assert after["patch_l1"] < before["patch_l1"] / 2, (before, after)
    assert after["mask_iou"] > max(0.6, before["mask_iou"] + 0.2), (before, after)
    seeded = lambda: torch.Generator().manual_seed(1)
    hidden, shown = torch.zeros(1, 1, 8, 8, dtype=torch.bool), torch.ones(1, 1, 8, 8, dtype=torch.bool)
    assert torch.equal(model.complete(images[:4], shown, seeded()), images[:4])   # observed pixels are kept
    with pytest.raises(ValueError, match="do not fit"):   # nothing observed: no patch to start from
        model.complete(images[:4], hidden, seeded())
    metrics = model.evaluation_metrics(Batch(images), {"seed": 0})
    assert metrics["mask_iou"] == after["mask_iou"] and metrics["patch_l1"] == after["patch_l1"]
    assert metrics["mask_iou_of_all_ones"] == pytest.approx(27 / 64)   # 3 disjoint 3x3 windows of 8x8
    figures = model.evaluation_figures(Batch(images[:8]), {})
    assert set(figures) == {"completions.png"}


def test_completion_reads_only_the_observed_pixels():
    """Key patches come from windows of observed pixels only: what is hidden cannot leak into the result."""
    model = build_model("puzzle_gan", DataSpec.single((1, 8, 8), 17), {**TINY_PUZZLE, "patches": 2}).eval()
    images = digits()[:6]
    upper = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    upper[..., :4, :] = True
    scrambled = torch.where(upper, images, torch.rand(images.shape, generator=torch.Generator().manual_seed(0)))
    seeded = lambda: torch.Generator().manual_seed(2)
    assert torch.equal(model.complete(images, upper, seeded()), model.complete(scrambled, upper, seeded()))
    assert (model.key_patches(images, upper).positions[..., 0] <= 1).all()   # 3x3 windows inside rows 0-3
    assert not torch.equal(model.complete(images, None, seeded()), model.complete(scrambled, None, seeded()))


def test_the_params_entries_build():
    from components.config import load_params
    from components.schema import architecture_params

    from components.data.domains import view_entries

    specs = {"cyclegan": spec(("plain", "thick")),
             "stargan": spec(("plain", "thick", "thin", "rotated"), attributes=("rotated", "thick", "thin")),
             "puzzle_gan": DataSpec.single((1, 8, 8), 17)}
    # the default entries (cyclegan and stargan on domain views) and the data.domains overlays' entries
    for params in (load_params(), params_with_overlays(load_params())):
        for key, data in specs.items():
            name, arch = architecture_params(params, key)
            assert build_model(name, data, arch).name == key
    for key in ("cyclegan", "stargan"):
        entries = view_entries(load_params()["models"][key]["domains"])
        assert tuple(e.name for e in entries) == specs[key].domain_names


def test_validation_cycle_error_is_a_per_image_mean_whatever_the_batches():
    """The trainer averages validation metrics weighting each batch by its size: a batch of one domain
    must report its images' errors too, so the average is the same however the split is cut."""
    from components.training.fit import validate

    model = build_model("cyclegan", spec(("plain", "thick")), TINY_CYCLE).eval()
    x = digits()[:12]
    domains = torch.tensor([0] * 8 + [1] * 4)   # sorted by domain, as a prepared split is
    whole = Batch(x, domains=domains)
    per_image = torch.cat([(model.translate(model.translate(x[:8], 1), 0) - x[:8]).abs().mean((1, 2, 3)),
                           (model.translate(model.translate(x[8:], 0), 1) - x[8:]).abs().mean((1, 2, 3))])
    in_batches = [Batch(x[i:i + 5], domains=domains[i:i + 5]) for i in range(0, 12, 5)]
    assert validate(model, in_batches, "cpu")["cycle_error"] == pytest.approx(per_image.mean().item(), rel=1e-5)
    assert model.validation_metrics(whole)["cycle_error"] == pytest.approx(per_image.mean().item(), rel=1e-5)


# --- domain views (a model entry's `domains`) -----------------------------------------------------

def write_prepared(folder: Path, seed: int = 0, count: int = 60, domains=None) -> None:
    """A prepared single-domain folder whose image i is identifiable: pixel (0, 0, 0) holds i / 255."""
    import numpy as np

    from components.data.prepared import SPLITS, write_split

    domains = domains or [{"name": "synthetic", "source": "synthetic", "transform": "identity"}]
    meta = {"source": "synthetic", "image_shape": [1, 2, 2], "levels": 256, "class_names": ["a", "b", "c"],
            "seed": seed, "binarization": "none", "threshold": 0.5, "attribute_names": [], "domains": domains,
            "vocabulary": ["<pad>", "<unk>", "a"], "caption_length": 1}
    for s, split in enumerate(SPLITS):
        ids = np.arange(count) + 80 * s
        images = np.zeros((count, 1, 2, 2), dtype=np.float32)
        images[:, 0, 0, 0] = ids / 255
        images[:, 0, 1, 1] = 0.2
        write_split(folder / f"{split}.parquet", images, ids % 3, {**meta, "split": split}, captions=["a"] * count,
                    domains=np.arange(count) * len(domains) // count)


VIEW = [{"name": "plain"}, {"name": "inverse", "transform": "invert"}]


def test_a_domain_view_deals_disjoint_images_transformed_and_deterministically(tmp_path):
    import numpy as np

    from components.data.domains import domain_view, view_entries
    from components.data.prepared import read_split

    write_prepared(tmp_path)
    entries = view_entries(VIEW)
    view = domain_view(tmp_path, entries, "models.x.domains")
    again = domain_view(tmp_path, entries, "models.x.domains")
    for split, part in view.items():
        source = read_split(tmp_path, split)
        plain, inverse = part.images[part.domains == 0], part.images[part.domains == 1]
        assert np.allclose(inverse[:, 0, 1, 1], 0.8, atol=1 / 255)        # invert applied: 1 - 0.2
        ids = np.round(np.concatenate([plain[:, 0, 0, 0], 1 - inverse[:, 0, 0, 0]]) * 255).astype(int)
        assert sorted(ids) == sorted(np.round(source.images[:, 0, 0, 0] * 255).astype(int))   # each image once
        assert len(plain) == len(inverse) == 30
        assert np.array_equal(part.labels, ids % 3)                            # labels travel with images
        assert np.array_equal(part.attributes[:, 0], part.domains.astype(np.float32))   # "inverted"
        assert np.array_equal(part.images, again[split].images)                # same seed, same deal
    write_prepared(tmp_path, seed=1)
    reseeded = domain_view(tmp_path, entries, "models.x.domains")
    assert not np.array_equal(reseeded["train"].images, view["train"].images)


def test_a_domain_view_is_a_prepared_folder_whose_spec_lists_its_domains(tmp_path):
    from components.data.domains import domain_view_folder
    from components.data.prepared import read_spec, read_split
    from components.data.streaming import stream_batches

    write_prepared(tmp_path)
    with domain_view_folder(tmp_path, VIEW, "models.x.domains", tmp_path / "views") as folder:
        spec = read_spec(folder, "grayscale")
        assert spec.domain_names == ("plain", "inverse") and spec.attribute_names == ("inverted",)
        assert set(spec.fields) == {"labels", "attributes", "domains"}       # captions do not describe transforms
        assert spec.source == "synthetic as plain, inverse=invert"
        batch = next(stream_batches(folder, "train", "grayscale", 8, per_domain=True))
        assert batch.domains.tolist().count(0) == batch.domains.tolist().count(1) == 4
        assert read_split(folder, "test").meta["domains"][1] == {"name": "inverse", "source": "synthetic",
                                                                "transform": "invert"}
    assert not folder.exists() and list((tmp_path / "views").iterdir()) == []
    with domain_view_folder(tmp_path, None, "models.x.domains") as folder:
        assert folder == tmp_path


def test_a_domain_view_refuses_data_that_already_has_domains(tmp_path):
    """(Its entries' names, transforms and length are the schema's: tests/test_params_check.py.)"""
    from components.data.domains import domain_view, view_entries

    write_prepared(tmp_path, domains=[{"name": "day", "source": "s", "transform": "identity"},
                                      {"name": "night", "source": "s", "transform": "invert"}])
    with pytest.raises(ConfigError, match=r"already has domains \(day, night\) from data.domains") as error:
        domain_view(tmp_path, view_entries(VIEW), "models.x.domains")
    assert "\n" not in str(error.value)


def test_a_view_of_the_digits_is_what_data_domains_prepares(tmp_path):
    """The view reuses data.domains' dealing: over the same digits and seed, the same images."""
    import numpy as np

    from components.data.domains import assemble, domain_entries, domain_view, view_entries
    from components.data.prepared import SPLITS, write_split
    from components.data.sources import SourceOptions

    base = SourceOptions(cache_dir=tmp_path / "raw", seed=0)
    single = assemble(domain_entries({"source": "digits"}, base), None, {}, 0)
    data = single["train"].meta
    meta = {"source": "digits", "image_shape": [1, 8, 8], "levels": data["levels"], "class_names": data["class_names"],
            "seed": 0, "binarization": "static", "attribute_names": [], "domains": data["domains"]}
    for split in SPLITS:
        write_split(tmp_path / f"{split}.parquet", single[split].images, single[split].labels, {**meta, "split": split},
                    domains=single[split].domains)
    raw = [{"name": "plain"}, {"name": "thick", "transform": "thicken"}]
    view = domain_view(tmp_path, view_entries(raw), "w")
    prepared = assemble(domain_entries({"source": "digits", "domains": [{**d, "source": "digits"} for d in raw]}, base),
                        None, {}, 0)
    for split in SPLITS:
        assert np.array_equal(view[split].images, prepared[split].images)
        assert np.array_equal(view[split].labels, prepared[split].labels)
        assert np.array_equal(view[split].domains, prepared[split].domains)


def test_serving_completes_from_key_patches_and_lists_the_domains():
    import numpy as np
    import pandas as pd

    from components.serving import logged_metadata, request_signature, serve

    puzzle = build_model("puzzle_gan", DataSpec.single((1, 8, 8), 17), TINY_PUZZLE).eval()
    images = digits()[:3]
    frame = pd.DataFrame(images.reshape(3, -1).numpy()).rename(columns=str).assign(complete=True, seed=4)
    whole = serve(puzzle, frame)
    assert np.array_equal(whole, puzzle.complete(images, None, torch.Generator().manual_seed(4)).numpy())
    hidden = images.clone()
    hidden[..., 4:, :] = float("nan")        # the lower half hidden: completed from the upper half's patches
    upper = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    upper[..., :4, :] = True
    model2 = build_model("puzzle_gan", DataSpec.single((1, 8, 8), 17), {**TINY_PUZZLE, "patches": 2}).eval()
    frame = pd.DataFrame(hidden.reshape(3, -1).numpy()).rename(columns=str).assign(complete=True)
    assert np.array_equal(serve(model2, frame), model2.complete(images, upper, torch.Generator().manual_seed(0)).numpy())
    assert {"complete", "seed", "0", "63"} <= set(request_signature(puzzle).inputs.input_names())
    cycle = build_model("cyclegan", spec(("plain", "thick")), TINY_CYCLE)
    assert logged_metadata(cycle)["domains"] == [{"name": "plain", "image_shape": [1, 8, 8]},
                                                 {"name": "thick", "image_shape": [1, 8, 8]}]
    assert logged_metadata(cycle)["image_shape"] == [1, 8, 8]
