"""Puzzle-GAN as Lee et al. (ECCV 2018) and the authors' code (hellbell/KeyPatchGan) have it: the
discriminator sees images only, the patch codes are summed, the appearance loss trains the predicted
mask, the spatial loss is L1, and the loss weights fall log-linearly over the epochs."""

import math

import pytest
import torch

from components.data.batch import Batch
from components.data.prepared import DataSpec
from components.models import build_model
from components.models.families.adversarial import to_signed
from components.models.puzzle_gan import appearance_loss, mismatched, patch_l1, spatial_loss

TINY = {"width": 8, "code_dim": 16}

pytestmark = pytest.mark.usefixtures("one_thread")


def puzzle(channels=1, **params):
    torch.manual_seed(0)
    return build_model("puzzle_gan", DataSpec.single((channels, 8, 8), 256), {**TINY, **params})


def digits(n=32) -> torch.Tensor:
    from sklearn.datasets import load_digits
    return torch.tensor(load_digits().images[:n] / 16.0, dtype=torch.float32)[:, None]


@pytest.mark.parametrize("channels", [1, 3])
def test_the_discriminator_sees_the_image_channels_only(channels):
    model = puzzle(channels)
    first = next(m for m in model.discriminator.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.in_channels == channels
    seen = []
    model.discriminator.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[1]))
    images = torch.rand(4, channels, 8, 8)
    model.training_step(Batch(images), model.configure_optimizers(1e-3))
    assert seen and set(seen) == {channels}


def test_permuting_the_key_patches_leaves_the_generated_image_unchanged():
    model = puzzle()   # batch statistics: an untrained network's running ones flatten every output to ~0.5
    patches = model.key_patches(digits(8)).patches            # (8, 3, 1, 3, 3)
    images, masks = model.generate_from_patches(patches, torch.Generator().manual_seed(0))
    for order in ([2, 0, 1], [1, 2, 0], [2, 1, 0]):
        again, again_masks = model.generate_from_patches(patches[:, order], torch.Generator().manual_seed(0))
        assert torch.allclose(again, images, atol=1e-6) and torch.allclose(again_masks, masks, atol=1e-6)
    # and the patches do matter: another image's patches give another image
    other, _ = model.generate_from_patches(patches.roll(1, 0), torch.Generator().manual_seed(0))
    assert (other - images).abs().max() > 1e-3   # (an untrained network: small, but far above rounding)


def test_the_appearance_loss_trains_the_predicted_mask():
    generated = torch.full((2, 1, 4, 4), 0.5)
    true_mask = torch.zeros(2, 1, 4, 4)
    true_mask[..., :2, :2] = 1
    images = torch.full((2, 1, 4, 4), -0.5)
    predicted = torch.full((2, 1, 4, 4), 0.3, requires_grad=True)
    loss = appearance_loss(generated, predicted, images, true_mask)
    # ||M_hat x_hat - M x||_1 per image: 4 window pixels |0.15 + 0.5| and 12 others |0.15|
    assert loss.item() == pytest.approx(4 * 0.65 + 12 * 0.15)
    grad, = torch.autograd.grad(loss, predicted)
    assert grad.abs().sum() > 0
    # d/dM_hat |M_hat x_hat - M x| = sign(.) x_hat, per image of the batch mean: 0.5 / 2 everywhere
    assert torch.allclose(grad, torch.full_like(grad, 0.25))


def test_the_mask_loss_is_the_l1_formula():
    true_mask = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]], [[[0.0, 0.0], [1.0, 1.0]]]])
    predicted = torch.tensor([[[[0.9, 0.2], [0.4, 0.5]]], [[[0.0, 1.0], [0.7, 1.0]]]])
    # per image, summed over pixels: 0.1 + 0.2 + 0.4 + 0.5 = 1.2 and 0 + 1 + 0.3 + 0 = 1.3; batch mean 1.25
    assert spatial_loss(predicted, true_mask).item() == pytest.approx(1.25)
    assert spatial_loss(true_mask, true_mask).item() == 0.0


def test_patch_l1_is_the_mean_error_on_the_true_windows():
    x, generated = torch.zeros(1, 3, 4, 4), torch.ones(1, 3, 4, 4)
    m = torch.zeros(1, 1, 4, 4)
    m[..., :2, :2] = 1
    generated[..., :2, :2] = 0.25   # 0.25 away on the window, 1 away outside it
    assert patch_l1(generated, x, m).item() == pytest.approx(0.25)


def test_mismatched_composites_swap_the_key_windows_between_images():
    images = torch.stack([torch.full((1, 2, 2), float(i)) for i in range(3)])
    mask = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]]).expand(3, 1, 2, 2)
    composites = mismatched(images, mask)
    assert composites.shape == (6, 1, 2, 2)
    # image 1 with image 0's window pixel; image 0 with its own window in image 1's surroundings
    assert composites[1, 0].tolist() == [[0.0, 1.0], [1.0, 1.0]]
    assert composites[3 + 0, 0].tolist() == [[0.0, 2.0], [2.0, 2.0]]


def test_loss_weights_fall_log_linearly_over_the_epochs_as_the_authors_code():
    model = puzzle(lambda_spatial=[0.64, 0.0064], lambda_appearance=[1.0, 0.01], lambda_epochs=25)
    authors = [10 ** (-2 - 2 * e / 24) for e in range(25)]   # main.py: np.logspace(-2, -4, num=25)
    for epoch in range(30):
        model.on_epoch_start()
        spatial, appearance = model.weights()
        assert spatial == pytest.approx(64 * authors[min(epoch, 24)])
        assert appearance == pytest.approx(100 * authors[min(epoch, 24)])


def test_the_generator_steps_once_every_discriminator_steps_and_both_players_use_adam_0_5():
    model = puzzle(discriminator_steps=2)
    optimizers = model.configure_optimizers(2e-4)
    for name, optimizer in optimizers.items():
        assert optimizer.defaults["betas"] == (0.5, 0.999), name
    before = [p.detach().clone() for p in model.decoder.parameters()]
    batch = Batch(digits(16))
    model.training_step(batch, optimizers)
    assert all(torch.equal(a, b) for a, b in zip(before, model.decoder.parameters()))   # a discriminator step only
    model.training_step(batch, optimizers)
    assert not all(torch.equal(a, b) for a, b in zip(before, model.decoder.parameters()))


def test_the_generator_loss_is_adversarial_plus_weighted_l1_terms():
    model = puzzle(discriminator_steps=1, mismatched_fakes=False)
    captured = {}
    original = model.optimize

    def optimize(optimizer, loss):
        captured.setdefault("losses", []).append(loss.detach())
        return original(optimizer, loss)

    model.optimize = optimize
    torch.manual_seed(3)
    images = digits(16)
    step = model.training_step(Batch(images), model.configure_optimizers(0.0))
    key = model.key_patches(images)
    torch.manual_seed(3)
    generated, mask = model.generate(key.patches)   # the same noise: the step drew it first
    spatial, appearance = spatial_loss(mask, key.mask), appearance_loss(generated, mask, to_signed(images), key.mask)
    assert step["spatial_loss"] == pytest.approx(spatial.item(), rel=1e-5)
    assert step["appearance_loss"] == pytest.approx(appearance.item(), rel=1e-5)
    adversarial = captured["losses"][1].item() - 0.64 * (spatial.item() + appearance.item())
    assert adversarial > 0 and math.isfinite(adversarial)
